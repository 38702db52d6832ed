"""Raw event bytes -> the values of the printed columns, for every event, cheaply.

The reader loop's cost is per event, so this does the least work per event: one precomputed
`struct` unpack of the event (its format comes from the same layout as the C struct and the
ctypes decoder, whose sizes and offsets are asserted at load), conversions only for the
columns shown, and text (comm, addresses) cached by its raw bytes.
"""

from __future__ import annotations

import socket
import struct
from typing import Any, Callable, Sequence

from engine.plan import model as M
from engine.runtime import decoders

STRUCT_CODES = {
    "u8": "B", "u16": "H", "u32": "I", "u64": "Q", "s8": "b", "s16": "h", "s32": "i", "s64": "q",
}  # fmt: skip
CACHE_LIMIT = 4096

Getter = Callable[[tuple[Any, ...]], Any]


def struct_format(layout: M.Layout) -> tuple[str, dict[str, int]]:
    """A native-order `struct` format for the layout, and each slot's index in the unpacked
    tuple (an inet_addr slot unpacks as two items: family, then 16 address bytes)."""
    parts, index, pos, n = ["="], {}, 0, 0
    for s in layout.slots:
        if s.offset > pos:
            parts.append(f"{s.offset - pos}x")
        index[s.name] = n
        if s.ctype == "struct inet_addr":
            parts.append("H16s")
            n += 2
        elif s.count:
            parts.append(f"{s.size}s")
            n += 1
        else:
            parts.append(STRUCT_CODES[s.ctype])
            n += 1
        pos = s.offset + s.size
    if layout.size > pos:
        parts.append(f"{layout.size - pos}x")
    return "".join(parts), index


class Cache(dict[Any, str]):
    """Text by raw bytes; cleared when it grows past CACHE_LIMIT (many distinct values)."""

    def __init__(self, make: Callable[[Any], str]) -> None:
        super().__init__()
        self.make = make

    def __missing__(self, key: Any) -> str:
        if len(self) >= CACHE_LIMIT:
            self.clear()
        value = self[key] = self.make(key)
        return value


def _inet(key: tuple[int, bytes]) -> str:
    family, raw = key
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    if family == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, raw)
    return f"family{family}"


def getter(f: M.Field, i: int, state: decoders.State) -> Getter:
    """How column value `f` comes out of the unpacked tuple (item `i` onwards)."""
    d = f.decoder
    if d == "str":
        text = Cache(decoders.text)
        return lambda t: text[t[i]]
    if d == "inet":
        addr = Cache(_inet)
        return lambda t: addr[(t[i], t[i + 1])]
    if d == "hex":
        return (lambda t: t[i].hex()) if f.count else (lambda t: hex(t[i]))
    if d == "enum":
        names = dict(f.enum_values)
        return lambda t: names.get(t[i], t[i])
    convert: Callable[[Any], Any] | None = {
        "ip_version": decoders.ip_version,
        "errno": decoders.errno_name,
        "bool": bool,
        "elapsed": state.elapsed,
        "ksym": decoders.ksym,
    }.get(d)
    if convert is not None:
        return lambda t: convert(t[i])
    return lambda t: t[i]


class RowMaker:
    """Values of `columns` from one event's bytes."""

    def __init__(self, plan: M.Plan, layout: M.Layout, columns: Sequence[M.Column],
                 state: decoders.State) -> None:  # fmt: skip
        fmt, index = struct_format(layout)
        self.size = struct.calcsize(fmt)
        assert self.size == layout.size, (fmt, layout.size)
        self.unpack = struct.Struct(fmt).unpack_from
        fields = {f.name: f for f in plan.fields}
        self.getters = [
            getter(fields[c.field], index[M.slot_name(c.field)], state) for c in columns
        ]

    def values(self, raw: bytes) -> list[Any]:
        t = self.unpack(raw)
        return [g(t) for g in self.getters]
