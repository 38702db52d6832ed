"""What log2 and linear share: per key, a u64 per bucket and the values' sum (in the field's
signedness, so a total is exact); CPUs add bucket by bucket."""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

from engine.aggs.base import AggKind, Bounds, Member, Params, wrap
from engine.output import values
from engine.output.values import Scale


class Histogram(AggKind):
    words: ClassVar[str] = "a histogram"
    histogram: ClassVar[bool] = True
    prom_types: ClassVar[tuple[str, ...]] = ("histogram",)

    def members(self, value_ctype: str, buckets: int) -> tuple[Member, ...]:
        return (("u64", "buckets", buckets), (value_ctype, "sum", 0))

    def merge(self, values: Sequence[Any], signed: bool) -> tuple[dict[int, int], int] | None:
        """(bucket index -> count, sum of the values), or None when no bucket holds a count."""
        counts = [0] * len(values[0].buckets) if values else []
        for v in values:
            counts = [a + b for a, b in zip(counts, v.buckets)]
        buckets = {i: n for i, n in enumerate(counts) if n}
        return (buckets, wrap(sum(v.sum for v in values), signed)) if buckets else None

    def index(self, p: Params, v: int) -> int:
        """The kernel's bucket of a value (the partial's arithmetic, for tests and oracles)."""
        raise NotImplementedError

    def scale(self, p: Params) -> Scale:
        """How bucket indexes bound values (engine.output.values: renderers read it)."""
        raise NotImplementedError

    def bounds(self, p: Params, i: int) -> Bounds:
        """Bucket i's inclusive (low, high)."""
        return self.scale(p).bounds(i)

    def value(self, p: Params, merged: tuple[dict[int, int], int], unit: str) -> values.Histogram:
        """A merged (buckets, sum) as the histogram value renderers print."""
        buckets, total = merged
        return values.Histogram(buckets, total, unit, self.scale(p))

    def finite_bounds(self, p: Params) -> tuple[float, ...]:
        """The finite upper bounds every series shows in a scrape; () when they depend on
        what was filled (log2: `engine serve` grows them)."""
        return ()
