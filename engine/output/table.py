"""bcc-style aligned text: `%-Ns` columns, three decimals for decimal columns, and bcc's
histogram layouts (print_log2_hist, print_linear_hist) byte for byte."""

# ruff: noqa: UP031 -- the formats copy bcc's printf formats, so they stay % formats
from __future__ import annotations

import time
from typing import Any, Callable, ClassVar, Sequence

from engine.output.base import Renderer
from engine.output.values import (
    Column,
    Histogram,
    Keyed,
    LinearScale,
    Log2Scale,
    Order,
    Stack,
    Table,
    ordered,
)

STARS = 40


class TableRenderer(Renderer):
    name: ClassVar[str] = "table"

    def __init__(self, columns: Sequence[Column], envelope: dict[str, str] | None = None):
        super().__init__(columns, envelope)
        last = len(self.columns) - 1
        self._row = " ".join(
            (f"%-{c.width}.3f" if c.decimal else f"%-{c.width}s")
            if i < last
            else ("%.3f" if c.decimal else "%s")
            for i, c in enumerate(self.columns)
        )
        self._header = " ".join(
            f"%-{c.width}s" if i < last else "%s" for i, c in enumerate(self.columns)
        )

    def header(self) -> str:
        return self._header % tuple(c.header for c in self.columns) + "\n"

    def row(self, cells: Sequence[Any]) -> str:
        if any(isinstance(c, Stack) for c in cells):
            return self.stacked(cells)
        return self._row % tuple(cells) + "\n"

    def stacked(self, cells: Sequence[Any]) -> str:
        """A row with multi-line cells: the first line holds every cell's first line, then
        one line per further frame, each under its column."""
        cols = [c.lines() if isinstance(c, Stack) else [c] for c in cells]
        depth = max(len(c) for c in cols)
        lines = []
        for n in range(depth):
            line = [c[n] if n < len(c) else "" for c in cols]
            lines.append(" ".join(f"%-{col.width}s" % v for col, v in zip(self.columns, line)))
        return "\n".join(x.rstrip() for x in lines) + "\n"

    def stamp(self, interval: int, clock: bool) -> str:
        """bcc's -T: the local time before each interval's tables."""
        return "\n" + time.strftime("%H:%M:%S") if clock else ""

    def table(self, table: Table, order: Order | None = None) -> str:
        """An aggregation's table follows a blank line, as bcc's tools print theirs; one keyed
        by stacks prints bcc profile's layout instead."""
        if table.stacked:
            return stack_table(table, order)
        return "\n" + super().table(table, order)

    def histograms(self, name: str, keys: Sequence[str], series: Sequence[Keyed]) -> str:
        out = []
        for s in series:
            head = ", ".join(f"{k} = {v}" for k, v in s.labelled())
            layout = LAYOUTS[type(s.histogram.scale)]
            out.append(("\n" + head + "\n" if head else "\n") + layout(s.histogram))
        return "".join(out)


def stack_table(table: Table, order: Order | None) -> str:
    """Rows keyed by stacks as bcc's profile prints them: each stack's frames one per line
    (kernel, then `--`, then user), `-  comm (pid)` for the other key cells, then the values;
    the largest last, nearest the prompt, as bcc sorts them."""
    out = []
    for row in reversed(ordered(table.rows, order)):
        keys, vals = row[: table.keys], row[table.keys :]
        stacks = [c for c in keys if isinstance(c, Stack)]
        lines: list[str] = []
        for s in stacks:
            if lines and s.frames:
                lines.append("    --")
            lines += [f"    {f}" for f in s.lines()]
        other = [str(c) for c in keys if not isinstance(c, Stack)]
        if other:
            label = other[0] + "".join(f" ({c})" for c in other[1:])
            lines.append("    %-16s %s" % ("-", label))
        if len(vals) == 1:
            lines.append(f"        {vals[0]}")
        else:
            cols = table.columns[table.keys :]
            lines.append("        " + "  ".join(f"{c.header} {v}" for c, v in zip(cols, vals)))
        out.append("\n".join(lines) + "\n")
    return "".join(f"{block}\n" for block in out)


def stars(val: int, val_max: int, width: int) -> str:
    """bcc's bar (table._stars): floor(width * val / val_max) stars, at most `width`."""
    return "*" * min(width, int(width * val / val_max)) if val_max else ""


def log2_table(h: Histogram) -> str:
    """A log2 histogram byte for byte as bcc's print_log2_hist prints it: rows from bucket 1
    to the last non-empty one, the wide layout with 20 stars past bucket 32, nothing at all
    when no bucket past 0 holds a count."""
    buckets, unit = h.buckets, h.unit
    idx_max = max((i for i, v in buckets.items() if v > 0), default=-1)
    if idx_max <= 0:
        return ""
    val_max = max(buckets.values())
    if idx_max <= 32:
        header, body = "     %-19s : count     distribution", "%10d -> %-10d : %-8d |%-*s|"
        width = STARS
    else:
        header = "               %-29s : count     distribution"
        body, width = "%20d -> %-20d : %-8d |%-*s|", STARS // 2
    lines = [header % unit]
    for i in range(1, idx_max + 1):
        low, high = h.scale.bounds(i)
        val = buckets.get(i, 0)
        lines.append(body % (low, high, val, width, stars(val, val_max, width)))
    return "\n".join(lines) + "\n"


def linear_table(h: Histogram) -> str:
    """A linear histogram, from the bucket of `min` (or the one below it when that holds a
    count) to the last non-empty one. With step 1 each row is one value, byte for byte as
    bcc's print_linear_hist prints it; wider steps print ranges as print_log2_hist does. The
    outer buckets read `< min` and `>= max`."""
    buckets, unit, scale = h.buckets, h.unit, h.scale
    idx_max = max((i for i, v in buckets.items() if v > 0), default=-1)
    if idx_max < 0:
        return ""
    val_max = max(buckets.values())
    if scale.step == 1:
        lines = ["     %-13s : count     distribution" % unit]
    else:
        lines = ["     %-19s : count     distribution" % unit]
    for i in range(0 if buckets.get(0) else 1, idx_max + 1):
        low, high = scale.bounds(i)
        if low is None or high is None:
            text = f"< {scale.low}" if low is None else f">= {scale.high}"
            label = ("        %-10s" if scale.step == 1 else "%-24s") % text
        elif scale.step == 1:
            label = "        %-10d" % low
        else:
            label = "%10d -> %-10d" % (low, high)
        val = buckets.get(i, 0)
        lines.append("%s : %-8d |%-*s|" % (label, val, STARS, stars(val, val_max, STARS)))
    return "\n".join(lines) + "\n"


# each scale's text layout, by the scale's type
LAYOUTS: dict[type, Callable[[Histogram], str]] = {
    Log2Scale: log2_table,
    LinearScale: linear_table,
}
