"""engine.runtime.rows: raw event bytes -> column values, as the reader loop prints them.

The event bytes are made with ctypes, which lays a struct out as the C compiler does (the
generated C asserts the planner's layout with _Static_assert; tests/unit/test_layouts.py
checks the decoders' ctypes against it), so `struct_format` is checked against the C layout
for every slot kind after every other. Each decoder's getter is checked through `RowMaker`
with exact values, and the text caches against CACHE_LIMIT.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import socket
import struct

import pytest

from engine.plan import model as M
from engine.plan.layout import layout
from engine.runtime import decoders, rows

INTS = {
    "u8": ctypes.c_uint8, "u16": ctypes.c_uint16, "u32": ctypes.c_uint32, "u64": ctypes.c_uint64,
    "s8": ctypes.c_int8, "s16": ctypes.c_int16, "s32": ctypes.c_int32, "s64": ctypes.c_int64,
}  # fmt: skip


class InetAddr(ctypes.Structure):
    _fields_ = [("family", ctypes.c_uint16), ("addr", ctypes.c_uint8 * 16)]


# Every kind of slot: (ctype, count) as the planner makes them.
KINDS = [(t, 0) for t in INTS] + [("char", 16), ("char", 3), ("u8", 6), ("struct inet_addr", 0)]


def ctypes_of(ctype: str, count: int) -> type:
    if ctype == "struct inet_addr":
        return InetAddr
    if ctype == "char":
        return ctypes.c_char * count
    return INTS[ctype] * count if count else INTS[ctype]


def c_struct(members: list[tuple[str, str, int]]) -> type[ctypes.Structure]:
    """The C layout of the members, by ctypes."""
    return type(
        "S", (ctypes.Structure,), {"_fields_": [(n, ctypes_of(t, c)) for n, t, c in members]}
    )


def sample(ctype: str, count: int, seed: int) -> object:
    """A distinct value for a slot: the extreme of signed types, bytes for arrays."""
    if ctype == "struct inet_addr":
        return (socket.AF_INET6, bytes(range(seed, seed + 16)))
    if count:
        return bytes((seed + i) % 250 + 1 for i in range(count))
    bits = int(ctype[1:])
    return -(1 << (bits - 1)) + seed if ctype[0] == "s" else (1 << bits) - 1 - seed


def fill(obj: ctypes.Structure, name: str, ctype: str, value: object) -> None:
    if ctype == "struct inet_addr":
        family, raw = value  # type: ignore[misc]
        member = getattr(obj, name)
        member.family = family
        ctypes.memmove(member.addr, raw, 16)
    elif isinstance(value, bytes):
        ctypes.memmove(ctypes.addressof(obj) + getattr(type(obj), name).offset, value, len(value))
    else:
        setattr(obj, name, value)


@pytest.mark.parametrize(
    ("first", "second"),
    list(itertools.product(KINDS, KINDS)),
    ids=[f"{a[0]}{a[1] or ''}-{b[0]}{b[1] or ''}" for a, b in itertools.product(KINDS, KINDS)],
)
def test_struct_format_matches_the_c_layout(
    first: tuple[str, int], second: tuple[str, int]
) -> None:
    """Two slots and a trailing u8 (padding before, between and after), plus a u64 so the
    tail pads to 8: every item unpacks at the C offset, in the order the index says."""
    members = [("a", *first), ("b", *second), ("c", "u8", 0), ("d", "u64", 0)]
    lay = layout("event_t", members)
    fmt, index = rows.struct_format(lay)
    S = c_struct(members)
    assert struct.calcsize(fmt) == ctypes.sizeof(S) == lay.size
    obj = S()
    values = {}
    for seed, (name, ctype, count) in enumerate(members, 1):
        values[name] = sample(ctype, count, seed)
        fill(obj, name, ctype, values[name])
    unpacked = struct.unpack(fmt, bytes(obj))
    assert sorted(index) == ["a", "b", "c", "d"]
    for name, ctype, _ in members:
        i = index[name]
        if ctype == "struct inet_addr":
            assert unpacked[i : i + 2] == values[name]
        else:
            assert unpacked[i] == values[name], (name, fmt)
    assert len(unpacked) == 4 + sum(1 for _, t, _ in members if t == "struct inet_addr")


def test_struct_format_is_native_and_explicit_about_padding() -> None:
    fmt, index = rows.struct_format(layout("k", [("x", "u8", 0), ("y", "u32", 0)]))
    assert (fmt, index) == ("=B3xI", {"x": 0, "y": 1})
    fmt, index = rows.struct_format(layout("k", [("y", "u32", 0), ("x", "u8", 0)]))
    assert (fmt, index) == ("=IB3x", {"y": 0, "x": 1})


# --- getters, through RowMaker --------------------------------------------------------------


def field(name: str, ctype: str, decoder: str, count: int = 0, enum: tuple = ()) -> M.Field:
    return M.Field(name, ctype, count, decoder, name.upper(), 8, enum)


def maker(fields: list[M.Field], state: decoders.State | None = None) -> rows.RowMaker:
    members = [(M.slot_name(f.name), f.ctype, f.count) for f in fields]
    lay = layout("event_t", members)
    plan = M.Plan(
        name="t", description="", options=(), probes=(), fields=tuple(fields), event=lay,
        columns=(),
    )  # fmt: skip
    columns = [M.Column(f.name, f.name.upper(), 8) for f in fields]
    return rows.RowMaker(plan, lay, columns, state or decoders.State())


def event(fields: list[M.Field], values: list[object]) -> bytes:
    S = c_struct([(M.slot_name(f.name), f.ctype, f.count) for f in fields])
    obj = S()
    for f, v in zip(fields, values):
        fill(obj, M.slot_name(f.name), f.ctype, v)
    return bytes(obj)


def decode(fields: list[M.Field], *events: list[object]) -> list[list[object]]:
    m = maker(fields)
    return [m.values(event(fields, values)) for values in events]


def test_int_is_the_number_signed_or_not() -> None:
    fs = [field("a", "u64", "int"), field("b", "s32", "int"), field("c", "u16", "int")]
    assert decode(fs, [2**64 - 1, -5, 65535]) == [[2**64 - 1, -5, 65535]]


def test_str_stops_at_the_nul_and_escapes_bad_utf8() -> None:
    """Tables and CSV (the default state) show a byte that is not UTF-8 as \\xNN; JSON
    (exact text) cannot hold it and has U+FFFD (tests/unit/test_text_escape.py: the rest)."""
    fs = [field("comm", "char", "str", 16)]
    got = decode(fs, [b"curl\0junk"], [b"x" * 16], [b"\xffab\0"], [b""])
    assert got == [["curl"], ["x" * 16], ["\\xffab"], [""]]
    exact = maker(fs, decoders.State(exact_text=True))
    assert exact.values(event(fs, [b"\xffab\0"])) == ["\ufffdab"]


def test_inet_by_family() -> None:
    fs = [field("addr", "struct inet_addr", "inet")]
    v4 = bytes([127, 0, 0, 1]) + bytes(12)
    v6 = socket.inet_pton(socket.AF_INET6, "::1")
    got = decode(fs, [(socket.AF_INET, v4)], [(socket.AF_INET6, v6)], [(0, bytes(16))])
    assert got == [["127.0.0.1"], ["::1"], ["family0"]]


def test_hex_of_a_number_and_of_bytes() -> None:
    fs = [field("p", "u64", "hex"), field("h", "u8", "hex", 4)]
    assert decode(fs, [0xFFFF8881DEADBEEF, b"\x00\x01\xab\xff"]) == [
        ["0xffff8881deadbeef", "0001abff"]
    ]


def test_enum_names_known_values_and_keeps_unknown_numbers() -> None:
    fs = [field("state", "s32", "enum", enum=((1, "TCP_ESTABLISHED"), (2, "TCP_SYN_SENT")))]
    assert decode(fs, [2], [1], [99], [-1]) == [["TCP_SYN_SENT"], ["TCP_ESTABLISHED"], [99], [-1]]


def test_ip_version_errno_bool() -> None:
    fs = [field("ip", "u16", "ip_version"), field("ret", "s32", "errno"), field("ok", "u8", "bool")]
    got = decode(fs, [socket.AF_INET, -errno.ECONNREFUSED, 1], [socket.AF_INET6, 0, 0], [1, 5, 2])
    assert got == [[4, "ECONNREFUSED", True], [6, "0", False], [1, "5", True]]


def test_elapsed_counts_from_the_first_event() -> None:
    state = decoders.State()
    fs = [field("time", "u64", "elapsed")]
    m = maker(fs, state)
    base = 5_000_000_000
    got = [m.values(event(fs, [base + d]))[0] for d in (0, 1_500_000, 2_000_000_000)]
    assert got == [0.0, 0.0015, 2.0]
    assert state.first_ns == base


def test_ksym_names_a_kernel_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoders, "_KSYMS", [(0x1000, "alpha"), (0x2000, "beta")])
    fs = [field("ip", "u64", "ksym")]
    got = decode(fs, [0x1000], [0x1010], [0x2FFF], [0x10], [0])
    assert got == [["alpha"], ["alpha+0x10"], ["beta+0xfff"], ["0x10"], ["0x0"]]


def test_only_the_columns_asked_for_in_their_order() -> None:
    fs = [field("a", "u32", "int"), field("b", "u8", "bool"), field("c", "u16", "int")]
    members = [(M.slot_name(f.name), f.ctype, f.count) for f in fs]
    lay = layout("event_t", members)
    plan = M.Plan(
        name="t", description="", options=(), probes=(), fields=tuple(fs), event=lay,
        columns=(),
    )  # fmt: skip
    columns = [M.Column("c", "C", 4), M.Column("a", "A", 4)]
    m = rows.RowMaker(plan, lay, columns, decoders.State())
    assert m.size == lay.size == 8
    assert m.values(event(fs, [7, 1, 9])) == [9, 7]


# --- the text caches ---------------------------------------------------------------------------


def test_cache_makes_each_text_once() -> None:
    made: list[bytes] = []

    def make(raw: bytes) -> str:
        made.append(raw)
        return raw.decode()

    cache = rows.Cache(make)
    assert [cache[b"a"], cache[b"b"], cache[b"a"]] == ["a", "b", "a"]
    assert made == [b"a", b"b"]


def test_cache_is_cleared_past_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rows, "CACHE_LIMIT", 3)
    cache = rows.Cache(lambda raw: raw.hex())
    for i in range(3):
        assert cache[bytes([i])] == f"0{i}"
    assert len(cache) == 3
    assert cache[b"\x09"] == "09"  # the 4th distinct value: cleared first, then kept
    assert dict(cache) == {b"\x09": "09"}


def test_cache_limit_holds_for_many_distinct_strings() -> None:
    fs = [field("comm", "char", "str", 16)]
    m = maker(fs)
    for i in range(rows.CACHE_LIMIT * 2 + 5):
        assert m.values(event(fs, [f"t{i}".encode()])) == [f"t{i}"]
    (text_cache,) = [c for c in cache_cells(m) if isinstance(c, rows.Cache)]
    assert 0 < len(text_cache) <= rows.CACHE_LIMIT


def cache_cells(m: rows.RowMaker) -> list[object]:
    """The objects the getters close over (their caches)."""
    out = []
    for g in m.getters:
        out += [c.cell_contents for c in (g.__closure__ or ())]
    return out
