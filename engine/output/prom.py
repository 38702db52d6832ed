"""The Prometheus text exposition: a histogram as cumulative `le` buckets, `_sum` and
`_count`, every scrape showing the same bucket set (from the histogram's scale, not from
the buckets the kernel happened to fill), and scalar samples `name{labels} value`.

`le` is a bucket's largest value (what "less or equal" means): a log2 bucket i holds
2^(i-1) .. 2^i - 1, so its `le` is 2^i - 1; a linear bucket's is min + i*step - 1, the one
below min ends at min - 1, and the one at or above max only counts towards +Inf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

from engine.output.base import Renderer
from engine.output.values import Histogram, Keyed, LinearScale, Log2Scale, Number

LOG2_BUCKETS = 64  # bpf_log2l gives 1..64 for any u64


@dataclass(frozen=True)
class PromHistogram:
    """`buckets`: (le, cumulative count), ascending, the last one +Inf (equal to count)."""

    buckets: tuple[tuple[float, int], ...]
    sum: float
    count: int


def _log2_indexes(scale: Any, max_log2: int) -> range:
    return range(1, max_log2 + 1)


def _linear_indexes(scale: Any, max_log2: int) -> range:
    return range(scale.top)


# the finite buckets of each scale (a log2 one may stop at max_log2, ebpf_exporter's
# bucket_max: higher buckets then only count towards +Inf)
INDEXES: dict[type, Callable[[Any, int], range]] = {
    Log2Scale: _log2_indexes,
    LinearScale: _linear_indexes,
}


def upper_bounds(scale: Any, max_log2: int = LOG2_BUCKETS) -> list[tuple[int, float]]:
    """(bucket index, le) for every finite bucket of the scale, ascending."""
    out = []
    for i in INDEXES[type(scale)](scale, max_log2):
        high = scale.bounds(i)[1]
        assert high is not None
        out.append((i, float(high)))
    return out


def cumulative(
    h: Histogram, multiplier: float = 1.0, max_log2: int = LOG2_BUCKETS
) -> PromHistogram:
    """A histogram value as cumulative Prometheus buckets; `le` and `_sum` scaled by
    `multiplier` (1e-6: usecs to seconds)."""
    running = 0
    out: list[tuple[float, int]] = []
    for i, le in upper_bounds(h.scale, max_log2):
        running += h.buckets.get(i, 0)
        out.append((le * multiplier, running))
    out.append((math.inf, h.count))
    return PromHistogram(tuple(out), h.total * multiplier, h.count)


def format_value(x: float) -> str:
    """A sample value or `le` as the text format writes it: +Inf, integers without a dot,
    others to 15 significant digits (9 * 1e-3 prints as 0.009, not 0.009000000000000001)."""
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == int(x) and abs(x) < 2**53:
        return str(int(x))
    return f"{x:.15g}"


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def label_text(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape(str(v))}"' for k, v in labels.items()) + "}"


def exposition(name: str, labels: dict[str, str], h: PromHistogram) -> list[str]:
    """The text exposition lines of one labelled histogram (no HELP/TYPE lines)."""
    lines = [
        f"{name}_bucket{label_text({**labels, 'le': format_value(le)})} {n}" for le, n in h.buckets
    ]
    lines.append(f"{name}_sum{label_text(labels)} {format_value(h.sum)}")
    lines.append(f"{name}_count{label_text(labels)} {h.count}")
    return lines


class PromRenderer(Renderer):
    """Rows as samples: the leading columns are labels, the last one the value, named by its
    key; histograms as their exposition. Not an `engine run -o` format (serve uses it)."""

    name: ClassVar[str] = "prom"
    events: ClassVar[bool] = False

    def row(self, cells: Sequence[Any]) -> str:
        *labels, value = cells
        keys = [c.key for c in self.columns]
        text = label_text(dict(zip(keys, (str(v) for v in labels))))
        number = value.value if isinstance(value, Number) else value
        return f"{keys[-1]}{text} {format_value(float(number))}\n"

    def header(self) -> str:
        return ""

    def histograms(self, name: str, keys: Sequence[str], series: Sequence[Keyed]) -> str:
        lines = []
        for s in series:
            labels = {k: str(v) for k, v in s.key}
            lines += exposition(name, labels, cumulative(s.histogram))
        return "".join(line + "\n" for line in lines)
