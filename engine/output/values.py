"""What the engine prints, as values: a cell is a Number, Text, Symbol or a Stack of frames
(a multi-line cell), an aggregation is a Table of keyed rows or per-key Histograms.

Renderers (engine.output.RENDERERS, one module per format) turn these into text; nothing here
knows a format. Event rows stay plain Python scalars (an int, a str, a float) on the hot path:
a renderer takes those as the cells they would wrap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, Sequence, Union

Bounds = tuple[Union[int, None], Union[int, None]]  # a bucket's inclusive (low, high)


@dataclass(frozen=True)
class Number:
    """A number cell: an int, a float, or an exact Decimal (a value under a `print:` unit)."""

    value: int | float | Decimal

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True)
class Text:
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Symbol:
    """A code address as a name (a kernel or user symbol), with its offset into it."""

    name: str
    offset: int = 0

    def __str__(self) -> str:
        return f"{self.name}+0x{self.offset:x}" if self.offset else self.name


@dataclass(frozen=True)
class Stack:
    """A multi-line cell: frames, innermost first (a stack trace); `kind` says whose frames
    they are ("kernel", "user"; "" for other multi-line cells)."""

    frames: tuple[Symbol | Text, ...]
    kind: str = ""

    def lines(self) -> list[str]:
        return [str(f) for f in self.frames]


Cell = Union[int, float, str, Decimal, Number, Text, Symbol, Stack]


@dataclass(frozen=True)
class Column:
    """A printed column: its JSON/CSV key, its table header and width, and whether its numbers
    print with three decimals (`decimal`: a decoder's fixed-point value)."""

    key: str
    header: str
    width: int
    decimal: bool = False
    stack: bool = False  # its cells are Stacks (a key of stacks prints in bcc profile's layout)


class Scale(Protocol):
    """How a histogram's bucket indexes bound values (engine.aggs kinds provide one)."""

    def bounds(self, i: int) -> Bounds: ...


@dataclass(frozen=True)
class Histogram:
    """One key's histogram: bucket index -> count (filled ones only), the values' exact sum,
    the unit its values are in, and the scale its indexes follow."""

    buckets: dict[int, int]
    total: int
    unit: str
    scale: Any  # a Scale: Log2Scale or LinearScale (renderers choose a layout by its type)

    @property
    def count(self) -> int:
        return sum(self.buckets.values())

    def rows(self) -> list[tuple[int | None, int | None, int]]:
        """(min, max, count) of each bucket from the first non-empty one to the last, the
        empty ones between included (as bpftrace's JSON lists them)."""
        full = [i for i, v in self.buckets.items() if v > 0]
        if not full:
            return []
        span = range(min(full), max(full) + 1)
        return [(*self.scale.bounds(i), self.buckets.get(i, 0)) for i in span]


@dataclass(frozen=True)
class Log2Scale:
    """bcc's bpf_log2l buckets: 1 holds 0 and 1, then bucket i holds 2^(i-1) .. 2^i - 1."""

    def bounds(self, i: int) -> tuple[int, int]:
        low, high = (1 << i) >> 1, (1 << i) - 1
        return (low - 1, high) if low == high else (low, high)


@dataclass(frozen=True)
class LinearScale:
    """Bucket 0 below `low`, then one per `step`, the top one at or above `high`."""

    low: int
    high: int
    step: int

    @property
    def top(self) -> int:
        return (self.high - self.low) // self.step + 1 if self.step else 0

    def bounds(self, i: int) -> Bounds:
        if i == 0:
            return None, self.low - 1
        if i >= self.top:
            return self.high, None
        low = self.low + (i - 1) * self.step
        return low, low + self.step - 1


@dataclass(frozen=True)
class Keyed:
    """One aggregation key's histogram: the key's (name, value) pairs and the histogram;
    `labels` are what a table prints each key part as (a `by` entry's header), JSON the name."""

    key: tuple[tuple[str, Any], ...]
    histogram: Histogram
    labels: tuple[str, ...] = ()

    def labelled(self) -> tuple[tuple[str, Any], ...]:
        """(label, value) pairs: the header where one was given, else the name."""
        return tuple(zip(self.labels or [k for k, _ in self.key], (v for _, v in self.key)))


@dataclass(frozen=True)
class Table:
    """Rows of cells under columns (an aggregation's keys and values)."""

    columns: tuple[Column, ...]
    rows: tuple[tuple[Cell, ...], ...]
    keys: int = 0  # the first `keys` columns are the key (an aggregation's `by`)

    @property
    def stacked(self) -> bool:
        """A key column holds stacks: rows print in bcc's profile layout, not as a grid."""
        return any(c.stack for c in self.columns[: self.keys])


@dataclass(frozen=True)
class Order:
    """A rendering argument: rows sorted by one column (descending: largest first), ties in
    the order given, and at most `top` of them (0: all). Not an aggregation kind."""

    column: int = 0
    descending: bool = True
    top: int = 0
    natural: tuple[int, ...] = field(default=())  # columns sorted naturally first (the key)


def key_order(key: Sequence[Any]) -> tuple[tuple[int, Any], ...]:
    """Sorts keys naturally: numbers by value (pid 9 before pid 10), then text."""
    return tuple((0, k) if isinstance(k, (int, float)) else (1, str(k)) for k in key)


def ordered(rows: Sequence[tuple[Cell, ...]], order: Order | None) -> list[tuple[Cell, ...]]:
    """The rows as `order` asks: the key columns naturally, then the sort column, stable."""
    out = list(rows)
    if order is None:
        return out
    if order.natural:
        out.sort(key=lambda r: key_order([r[i] for i in order.natural]))
    out.sort(key=lambda r: _plain(r[order.column]), reverse=order.descending)
    return out[: order.top] if order.top else out


def _plain(cell: Cell) -> Any:
    return cell.value if isinstance(cell, Number) else cell
