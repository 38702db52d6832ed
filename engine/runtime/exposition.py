"""The Prometheus text format (0.0.4) written straight from the engine's series, the same bytes
prometheus_client's generate_latest writes for the same families, several times faster.

A scrape of 10,000 series spent most of its time in prometheus_client building a Sample per
series and formatting its labels (sorted, escaped) again at every scrape. Here a series' label
text is made once and kept by its labels (they are the same from one scrape to the next), so a
sample line is one f-string. The engine's own few metrics stay prometheus_client families and
print through `metric_text`, which follows generate_latest line for line.
`tests/unit/test_exposition.py` checks the two agree byte for byte.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

Labels = tuple[tuple[str, str], ...]
MAX_CACHED = 1 << 20  # label texts kept before the cache starts over (a bound, not a tuning)


def escape_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def go_float(value: float) -> str:
    """A sample value as Go's strconv (and prometheus_client's floatToGoString) writes it."""
    if type(value) is int and 0 <= value < 1_000_000:  # the common case: a count
        return f"{value}.0"
    d = float(value)
    if math.isinf(d):
        return "+Inf" if d > 0 else "-Inf"
    if math.isnan(d):
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:  # Go switches to exponents sooner than Python
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s


class LabelText:
    """`{a="x",b="y"}` for a series' labels, names sorted as the text format has them, made
    once per labels; with `le`, the parts before and after it, for histogram buckets."""

    def __init__(self) -> None:
        self.plain: dict[Labels, str] = {}
        self.around_le: dict[Labels, tuple[str, str]] = {}

    def __call__(self, labels: Labels) -> str:
        found = self.plain.get(labels)
        if found is None:
            if len(self.plain) >= MAX_CACHED:
                self.plain.clear()
            pairs = ",".join(f'{k}="{escape_value(v)}"' for k, v in sorted(labels))
            found = self.plain[labels] = f"{{{pairs}}}" if pairs else ""
        return found

    def bucket(self, labels: Labels) -> tuple[str, str]:
        """Text before `le="..."` (the name, `{`, and the labels that sort before le) and
        after it (those that sort after, and `}`)."""
        found = self.around_le.get(labels)
        if found is None:
            if len(self.around_le) >= MAX_CACHED:
                self.around_le.clear()
            ordered = sorted(labels)
            before = "".join(f'{k}="{escape_value(v)}",' for k, v in ordered if k < "le")
            after = "".join(f',{k}="{escape_value(v)}"' for k, v in ordered if k > "le")
            found = self.around_le[labels] = (f"{{{before}", f"{after}}}")
        return found


class Family:
    """One metric family, its samples already text. `type` is counter, gauge or histogram;
    a counter's samples are NAME_total, as prometheus_client names them."""

    def __init__(self, name: str, type: str, documentation: str) -> None:
        self.name = name
        self.type = type
        self.documentation = documentation
        self.lines: list[str] = []

    @property
    def exposed(self) -> str:
        return f"{self.name}_total" if self.type == "counter" else self.name

    def value(self, label_text: str, value: float) -> None:
        self.lines.append(f"{self.exposed}{label_text} {go_float(value)}\n")

    def histogram(
        self,
        labels: Labels,
        texts: LabelText,
        cumulative: Iterable[tuple[str, int]],
        count: int,
        total: float,
    ) -> None:
        """One series of a histogram: its cumulative buckets (le text, count), then _count
        and _sum (generate_latest's order)."""
        before, after = texts.bucket(labels)
        name = self.name
        lines = self.lines
        for le, n in cumulative:
            lines.append(f'{name}_bucket{before}le="{le}"{after} {go_float(n)}\n')
        plain = texts(labels)
        lines.append(f"{name}_count{plain} {go_float(count)}\n")
        lines.append(f"{name}_sum{plain} {go_float(total)}\n")

    def text(self) -> str:
        head = (
            f"# HELP {self.exposed} {escape_help(self.documentation)}\n"
            f"# TYPE {self.exposed} {self.type}\n"
        )
        return head + "".join(self.lines)


def metric_text(metric: Any) -> str:
    """A prometheus_client family (the engine's own metrics) as generate_latest writes it
    (counter, gauge and histogram families without _created samples)."""
    name = f"{metric.name}_total" if metric.type == "counter" else metric.name
    out = [
        f"# HELP {name} {escape_help(metric.documentation)}\n",
        f"# TYPE {name} {metric.type}\n",
    ]
    for s in metric.samples:
        pairs = ",".join(f'{k}="{escape_value(v)}"' for k, v in sorted(s.labels.items()))
        labels = f"{{{pairs}}}" if pairs else ""
        out.append(f"{s.name}{labels} {go_float(s.value)}\n")
    return "".join(out)


def render(families: Iterable[Any]) -> bytes:
    """The exposition of every family, in order: Family or prometheus_client family."""
    parts = [f.text() if isinstance(f, Family) else metric_text(f) for f in families]
    return "".join(parts).encode("utf-8")
