"""Histograms as Prometheus exposes them: cumulative `le` buckets, `_sum` and `_count`.

Pure functions for a metrics endpoint to use. As in ebpf_exporter (exporter/histogram.go),
the bucket set comes from the aggregation's configuration, not from the keys the kernel
happened to fill, so every scrape shows the same `le` values (missing buckets are backfilled
with the running count), and a multiplier turns the unit into the metric's (1e-6: usecs to
seconds).

One difference, because the kernel's buckets differ: ebpf_exporter's exp2 bucket i holds
(2^(i-1), 2^i] (its kernel side rounds the log up), so its `le` is 2^i. The engine's log2
buckets are bcc's, bucket i holding the integers 2^(i-1) .. 2^i - 1 (bucket 1: 0 and 1), so
here `le` is 2^i - 1: the largest value the bucket holds, which is what `le` (less or equal)
means. A linear bucket's `le` is likewise its largest value (min + i*step - 1); the bucket
below min ends at min - 1, and the one at or above max only counts towards +Inf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.plan import model as M
from engine.runtime.sinks import linear_bounds, log2_bounds

LOG2_BUCKETS = 64  # bpf_log2l gives 1..64 for any u64


@dataclass(frozen=True)
class PromHistogram:
    """`buckets`: (le, cumulative count), ascending, the last one +Inf (equal to count)."""

    buckets: tuple[tuple[float, int], ...]
    sum: float
    count: int


def upper_bounds(agg: M.Aggregation, max_log2: int = LOG2_BUCKETS) -> list[tuple[int, float]]:
    """(bucket index, le) for every finite bucket of the aggregation, ascending. A log2
    histogram may stop at `max_log2` (ebpf_exporter's bucket_max): higher buckets then only
    count towards +Inf."""
    if agg.kind == "log2":
        return [(i, float(log2_bounds(i)[1])) for i in range(1, max_log2 + 1)]
    top = (agg.high - agg.low) // agg.step + 1
    out = []
    for i in range(top):
        high = linear_bounds(agg, i)[1]
        assert high is not None
        out.append((i, float(high)))
    return out


def histogram(
    agg: M.Aggregation,
    buckets: dict[int, int],
    total: int,
    multiplier: float = 1.0,
    max_log2: int = LOG2_BUCKETS,
) -> PromHistogram:
    """One key's buckets (index -> count, as sinks.Reader gathers them) and its exact sum of
    values, as cumulative Prometheus buckets; `le` and `_sum` are scaled by `multiplier`."""
    running = 0
    out: list[tuple[float, int]] = []
    for i, le in upper_bounds(agg, max_log2):
        running += buckets.get(i, 0)
        out.append((le * multiplier, running))
    count = sum(buckets.values())
    out.append((math.inf, count))
    return PromHistogram(tuple(out), total * multiplier, count)


def format_value(x: float) -> str:
    """A sample value or `le` as the text format writes it: +Inf, integers without a dot,
    others to 15 significant digits (9 * 1e-3 prints as 0.009, not 0.009000000000000001)."""
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == int(x) and abs(x) < 2**53:
        return str(int(x))
    return f"{x:.15g}"


def exposition(name: str, labels: dict[str, str], h: PromHistogram) -> list[str]:
    """The text exposition lines of one labelled histogram (no HELP/TYPE lines)."""

    def label_text(extra: dict[str, str]) -> str:
        items = {**labels, **extra}
        if not items:
            return ""
        return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items.items()) + "}"

    lines = [f"{name}_bucket{label_text({'le': format_value(le)})} {n}" for le, n in h.buckets]
    lines.append(f"{name}_sum{label_text({})} {format_value(h.sum)}")
    lines.append(f"{name}_count{label_text({})} {h.count}")
    return lines


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
