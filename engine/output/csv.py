"""CSV: a header line of the column keys' headers, then one line per row; a histogram is one
line per bucket (its key, min, max, count)."""

from __future__ import annotations

import csv
import io
from typing import Any, ClassVar, Sequence

from engine.output.base import Renderer
from engine.output.values import Column, Keyed, Stack


class CsvRenderer(Renderer):
    name: ClassVar[str] = "csv"

    def __init__(self, columns: Sequence[Column], envelope: dict[str, str] | None = None):
        super().__init__(columns, envelope)
        self.decimals = [i for i, c in enumerate(self.columns) if c.decimal]
        self._buf = io.StringIO()
        self._csv = csv.writer(self._buf, lineterminator="\n")

    def header(self) -> str:
        return self.line([c.header for c in self.columns])

    def row(self, cells: Sequence[Any]) -> str:
        out = [";".join(c.lines()) if isinstance(c, Stack) else c for c in cells]
        for i in self.decimals:
            out[i] = f"{out[i]:.3f}"
        return self.line(out)

    def line(self, cells: Sequence[Any]) -> str:
        self._csv.writerow(cells)
        text = self._buf.getvalue()
        self._buf.seek(0)
        self._buf.truncate()
        return text

    def histograms(self, name: str, keys: Sequence[str], series: Sequence[Keyed]) -> str:
        cols = [Column(n, n, 0) for n in [*keys, "min", "max", "count"]]
        out = CsvRenderer(cols)
        lines = [out.header()]
        for s in series:
            key = [v for _, v in s.key]
            for low, high, n in s.histogram.rows():
                bucket = ["" if low is None else low, "" if high is None else high, n]
                lines.append(out.row([*key, *bucket]))
        return "".join(lines)
