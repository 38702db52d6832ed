"""A session's in-kernel aggregations as plain values, read at the moment of asking.

`engine serve` turns these into Prometheus metrics at scrape time; nothing is copied in
between. Each aggregation kind (engine.aggs) says how its merged value becomes a sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from engine import aggs
from engine.plan import model as M
from engine.runtime import sinks


@dataclass(frozen=True)
class Bucket:
    """One histogram bucket: values up to `le` (inclusive; math.inf for the last), raw count
    (not cumulative)."""

    le: float
    count: int


@dataclass(frozen=True)
class Series:
    """One key of an aggregation: labels are (key field, decoded value) in key order."""

    labels: tuple[tuple[str, str], ...]
    value: int | float = 0
    buckets: tuple[Bucket, ...] = ()
    sum: float = 0
    count: int = 0


@dataclass(frozen=True)
class Aggregate:
    """One aggregation of one session, read now."""

    name: str  # the spec's aggregation name (`count` for output.count)
    kind: str  # its engine.aggs kind name
    key_fields: tuple[str, ...]
    unit: str  # as the spec wrote it (`usecs`, `ns`, `bytes`, ...), "" if none
    series: tuple[Series, ...]
    dropped: int  # events the kernel dropped: their key did not fit the map
    header: str = ""  # the table header (count mode: CONNECTS), for derived metric names
    cli_count: bool = False  # the spec's output.count, turned on by -c (or serve)
    # a histogram's finite `le`s that every series shows, filled or not, so no bucket series
    # appears late (a late one loses its first increments to rate()): an lhist's are all its
    # buckets; a log2's () here: from bucket 1 up to the highest ever filled (engine serve)
    bounds: tuple[float, ...] = ()


def _labels(sink: M.AggSink, s: sinks.Series) -> tuple[tuple[str, str], ...]:
    return tuple((c.field, str(v)) for c, v in zip(sink.by, s.key))


def convert(
    sink: M.AggSink, s: sinks.Series, cache: dict[tuple[Any, ...], Any] | None = None
) -> Series:
    """One key read by sinks.Reader as a sample: buckets for a histogram kind, else the
    kind's (value, sum, count) (engine.aggs). `cache` keeps labels by key across reads."""
    kind = sink.kind
    labels = None if cache is None else cache.get(s.key)
    if labels is None:
        labels = _labels(sink, s)
        if cache is not None:
            if len(cache) > sinks.MAX_DECODED:
                cache.clear()
            cache[s.key] = labels
    if isinstance(kind, aggs.Histogram):
        assert s.buckets is not None
        out = []
        for i, n in sorted(s.buckets.items()):
            high = kind.bounds(sink.agg, i)[1]
            out.append(Bucket(math.inf if high is None else float(high), n))
        return Series(labels, buckets=tuple(out), sum=s.total, count=s.count)
    value, total, count = kind.metric(s.value)
    return Series(labels, value=value, sum=total, count=count)


def linear_bounds(agg: M.Aggregation) -> tuple[float, ...]:
    """Every finite upper bound a histogram shows from the start (an lhist's); () else."""
    kind = aggs.KINDS[agg.kind]
    return kind.finite_bounds(agg) if isinstance(kind, aggs.Histogram) else ()


# every kind converts the same way now; kept by name for the callers that look one up
KINDS: dict[str, Callable[[M.AggSink, sinks.Series], Series]] = dict.fromkeys(aggs.KINDS, convert)


def read_readers(session: Any, readers: list[sinks.Reader]) -> list[Aggregate]:
    """The aggregations these readers read from a loaded `runner.Session`'s maps now, with
    the events each dropped, as values (engine.runtime.loop.MapAggregations.read)."""
    errors = session.errors()
    out = []
    for reader in readers:
        sink = reader.sink
        cache = reader.labels if reader.pure else None
        series = tuple(convert(sink, s, cache) for s in reader.read(session.bpf))
        out.append(
            Aggregate(
                name=sink.agg.name,
                kind=sink.agg.kind,
                key_fields=tuple(c.field for c in sink.by),
                unit=sink.agg.unit,
                series=series,
                dropped=errors[sink.index] if sink.index < len(errors) else 0,
                header=sink.agg.header,
                cli_count=sink.agg.by_count,
                bounds=linear_bounds(sink.agg),
            )
        )
    return out
