"""The registry of aggregation kinds: one class per kind, one module each.

Kind names are written only here (and in engine/spec.schema.json); everything else asks the
registry: `KINDS[agg.kind]` for the model's kind, `BY_SPEC_KEY[key]` for a spec's entry.
engine.aggs imports neither engine.plan nor engine.runtime: both import it.
"""

from __future__ import annotations

from engine.aggs.avg import Avg
from engine.aggs.base import AggKind, Exact, Params, c_div, scaled, wrap
from engine.aggs.count import Count
from engine.aggs.histogram import Histogram
from engine.aggs.linear import Linear, linear_bounds
from engine.aggs.log2 import Log2, log2_bounds, log2_index
from engine.aggs.max import Max
from engine.aggs.min import Min
from engine.aggs.sum import Sum

COUNT = Count()
SUM = Sum()
MIN = Min()
MAX = Max()
AVG = Avg()
LOG2 = Log2()
LINEAR = Linear()

# by the model's kind (Aggregation.kind), in the order a spec's schema lists them
KINDS: dict[str, AggKind] = {k.name: k for k in (COUNT, SUM, MIN, MAX, AVG, LOG2, LINEAR)}
# by the key a spec's output.aggregations entry uses (`hist`, `lhist`)
BY_SPEC_KEY: dict[str, AggKind] = {k.spec_key: k for k in KINDS.values()}
SPEC_KEYS: tuple[str, ...] = tuple(BY_SPEC_KEY)

__all__ = [
    "AVG",
    "BY_SPEC_KEY",
    "COUNT",
    "KINDS",
    "LINEAR",
    "LOG2",
    "MAX",
    "MIN",
    "SPEC_KEYS",
    "SUM",
    "AggKind",
    "Exact",
    "Histogram",
    "Params",
    "c_div",
    "linear_bounds",
    "log2_bounds",
    "log2_index",
    "scaled",
    "wrap",
]
