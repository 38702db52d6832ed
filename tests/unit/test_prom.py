"""Prometheus histogram buckets (engine.runtime.prom): cumulative `le` counts over the whole
configured bucket set, +Inf equal to _count, _sum scaled like `le`, bounds inclusive."""

from __future__ import annotations

import math

from engine.plan import model as M
from engine.runtime import prom, sinks

LOG2 = M.Aggregation("lat", "log2", "usecs", (), "", "usecs", 10240)
LIN = M.Aggregation("lin", "linear", "v", (), "", "v", 10240, low=0, high=30, step=10)


def observe(agg: M.Aggregation, values: list[int]) -> tuple[dict[int, int], int]:
    """Buckets as the kernel fills them (the index functions the kernel test checks)."""
    buckets: dict[int, int] = {}
    for v in values:
        i = sinks.log2_index(v) if agg.kind == "log2" else sinks.linear_index(agg, v)
        buckets[i] = buckets.get(i, 0) + 1
    return buckets, sum(values)


def test_log2_buckets_are_cumulative_with_inclusive_bounds() -> None:
    values = [0, 1, 3, 4, 1000, 2**40]
    h = prom.histogram(LOG2, *observe(LOG2, values), max_log2=4)
    assert h.buckets == ((1.0, 2), (3.0, 3), (7.0, 4), (15.0, 4), (math.inf, 6))
    assert h.count == 6 and h.sum == float(sum(values))
    # every `le` counts exactly the values <= it
    for le, n in h.buckets:
        assert n == sum(1 for v in values if v <= le)
    assert len(prom.histogram(LOG2, {}, 0).buckets) == 65  # the whole set, even when empty


def test_linear_buckets_and_the_multiplier() -> None:
    values = [-5, 0, 9, 10, 29, 30, 500]
    h = prom.histogram(LIN, *observe(LIN, values), multiplier=0.5)
    assert h.buckets == ((-0.5, 1), (4.5, 3), (9.5, 4), (14.5, 5), (math.inf, 7))
    assert h.sum == sum(values) * 0.5
    for le, n in h.buckets:
        assert n == sum(1 for v in values if v * 0.5 <= le)


def test_exposition_lines() -> None:
    h = prom.histogram(LIN, {1: 2, 4: 1}, 35, multiplier=1e-3)
    assert prom.exposition("x_seconds", {"comm": 'a"b'}, h) == [
        'x_seconds_bucket{comm="a\\"b",le="-0.001"} 0',
        'x_seconds_bucket{comm="a\\"b",le="0.009"} 2',
        'x_seconds_bucket{comm="a\\"b",le="0.019"} 2',
        'x_seconds_bucket{comm="a\\"b",le="0.029"} 2',
        'x_seconds_bucket{comm="a\\"b",le="+Inf"} 3',
        'x_seconds_sum{comm="a\\"b"} 0.035',
        'x_seconds_count{comm="a\\"b"} 3',
    ]
    assert prom.exposition("n", {}, prom.histogram(LOG2, {1: 1}, 1, max_log2=1)) == [
        'n_bucket{le="1"} 1',
        'n_bucket{le="+Inf"} 1',
        "n_sum 1",
        "n_count 1",
    ]
