"""The renderer protocol: one class per output format, chosen from engine.output.RENDERERS.

A renderer turns values into text and writes nothing; callers batch the text. Rows of events
go through `header()` and `row()`; an aggregation through `table()` and `histograms()`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, Sequence

from engine.output.values import Column, Keyed, Order, Table, ordered


class Renderer:
    """One format. `columns` are the rows' columns; `envelope` (JSON) leads each row."""

    name: ClassVar[str]
    events: ClassVar[bool] = True  # `engine run -o` can print events in it
    stacks: ClassVar[bool] = False  # prints only aggregations keyed by stacks (folded, SVG)
    exact_text: ClassVar[bool] = False  # text cells as they are (its own escaping), not escaped

    def __init__(self, columns: Sequence[Column], envelope: dict[str, str] | None = None):
        self.columns = tuple(columns)
        self.envelope = envelope

    def header(self) -> str:
        """Text before the first row ("" where the format has none)."""
        return ""

    def row(self, cells: Sequence[Any]) -> str:
        raise NotImplementedError

    def enveloped_row(self, cells: Sequence[Any], extra: Mapping[str, str]) -> str:
        """A row whose envelope has keys of its own besides the constant ones (only JSON
        prints an envelope; the others print the row)."""
        return self.row(cells)

    def table(self, table: Table, order: Order | None = None) -> str:
        """A whole table: its header, then its rows in `order` (with its top-N cut)."""
        renderer = type(self)(table.columns)
        return renderer.header() + "".join(renderer.row(r) for r in ordered(table.rows, order))

    def histograms(self, name: str, keys: Sequence[str], series: Sequence[Keyed]) -> str:
        """Every key's histogram of one aggregation keyed by the fields `keys`."""
        raise NotImplementedError

    def stamp(self, interval: int, clock: bool) -> str:
        """What leads the `interval`-th print of an --interval run ("" where the format has
        none); `clock`: --clock asked for the wall-clock time."""
        return ""
