"""What every aggregation kind says about itself: the base class of engine/aggs.

A kind is the whole story of one aggregation from C to a printed or scraped value: the leaf
members of its per-CPU map value, the template partial that updates it, how user space merges
the per-CPU slots of one key, the Prometheus types it may be, and how the merged value becomes
a printed number. The planner, the templates, the runtime and `engine serve` all ask the kind
(engine.aggs.KINDS) instead of comparing kind names, so a new kind is one module here.
"""

from __future__ import annotations

import decimal
from typing import Any, ClassVar, Protocol, Sequence

Member = tuple[str, str, int]  # (C type, name, array length or 0)
Bounds = tuple[int | None, int | None]  # a bucket's inclusive (low, high); None: unbounded


class Params(Protocol):
    """What a kind reads of an aggregation (engine.plan.model.Aggregation has these); a
    protocol, so engine.aggs does not import the plan that imports it."""

    @property
    def low(self) -> int: ...
    @property
    def high(self) -> int: ...
    @property
    def step(self) -> int: ...
    @property
    def divisor(self) -> int: ...


def wrap(v: int, signed: bool) -> int:
    """v as the kernel's 64-bit value holds it: per-CPU parts add up as the C type does."""
    v &= 0xFFFFFFFFFFFFFFFF
    return v - (1 << 64) if signed and v >= 1 << 63 else v


def c_div(a: int, b: int) -> int:
    """a / b as C divides (toward zero): the average of -7 and 0 is -3, as bpftrace's avg."""
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


_EXACT = decimal.Context(prec=80)  # a u64 of ns with 9 decimals fits many times over


class Exact(decimal.Decimal):
    """A printed decimal: always plain digits (`0.000000000`, never `0E-9`)."""

    def __str__(self) -> str:
        return format(self, "f")


def scaled(value: int, divisor: int) -> int | Exact:
    """An integer as it prints under a `print:` unit (divisor 10**d): the exact value with d
    decimals, as bcc's syscount prints TIME (a Decimal, never a float); 1: the integer."""
    if divisor == 1:
        return int(value)
    digits = len(str(divisor)) - 1  # the planner's divisors are powers of ten
    exp = decimal.Decimal(1).scaleb(-digits)
    return Exact(_EXACT.create_decimal(value).scaleb(-digits, _EXACT).quantize(exp, context=_EXACT))


class AggKind:
    """One aggregation kind. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]  # the model's kind (Aggregation.kind), the partial's suffix
    spec_key: ClassVar[str]  # its key in a spec's output.aggregations entry
    words: ClassVar[str] = ""  # how a message names it ("a sum")
    header: ClassVar[str] = ""  # its default column header; "": the value field's, upper case
    takes_value: ClassVar[bool] = True  # aggregates a field (count does not)
    printable: ClassVar[bool] = False  # `print:` converts its unit (sum, min, max, avg)
    histogram: ClassVar[bool] = False  # its value is buckets (printed per key, not a column)
    zero_is_empty: ClassVar[bool] = False  # a merged 0 in `other` means nothing was folded
    prom_types: ClassVar[tuple[str, ...]] = ("gauge",)  # the metric types, default first

    @property
    def partial(self) -> str:
        """templates/partials/<this>.c.j2 updates `val` with the event's value."""
        return f"emit_agg_{self.name}"

    def value_ctype(self, signed: bool) -> str:
        """The C type of the value: s64 for a signed field's, else u64."""
        return "s64" if signed and self.takes_value else "u64"

    def metric_types(self, signed: bool) -> tuple[str, ...]:
        """The metric types this kind may be for a field of this signedness, default first."""
        return self.prom_types

    def buckets(self, p: Params) -> int:
        """A histogram's bucket count; 0 for the scalar kinds."""
        return 0

    def members(self, value_ctype: str, buckets: int) -> tuple[Member, ...]:
        """The members of the value struct; () for a plain integer leaf."""
        return ()

    def merge(self, values: Sequence[Any], signed: bool) -> Any:
        """The per-CPU values of one key merged, or None when no CPU holds one."""
        raise NotImplementedError

    def fold(self, values: Sequence[Any]) -> Any:
        """Several keys' values as one (`engine serve` folds keys past its budget into
        `other`): totals add up."""
        return sum(values)

    def number(self, p: Params, merged: Any) -> int | Exact:
        """A scalar kind's merged value as it prints (under the aggregation's `print:`)."""
        return scaled(int(merged), p.divisor)

    def metric(self, merged: Any) -> tuple[float, float, int]:
        """(value, sum, count) of a scalar kind as a metric sample reads it."""
        return int(merged), 0, 0
