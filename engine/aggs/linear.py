"""linear (a spec's `lhist`): bucket 0 below min, 1..n of width step, n+1 at or above max;
the value compared as an s64."""

from __future__ import annotations

from typing import ClassVar

from engine.aggs.base import Bounds, Params
from engine.aggs.histogram import Histogram
from engine.output.values import LinearScale


class Linear(Histogram):
    name: ClassVar[str] = "linear"
    spec_key: ClassVar[str] = "lhist"
    # its spec entry's keys: the field, and the buckets' low end, high end and width
    params: ClassVar[tuple[str, str, str, str]] = ("value", "min", "max", "step")

    def buckets(self, p: Params) -> int:
        return top_bucket(p) + 1

    def index(self, p: Params, v: int) -> int:
        """The kernel's linear bucket of a value read as s64 (emit_agg_linear.c.j2)."""
        v = v - (1 << 64) if v >= 1 << 63 else v
        if v < p.low:
            return 0
        if v >= p.high:
            return top_bucket(p)
        return 1 + (v - p.low) // p.step

    def scale(self, p: Params) -> LinearScale:
        return LinearScale(p.low, p.high, p.step)

    def finite_bounds(self, p: Params) -> tuple[float, ...]:
        """Every finite upper bound (inclusive) of the buckets: all of them, from the start."""
        return tuple(
            float(high)
            for i in range(top_bucket(p))
            if (high := linear_bounds(p, i)[1]) is not None
        )


def top_bucket(p: Params) -> int:
    """The bucket of values at or above max (the scale's `top`: one place computes it)."""
    return LinearScale(p.low, p.high, p.step).top


def linear_bounds(p: Params, i: int) -> Bounds:
    """Bucket 0 is below min, the top one at or above max; None is unbounded."""
    return LinearScale(p.low, p.high, p.step).bounds(i)
