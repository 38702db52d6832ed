"""A session's in-kernel aggregations as plain values, read at the moment of asking.

`engine serve` turns these into Prometheus metrics at scrape time; nothing is copied in
between. Each aggregation kind is one converter in KINDS (how a sinks.Series becomes a
`Series` here), so a new kind is one function and one registry line.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any, Callable

from engine.plan import model as M
from engine.runtime import decoders, sinks


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
    kind: str  # count sum min max avg log2 linear
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


Converter = Callable[[M.AggSink, "sinks.Series"], Series]


def _labels(sink: M.AggSink, s: sinks.Series) -> tuple[tuple[str, str], ...]:
    return tuple((c.field, str(v)) for c, v in zip(sink.by, s.key))


def _scalar(sink: M.AggSink, s: sinks.Series) -> Series:
    return Series(_labels(sink, s), value=int(s.value))


def _avg(sink: M.AggSink, s: sinks.Series) -> Series:
    total, n = s.value
    return Series(_labels(sink, s), value=(total / n) if n else 0.0, sum=total, count=n)


def _histogram(sink: M.AggSink, s: sinks.Series) -> Series:
    assert s.buckets is not None
    out = []
    for i, n in sorted(s.buckets.items()):
        high = sinks.bounds(sink.agg, i)[1]
        out.append(Bucket(math.inf if high is None else float(high), n))
    return Series(_labels(sink, s), buckets=tuple(out), sum=s.total, count=s.count)


def linear_bounds(agg: M.Aggregation) -> tuple[float, ...]:
    """Every finite upper bound (inclusive) of an lhist's buckets; () for other kinds."""
    if agg.kind != "linear":
        return ()
    top = (agg.high - agg.low) // agg.step + 1
    return tuple(float(high) for i in range(top) if (high := sinks.bounds(agg, i)[1]) is not None)


KINDS: dict[str, Converter] = {
    "count": _scalar,
    "sum": _scalar,
    "min": _scalar,
    "max": _scalar,
    "avg": _avg,
    "log2": _histogram,
    "linear": _histogram,
}


class _Readers:
    """The sinks.Reader of each aggregation of one session, made once."""

    def __init__(self, session: Any) -> None:
        program: M.Program = session.program
        fields = {f.name: f for f in program.fields}
        self.state = decoders.State(exact_text=True)  # label values: the exposition escapes
        self.readers = [sinks.Reader(s, fields, self.state) for s in program.aggregations]


_CACHE: weakref.WeakKeyDictionary[Any, _Readers] = weakref.WeakKeyDictionary()


def read_aggregates(session: Any) -> list[Aggregate]:
    """Every active aggregation of a loaded `runner.Session`, read from its maps now."""
    readers = _CACHE.get(session)
    if readers is None:
        readers = _CACHE[session] = _Readers(session)
    errors = session.errors()
    out = []
    for reader in readers.readers:
        sink = reader.sink
        convert = KINDS[sink.agg.kind]
        series = tuple(convert(sink, s) for s in reader.read(session.bpf))
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
