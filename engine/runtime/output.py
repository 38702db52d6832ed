"""Printing rows: bcc-style aligned table, JSON lines, or CSV. Data only goes to stdout.

Rows are formatted with formats fixed up front and collected; `flush()` writes them at once,
so a burst of events costs one write, not one per event.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Sequence, TextIO

FORMATS = ("table", "json", "csv")


class Printer:
    """Header once, then rows, in one of FORMATS. Columns are (key, header, width, is_float)."""

    def __init__(
        self,
        fmt: str,
        columns: Sequence[tuple[str, str, int, bool]],
        out: TextIO,
        envelope: dict[str, str] | None = None,
    ):
        self.fmt = fmt
        self.envelope = envelope  # json: {"engine": {time, **envelope}} leads each row
        self.out = out
        self.headers = [h for _, h, _, _ in columns]
        self.keys = [k for k, _, _, _ in columns]
        self.floats = [i for i, c in enumerate(columns) if c[3]]
        self.pending: list[str] = []
        last = len(columns) - 1
        self._row = (
            " ".join(
                (f"%-{w}.3f" if is_float else f"%-{w}s")
                if i < last
                else ("%.3f" if is_float else "%s")
                for i, (_, _, w, is_float) in enumerate(columns)
            )
            + "\n"
        )
        self._header = (
            " ".join(f"%-{w}s" if i < last else "%s" for i, (_, _, w, _) in enumerate(columns))
            + "\n"
        )
        self._buf = io.StringIO()
        self._csv = csv.writer(self._buf, lineterminator="\n")

    def header(self) -> None:
        if self.fmt == "table":
            self.pending.append(self._header % tuple(self.headers))
        elif self.fmt == "csv":
            self.pending.append(self._csv_line(self.headers))

    def row(self, values: Sequence[Any]) -> None:
        if self.fmt == "table":
            self.pending.append(self._row % tuple(values))
        elif self.fmt == "json":
            row: dict[str, Any] = dict(zip(self.keys, values))
            if self.envelope is not None:
                row = {"engine": {"time": wall_time(), **self.envelope}, **row}
            self.pending.append(json.dumps(row, separators=(",", ":"), default=_json_number))
            self.pending.append("\n")
        else:
            cells = list(values)
            for i in self.floats:
                cells[i] = f"{cells[i]:.3f}"
            self.pending.append(self._csv_line(cells))

    def _csv_line(self, cells: Sequence[Any]) -> str:
        self._csv.writerow(cells)
        text = self._buf.getvalue()
        self._buf.seek(0)
        self._buf.truncate()
        return text

    def flush(self) -> None:
        """Write what is pending (BrokenPipeError propagates to the caller)."""
        if self.pending:
            text = "".join(self.pending)
            self.pending.clear()
            self.out.write(text)
        self.out.flush()


def _json_number(value: Any) -> float:
    """A Decimal cell (an aggregation printed in us/ms/s: exact decimals) as a JSON number;
    the shortest float repr gives back the same digits up to 15 significant ones."""
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def wall_time() -> str:
    """Now, UTC, RFC 3339 with microseconds: when user space read the event."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def render_rows(
    fmt: str, columns: Sequence[tuple[str, str, int, bool]], rows: list[list[Any]]
) -> str:
    """A whole table as text (count mode prints this at the end or every interval)."""
    buf = io.StringIO()
    printer = Printer(fmt, columns, buf)
    printer.header()
    for r in rows:
        printer.row(r)
    printer.flush()
    return buf.getvalue()
