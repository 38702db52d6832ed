"""Raw event bytes -> the values of the printed columns, for every event, cheaply.

The reader loop's cost is per event, so this does the least work per event: one precomputed
`struct` unpack of the event (its format comes from the same layout as the C struct and the
ctypes decoder, whose sizes and offsets are asserted at load), conversions only for the
columns shown, and text (comm, addresses) cached by its raw bytes.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Sequence

from engine.plan import model as M
from engine.plan.implicit import ENVELOPE_CGROUP
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


def getter(f: M.Field, i: int, state: decoders.State) -> Getter:
    """How column value `f` comes out of the unpacked tuple (item `i` onwards), through the
    decoder registry; text that depends only on the bytes (comm, addresses) is cached."""
    spec = decoders.REGISTRY[f.decoder]
    convert = spec.make(f, state)
    if f.decoder == "inet":  # unpacked as two items: family, then the 16 address bytes
        addr = Cache(convert)
        return lambda t: addr[(t[i], t[i + 1])]
    if spec.cached:
        text = Cache(convert)
        return lambda t: text[t[i]]
    return lambda t: convert(t[i])


class RowMaker:
    """Values of `columns` from one event's bytes and, for --envelope (`names`), the event's
    container and pod from the same unpack."""

    def __init__(self, plan: M.Plan, layout: M.Layout, columns: Sequence[M.Column],
                 state: decoders.State, names: bool = False) -> None:  # fmt: skip
        fmt, index = struct_format(layout)
        self.size = struct.calcsize(fmt)
        assert self.size == layout.size, (fmt, layout.size)
        self.unpack = struct.Struct(fmt).unpack_from
        fields = {f.name: f for f in plan.fields}
        self.getters = [
            getter(fields[c.field], index[M.slot_name(c.field)], state) for c in columns
        ]
        self.names = envelope_names(plan, index, state) if names else None

    def values(self, raw: bytes) -> list[Any]:
        t = self.unpack(raw)
        return [g(t) for g in self.getters]

    def row(self, raw: bytes) -> tuple[list[Any], dict[str, str] | None]:
        """The column values and the envelope's names (None without --envelope)."""
        t = self.unpack(raw)
        return [g(t) for g in self.getters], self.names(t) if self.names is not None else None


def envelope_names(
    plan: M.Plan, index: dict[str, int], state: decoders.State
) -> Callable[[tuple[Any, ...]], dict[str, str]] | None:
    """For --envelope: an event's container and pod (as the `container` and `pod` decoders
    print them) from the cgroup id the plan's hidden field carries (engine.plan.implicit);
    None when the plan has none (a spec whose probes send no events)."""
    field = next((f for f in plan.fields if f.name == ENVELOPE_CGROUP), None)
    if field is None:
        return None
    i = index[M.slot_name(ENVELOPE_CGROUP)]
    container = decoders.REGISTRY["container"].make(field, state)
    pod = decoders.REGISTRY["pod"].make(field, state)
    return lambda t: {"container": container(t[i]), "pod": pod(t[i])}
