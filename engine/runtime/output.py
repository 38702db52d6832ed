"""Printing rows: bcc-style aligned table, JSON lines, or CSV. Data only goes to stdout.

The text of each format is its renderer's (engine.output.RENDERERS); this only batches it:
rows are formatted as they come and collected, and `flush()` writes them at once, so a burst
of events costs one write, not one per event.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence, TextIO

from engine.output import FORMATS, RENDERERS
from engine.output.values import Column

__all__ = ["FORMATS", "Printer"]

ColumnSpec = tuple[str, str, int, bool]  # (key, header, width, decimal)


class Printer:
    """Header once, then rows, in one of FORMATS. Columns are (key, header, width, is_float)."""

    def __init__(
        self,
        fmt: str,
        columns: Sequence[ColumnSpec] | Sequence[Column],
        out: TextIO,
        envelope: dict[str, str] | None = None,
    ):
        self.envelope = envelope  # json: {"engine": {time, **envelope}} leads each row
        self.out = out
        cols = [c if isinstance(c, Column) else Column(*c) for c in columns]
        self.renderer = RENDERERS[fmt](cols, envelope)
        self.row_text = self.renderer.row
        self.pending: list[str] = []

    def header(self) -> None:
        text = self.renderer.header()
        if text:
            self.pending.append(text)

    def row(self, values: Sequence[Any], extra: Mapping[str, str] | None = None) -> None:
        """One row; `extra`: this row's own envelope keys (--envelope's container and pod)."""
        if extra is None:
            self.pending.append(self.row_text(values))
        else:
            self.pending.append(self.renderer.enveloped_row(values, extra))

    def flush(self) -> None:
        """Write what is pending (BrokenPipeError propagates to the caller)."""
        if self.pending:
            text = "".join(self.pending)
            self.pending.clear()
            self.out.write(text)
        self.out.flush()
