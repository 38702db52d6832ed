"""Printing rows: bcc-style aligned table, JSON lines, or CSV. Data only goes to stdout."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Sequence, TextIO

FORMATS = ("table", "json", "csv")


class Printer:
    """Writes a header once, then rows, in one of FORMATS; columns are (key, header, width)."""

    def __init__(self, fmt: str, columns: Sequence[tuple[str, str, int]], out: TextIO) -> None:
        self.fmt = fmt
        self.columns = list(columns)
        self.out = out
        self.keys = [key for key, _, _ in self.columns]
        self._csv = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
        self._table = " ".join(
            f"{{:<{w}}}" if i < len(self.columns) - 1 else "{}"
            for i, (_, _, w) in enumerate(self.columns)
        )

    def header(self) -> None:
        if self.fmt == "table":
            self.out.write(self._table.format(*(h for _, h, _ in self.columns)) + "\n")
        elif self._csv is not None:
            self._csv.writerow(h for _, h, _ in self.columns)

    def row(self, values: Sequence[Any]) -> None:
        if self.fmt == "table":
            self.out.write(self._table.format(*(_cell(v) for v in values)) + "\n")
        elif self.fmt == "json":
            self.out.write(json.dumps(dict(zip(self.keys, values)), separators=(",", ":")) + "\n")
        elif self._csv is not None:
            self._csv.writerow(_cell(v) for v in values)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def render_rows(fmt: str, columns: Sequence[tuple[str, str, int]], rows: list[list[Any]]) -> str:
    """A whole table as text (count mode prints this at the end or every interval)."""
    buf = io.StringIO()
    printer = Printer(fmt, columns, buf)
    printer.header()
    for r in rows:
        printer.row(r)
    return buf.getvalue()
