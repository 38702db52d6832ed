"""Folded stacks: one line per stack, `comm;outermost;...;innermost count`, the format
flamegraph.pl, inferno and speedscope read (bcc's profile -f, stackcount -f).

Only an aggregation keyed by at least one stack prints so. A row's line is its first text key
(the command, as bcc's) then its user frames and its kernel frames, each outermost first (the
process's own code at the root, the kernel above it); other key cells (a pid) are left out,
so rows that fold to the same line add up. `;` inside a frame becomes `:` (it separates
frames); the count is the row's first value.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar, Sequence

from engine.output.base import Renderer
from engine.output.values import Keyed, Number, Order, Stack, Table, Text, ordered

USER_FIRST = {"user": 0, "kernel": 1}  # root first: user code, then the kernel it called


def folded_lines(table: Table, order: Order | None = None) -> list[tuple[list[str], Any]]:
    """Each row as (frames root first, its value), rows folding alike summed, in `order`."""
    merged: dict[tuple[str, ...], Any] = {}
    for row in ordered(table.rows, order):
        keys, value = row[: table.keys], row[table.keys]
        stacks = sorted(
            (c for c in keys if isinstance(c, Stack)), key=lambda s: USER_FIRST.get(s.kind, 2)
        )
        texts = [str(c) for c in keys if isinstance(c, (str, Text))]  # the comm, not a pid
        frames = texts[:1] + [str(f).replace(";", ":") for s in stacks for f in reversed(s.frames)]
        number = value.value if isinstance(value, Number) else value
        key = tuple(frames)
        merged[key] = merged.get(key, 0) + number
    return [(list(k), v) for k, v in merged.items()]


def count_text(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(int(value)) if value == value.to_integral_value() else str(value)
    return str(value)


class FoldedRenderer(Renderer):
    name: ClassVar[str] = "folded"
    events: ClassVar[bool] = False
    stacks: ClassVar[bool] = True

    def row(self, cells: Sequence[Any]) -> str:
        raise NotImplementedError("folded output prints aggregations keyed by stacks only")

    def table(self, table: Table, order: Order | None = None) -> str:
        lines = folded_lines(table, order)
        return "".join(f"{';'.join(frames)} {count_text(v)}\n" for frames, v in lines)

    def histograms(self, name: str, keys: Sequence[str], series: Sequence[Keyed]) -> str:
        return ""  # a histogram has no stack to fold (runs refuse such specs: engine.cli)
