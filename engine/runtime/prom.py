"""Prometheus rules in one place: the metric model of a spec's aggregations (names, types,
labels, checked the same way by `engine validate` and `engine serve`), and histograms as
Prometheus exposes them: cumulative `le` buckets, `_sum` and `_count`.

The histogram helpers are pure functions for a metrics endpoint to use. As in ebpf_exporter
(exporter/histogram.go), the bucket set comes from the aggregation's configuration, not from
the keys the kernel happened to fill, so every scrape shows the same `le` values (missing
buckets are backfilled with the running count), and a multiplier turns the unit into the
metric's (1e-6: usecs to seconds).

One difference, because the kernel's buckets differ: ebpf_exporter's exp2 bucket i holds
(2^(i-1), 2^i] (its kernel side rounds the log up), so its `le` is 2^i. The engine's log2
buckets are bcc's, bucket i holding the integers 2^(i-1) .. 2^i - 1 (bucket 1: 0 and 1), so
here `le` is 2^i - 1: the largest value the bucket holds, which is what `le` (less or equal)
means. A linear bucket's `le` is likewise its largest value (min + i*step - 1); the bucket
below min ends at min - 1, and the one at or above max only counts towards +Inf.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from engine import aggs
from engine.decoders import STACK_DECODERS
from engine.errors import Location, Problem, SpecError
from engine.output import prom as output_prom
from engine.output import values
from engine.output.prom import (  # noqa: F401  (the exposition, where its callers look)
    LOG2_BUCKETS,
    PromHistogram,
    exposition,
    format_value,
)
from engine.plan import model as M
from engine.plan.bind import bind
from engine.spec import model as S


def upper_bounds(agg: M.Aggregation, max_log2: int = LOG2_BUCKETS) -> list[tuple[int, float]]:
    """(bucket index, le) for every finite bucket of the aggregation, ascending. A log2
    histogram may stop at `max_log2` (ebpf_exporter's bucket_max): higher buckets then only
    count towards +Inf."""
    return output_prom.upper_bounds(_scale(agg), max_log2)


def _scale(agg: M.Aggregation) -> Any:
    kind = aggs.KINDS[agg.kind]
    assert isinstance(kind, aggs.Histogram)
    return kind.scale(agg)


def histogram(
    agg: M.Aggregation,
    buckets: dict[int, int],
    total: int,
    multiplier: float = 1.0,
    max_log2: int = LOG2_BUCKETS,
) -> PromHistogram:
    """One key's buckets (index -> count, as sinks.Reader gathers them) and its exact sum of
    values, as cumulative Prometheus buckets; `le` and `_sum` are scaled by `multiplier`."""
    value = values.Histogram(buckets, total, agg.unit, _scale(agg))
    return output_prom.cumulative(value, multiplier, max_log2)


# --- the metric model: one spec's aggregations as metrics, checked ---------------------------

DEFAULT_MAX_SERIES = 1000
# Prometheus reserves label names starting with `__` (`__name__` is the metric name: a label
# of that name makes a scrape fail as a whole); `le` and `quantile` are the labels histograms
# and summaries add, so a key field of that name would make two series one.
RESERVED_LABELS = ("le", "quantile")
NOWHERE = Location("")
# The engine's own metrics (engine_series_overflow_total, ...) use this prefix; spec metrics
# may not, so no spec can shadow one, today's or a later one.
ENGINE_PREFIX = "engine_"

# A declared source unit -> (Prometheus base unit, divisor to it: a division is correctly
# rounded, 4095 / 1e9 prints 4.095e-06 where 4095 * 1e-9 does not). Only these convert; any
# other unit string is left as it is and not put in the name (declared, never guessed).
UNITS: dict[str, tuple[str, float]] = {
    "ns": ("seconds", 1e9),
    "nsecs": ("seconds", 1e9),
    "us": ("seconds", 1e6),
    "usecs": ("seconds", 1e6),
    "ms": ("seconds", 1e3),
    "msecs": ("seconds", 1e3),
    "s": ("seconds", 1.0),
    "secs": ("seconds", 1.0),
    "seconds": ("seconds", 1.0),
    "bytes": ("bytes", 1.0),
}

# The metric type each aggregation kind may be, the first one the default (engine.aggs:
# a `sum` of a signed field can fall, which a counter must not; see `allowed_types`).
TYPES: dict[str, tuple[str, ...]] = {name: k.prom_types for name, k in aggs.KINDS.items()}


@dataclass(frozen=True)
class Metric:
    """How one aggregation of one spec is exposed."""

    spec: str
    aggregation: str
    name: str  # without `_total` (prometheus_client adds it to counters)
    help: str
    type: str  # counter | gauge | histogram
    divisor: float  # source unit -> base unit
    max_series: int
    where: Location = NOWHERE  # the name's source: metrics.X.name, else the aggregation


def sanitize(name: str) -> str:
    """A Prometheus metric name from free text: [a-zA-Z_:][a-zA-Z0-9_:]*, lower case."""
    out = re.sub(r"[^a-zA-Z0-9_]+", "_", name).strip("_").lower()
    return out if out and not out[0].isdigit() else f"_{out}"


def allowed_types(agg: M.Aggregation) -> tuple[str, ...]:
    """The metric types an aggregation may be, its default first."""
    return aggs.KINDS[agg.kind].metric_types(agg.signed)


def exposed_names(metric: Metric) -> set[str]:
    """Every name the metric takes in an exposition: its family's and its samples'. Two
    metrics clash when these meet (a gauge `x_count` and a histogram `x`, a counter `x` and a
    gauge `x_total`)."""
    n = metric.name
    if metric.type == "counter":
        return {n, f"{n}_total"}
    if metric.type == "histogram":
        return {n, f"{n}_bucket", f"{n}_sum", f"{n}_count"}
    return {n}


def clashes(metrics: list[Metric]) -> list[Problem]:
    """A problem at each metric whose names meet an earlier one's, or the engine's own."""
    problems = []
    taken: dict[str, Metric] = {}
    for m in metrics:
        names = exposed_names(m)
        own = sorted(x for x in names if x.startswith(ENGINE_PREFIX) or x.startswith("__"))
        if own:
            problems.append(
                Problem(
                    f"metrics: metric name '{m.name}' starts with "
                    f"'{'__' if own[0].startswith('__') else ENGINE_PREFIX}', which is "
                    "reserved (engine_: the engine's own metrics; __: Prometheus); "
                    "name it with metrics.<aggregation>.name",
                    m.where,
                )
            )
            continue
        other = next((taken[x] for x in sorted(names) if x in taken), None)
        if other is not None:
            same = sorted(names & exposed_names(other))
            whose = (
                f"aggregation '{other.aggregation}'"
                if other.spec == m.spec
                else f"spec '{other.spec}' (aggregation '{other.aggregation}')"
            )
            problems.append(
                Problem(
                    f"metrics: {m.type} '{m.name}' of aggregation '{m.aggregation}' clashes "
                    f"with the {other.type} '{other.name}' of {whose} ({', '.join(same)}); "
                    "give one another name with metrics.<aggregation>.name",
                    m.where,
                )
            )
            continue
        taken.update(dict.fromkeys(names, m))
    return problems


def serving_program(plan: M.Plan) -> M.Program:
    """What `engine serve` keeps in the kernel: the spec's aggregations active with default
    options, else its output.count (what -c counts)."""
    program = bind(plan)
    if not program.aggregations and plan.counted is not None:
        program = bind(plan, count=True)
    return program


NO_METRIC = S.Metric("", None, None, None, None, None, S.NOWHERE, S.NOWHERE, S.NOWHERE)


def _aggregation_at(spec: S.Spec, agg: M.Aggregation) -> S.At:
    """Where the spec declares `agg`: output.count, or its output.aggregations entry."""
    if agg.by_count and spec.output.count is not None:
        return spec.output.count.at
    for entry in spec.output.aggregations:
        if entry.name == agg.name:
            return entry.at
    return spec.output.at


def _by_at(spec: S.Spec, agg: M.Aggregation, j: int) -> Location:
    """Where the `by` entry j of `agg` is written."""
    by: tuple[S.Column, ...] = ()
    if agg.by_count and spec.output.count is not None:
        by = spec.output.count.by
    else:
        by = next((e.by for e in spec.output.aggregations if e.name == agg.name), ())
    return by[j].entry.value if j < len(by) else _aggregation_at(spec, agg).value


STACK_LABEL = "is a stack, which cannot be a Prometheus label"


def label_problems(
    spec: S.Spec, agg: M.Aggregation, by: tuple[M.Column, ...], stacks: frozenset[str] = frozenset()
) -> list[Problem]:
    """Key fields whose names Prometheus reserves, or that hold stacks (a label per distinct
    stack would be unbounded, and its text has no place in a label), located at the `by`
    entry."""
    problems = []
    for column in by:
        name = column.field
        if name in stacks:
            j = agg.by.index(column) if column in agg.by else 0
            problems.append(
                Problem(
                    f"metrics: key field '{name}' of aggregation '{agg.name}' {STACK_LABEL}; "
                    "print stacks with engine run (-o folded)",
                    _by_at(spec, agg, j),
                )
            )
            continue
        if not (name.startswith("__") or name in RESERVED_LABELS):
            continue
        j = agg.by.index(column) if column in agg.by else 0
        why = (
            "Prometheus reserves label names starting with '__'"
            if name.startswith("__")
            else f"'{name}' is the label Prometheus adds to "
            f"{'histogram buckets' if name == 'le' else 'summary quantiles'}"
        )
        problems.append(
            Problem(
                f"metrics: key field '{name}' of aggregation '{agg.name}' cannot be a "
                f"Prometheus label: {why}; rename the field",
                _by_at(spec, agg, j),
            )
        )
    return problems


def metric_models(plan: M.Plan, program: M.Program, spec: S.Spec) -> dict[str, Metric]:
    """The metric of each active aggregation: the spec's `metrics:` entry, else derived.
    SpecError with every problem: an entry for no aggregation, a type the kind cannot be, a
    reserved label or metric name, two metrics whose names clash."""
    declared = {m.aggregation: m for m in spec.metrics}
    problems = []
    for name, metric in declared.items():
        if name not in {a.name for a in plan.aggregations}:
            names = ", ".join(a.name for a in plan.aggregations) or "none"
            problems.append(
                Problem(
                    f"metrics: no aggregation '{name}' (aggregations: {names}; "
                    "output.count is 'count')",
                    metric.at.key,
                )
            )
    for agg in plan.aggregations:  # also those serve leaves off: the entry is wrong anyway
        entry = declared.get(agg.name)
        mtype = entry.type if entry is not None else None
        kind_types = allowed_types(agg)
        if mtype is not None and mtype not in kind_types:
            signed = " of a signed field (it can fall; a counter cannot)" if agg.signed else ""
            problems.append(
                Problem(
                    f"metrics: a {agg.kind} aggregation{signed} is a "
                    f"{' or '.join(kind_types)}, not a {mtype}",
                    declared[agg.name].type_at.value,
                )
            )
    out: dict[str, Metric] = {}
    for sink in program.aggregations:
        agg = sink.agg
        entry = declared.get(agg.name) or NO_METRIC
        kind_types = allowed_types(agg)
        mtype = entry.type or kind_types[0]
        if mtype not in kind_types:
            continue  # said above
        stacks = frozenset(f.name for f in plan.fields if f.decoder in STACK_DECODERS)
        problems += label_problems(spec, agg, sink.by, stacks)
        counts = not aggs.KINDS[agg.kind].takes_value  # a count has no unit
        unit = entry.unit if entry.unit is not None else ("" if counts else agg.unit)
        base, divisor = ("", 1.0) if counts else UNITS.get(unit, ("", 1.0))
        derived = agg.header if agg.by_count else agg.name
        name = sanitize(entry.name or f"{plan.name}_{derived}")
        if mtype == "counter" and name.endswith("_total"):
            name = name[: -len("_total")]
        if base and not name.endswith(f"_{base}"):
            name = f"{name}_{base}"
        by = ", ".join(c.field for c in sink.by) or "nothing"
        help_text = entry.help or (
            f"spec {plan.name}: aggregation '{agg.name}' ({agg.kind}"
            f"{' of ' + agg.value if agg.value else ''}{' in ' + unit if unit else ''}) by {by}"
        )
        where = entry.name_at.value if entry.name is not None else _aggregation_at(spec, agg).value
        out[agg.name] = Metric(
            plan.name,
            agg.name,
            name,
            help_text,
            mtype,
            divisor,
            entry.max_series if entry.max_series is not None else DEFAULT_MAX_SERIES,
            where,
        )
    problems += clashes(list(out.values()))
    if problems:
        raise SpecError(problems)
    return out


def metric_problems(spec: S.Spec, plan: M.Plan) -> list[Problem]:
    """What `engine serve` would refuse in a planned spec, for `engine validate`: the same
    checks (`metric_models` on `serving_program`). A spec with no `metrics:` section and
    nothing to serve is fine for `engine run`; with one, it is meant to be served."""
    output = spec.output
    if not (output.aggregations or output.count or spec.has_metrics):
        return []  # nothing serve could serve, nothing said about serving
    program = serving_program(plan)
    problems = []
    if not program.aggregations and spec.has_metrics:
        problems.append(no_aggregation_problem(spec, plan))
    try:
        metric_models(plan, program, spec)
    except SpecError as error:
        problems += error.problems
    if not spec.has_metrics:  # a stack-keyed spec is for engine run; serve refuses it then
        problems = [p for p in problems if STACK_LABEL not in p.message]
    return problems


def no_aggregation_problem(spec: S.Spec, plan: M.Plan) -> Problem:
    return Problem(
        f"engine serve: spec '{plan.name}' has no aggregation to serve "
        "(add output.count or output.aggregations)",
        spec.output.at.key,
    )
