"""A small pure-Python reader of kernel BTF (Documentation/bpf/btf.rst).

Specs are validated against the kernel's own types without libbpf, so validation also works on
machines without it (`--btf FILE` on a laptop or CI image). Loading only finds where each type
record starts (one tight loop over a u32 array); types are decoded on demand and cached, and
names are looked up by searching the string section for the name and then the type name
offsets for that string offset, so no string is decoded until someone asks for it.
"""

from __future__ import annotations

import bisect
import enum
import os
import stat
import struct
import sys
from array import array
from dataclasses import dataclass

from engine.errors import EngineError

VMLINUX = "/sys/kernel/btf/vmlinux"
MAX_BTF = 256 << 20  # bytes: a kernel's BTF is a few MiB (allyesconfig's tens)

_MAGIC = 0xEB9F
_HEADER = {"<": struct.Struct("<HBBIIIII"), ">": struct.Struct(">HBBIIIII")}
_MODIFIERS = frozenset({8, 9, 10, 11, 18})  # TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG
_BAD_KIND = 1 << 40  # any unknown kind pushes the scan past the end, caught after the loop
# Words (u32) that follow the 3-word common header: a fixed part and a part per vlen item.
_FIXED = [_BAD_KIND, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0] + [_BAD_KIND] * 12
_PER_ITEM = [0, 0, 0, 0, 3, 3, 2, 0, 0, 0, 0, 0, 0, 2, 0, 3, 0, 0, 0, 3] + [0] * 12


class BtfError(EngineError):
    """A BTF file that cannot be read or is not valid BTF; the message is one line."""


class Kind(enum.IntEnum):
    VOID = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


@dataclass(frozen=True)
class Member:
    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int  # 0 = not a bitfield


@dataclass(frozen=True)
class Param:
    name: str
    type_id: int


@dataclass(frozen=True)
class Enumerator:
    name: str
    value: int


@dataclass(frozen=True)
class BtfType:
    """One decoded type. DATASEC lists its variables as members (VAR id, byte offset * 8)."""

    id: int
    kind: Kind
    name: str  # "" when anonymous; id 0 is void
    size: int = 0
    type_id: int = 0
    members: tuple[Member, ...] = ()
    params: tuple[Param, ...] = ()
    enumerators: tuple[Enumerator, ...] = ()
    nelems: int = 0
    signed: bool = False
    is_bool: bool = False
    is_char: bool = False
    bits: int = 0
    kind_flag: bool = False  # raw flag: bitfield offsets, signed enum, FWD of a union
    linkage: int = 0  # FUNC (vlen) and VAR: 0 static, 1 global, 2 extern
    component_idx: int = -1  # DECL_TAG: member/param index, -1 for the type itself


@dataclass(frozen=True)
class MemberPath:
    """A member found through anonymous struct/union members, outermost first."""

    members: tuple[Member, ...]
    bit_offset: int
    type_id: int
    bitfield_size: int


_VOID = BtfType(0, Kind.VOID, "")
_ENUMS = (Kind.ENUM, Kind.ENUM64)
# Names scanned in bulk to map DEFINE_EVENT tracepoints to their class's record.
_TP_PREFIXES = (b"__bpf_trace_", b"trace_event_raw_", b"btf_trace_")


def _find_u32(raw: bytes, value: int) -> list[int]:
    """Byte offsets of the aligned native u32 `value` in `raw` (a C-speed search)."""
    key, found = array("I", [value]).tobytes(), []
    q = raw.find(key)
    while q >= 0:
        if q % 4 == 0:
            found.append(q)
        q = raw.find(key, q + 1)
    return found


def _class_of(func_name: str) -> str:
    """The event class a per-class function belongs to ("" for other names)."""
    for prefix in ("__bpf_trace_", "trace_event_raw_event_"):
        if func_name.startswith(prefix):
            return func_name[len(prefix) :]
    return ""


class Btf:
    """Kernel BTF, indexed at load and decoded lazily by type id."""

    def __init__(self, data: bytes, path: str) -> None:
        self.path = path
        if not data:
            raise BtfError(f"{path}: empty file, not BTF")
        if len(data) < 24:
            raise BtfError(f"{path}: truncated BTF header ({len(data)} bytes)")
        order = "<" if data[:2] == b"\x9f\xeb" else ">" if data[:2] == b"\xeb\x9f" else ""
        if not order:
            raise BtfError(f"{path}: not BTF (bad magic {data[:2].hex()})")
        _, version, _, hdr_len, type_off, type_len, str_off, str_len = _HEADER[order].unpack_from(
            data
        )
        if version != 1:
            raise BtfError(f"{path}: unsupported BTF version {version}")
        tstart, sstart = hdr_len + type_off, hdr_len + str_off
        if hdr_len < 24 or tstart + type_len > len(data) or sstart + str_len > len(data):
            raise BtfError(f"{path}: truncated BTF ({len(data)} bytes, header wants more)")
        if type_len % 4 or tstart % 4:
            raise BtfError(f"{path}: misaligned BTF type section")
        self._strs = data[sstart : sstart + str_len]
        if str_len and self._strs[0] != 0:
            raise BtfError(f"{path}: BTF string section does not start with an empty string")
        words = array("I")
        words.frombytes(data[tstart : tstart + type_len])
        if (order == "<") != (sys.byteorder == "little"):
            words.byteswap()
        self._w = words
        # Per type id (0 is void): where its record starts (word index), name offset, kind.
        self._starts = array("I", [0])
        self._name_offs = array("I", [0])
        self._kinds = bytearray(1)
        self._scan()
        self._cache: dict[int, BtfType] = {}
        self._by_name: dict[str, list[int]] = {}
        self._enum_consts: dict[str, tuple[int, int] | None] = {}
        self._name_raw: bytes | None = None
        self._type_raw: bytes | None = None
        self._prefixed: dict[str, list[int]] | None = None
        self._classes: dict[bool, dict[tuple[int, ...], list[str]]] = {}

    def _scan(self) -> None:
        """The only pass over all types: record start, name offset and kind of each."""
        w, fixed, per = self._w, _FIXED, _PER_ITEM
        add, add_name, add_kind = self._starts.append, self._name_offs.append, self._kinds.append
        i, n, cut = 0, len(w), False
        try:
            while i < n:
                add(i)
                add_name(w[i])
                info = w[i + 1]
                kind = (info >> 24) & 31
                add_kind(kind)
                i += 3 + fixed[kind] + (info & 0xFFFF) * per[kind]
        except IndexError:  # the last common header is cut short
            cut = True
        if cut or i != n:
            kind = self._kinds[-1]
            bad = not cut and fixed[kind] == _BAD_KIND
            what = f"unknown kind {kind}" if bad else "truncated type section"
            raise BtfError(f"{self.path}: bad BTF: {what} at type id {len(self._starts) - 1}")

    @classmethod
    def load(cls, path: str = VMLINUX) -> Btf:
        """Read a BTF file (or its .xz): a regular file of at most MAX_BTF bytes, so a
        device (/dev/zero), a FIFO or a huge file is refused instead of read without end."""
        try:  # O_NONBLOCK: opening a FIFO would wait for a writer
            with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    raise BtfError(f"{path}: not a regular file (a BTF file is one)")
                data = f.read(MAX_BTF + 1)
        except OSError as e:
            raise BtfError(f"{path}: cannot read BTF: {e.strerror or e}") from None
        if data[:6] == b"\xfd7zXZ\x00":  # xz-compressed, as the test fixtures are shipped
            import lzma

            unpack = lzma.LZMADecompressor()
            try:
                data = unpack.decompress(data, max_length=MAX_BTF + 1)
            except lzma.LZMAError as e:
                raise BtfError(f"{path}: cannot decompress BTF: {e}") from None
        if len(data) > MAX_BTF:
            raise BtfError(f"{path}: larger than {MAX_BTF >> 20} MiB; not a kernel's BTF")
        return cls(data, path)

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<bytes>") -> Btf:
        return cls(bytes(data), name)

    def __len__(self) -> int:
        """Number of type ids including void: valid ids are 0 .. len-1."""
        return len(self._starts)

    # -- decoding ----------------------------------------------------------------------------

    def _str(self, off: int) -> str:
        end = self._strs.find(b"\0", off)
        if off >= len(self._strs) or end < 0:
            raise BtfError(f"{self.path}: bad BTF string offset {off}")
        return self._strs[off:end].decode("utf-8", "replace")

    def type(self, type_id: int) -> BtfType:
        t = self._cache.get(type_id)
        if t is None:
            if type_id == 0:
                return _VOID
            if not 0 < type_id < len(self._starts):
                raise BtfError(f"{self.path}: no BTF type id {type_id}")
            t = self._cache[type_id] = self._decode(type_id)
        return t

    def _decode(self, tid: int) -> BtfType:
        w, o, s = self._w, self._starts[tid], self._str
        info, st = w[o + 1], w[o + 2]
        kind, vlen, kflag = Kind((info >> 24) & 31), info & 0xFFFF, bool(info >> 31)
        name, b = s(w[o]), o + 3
        if kind == Kind.INT:  # encoding flags in bits 24-27, nr_bits in 0-7
            e, bits = w[b] >> 24, w[b] & 0xFF
            sign, char, boolean = bool(e & 1), bool(e & 2), bool(e & 4)
            return BtfType(
                tid, kind, name, size=st, bits=bits, signed=sign, is_char=char, is_bool=boolean
            )
        if kind == Kind.ARRAY:
            return BtfType(tid, kind, name, type_id=w[b], nelems=w[b + 2])
        if kind in (Kind.STRUCT, Kind.UNION):
            ms = []
            for j in range(b, b + 3 * vlen, 3):
                off = w[j + 2]
                bits, bsz = (off & 0xFFFFFF, off >> 24) if kflag else (off, 0)
                ms.append(Member(s(w[j]), w[j + 1], bits, bsz))
            return BtfType(tid, kind, name, size=st, members=tuple(ms), kind_flag=kflag)
        if kind in (Kind.ENUM, Kind.ENUM64):
            es, wide = [], kind == Kind.ENUM64
            for j in range(b, b + (3 if wide else 2) * vlen, 3 if wide else 2):
                v, width = (w[j + 1] | w[j + 2] << 32, 64) if wide else (w[j + 1], 32)
                if kflag and v >> (width - 1):  # signed enum: two's complement
                    v -= 1 << width
                es.append(Enumerator(s(w[j]), v))
            return BtfType(
                tid, kind, name, size=st, enumerators=tuple(es), signed=kflag, kind_flag=kflag
            )
        if kind == Kind.FUNC_PROTO:
            ps = tuple(Param(s(w[j]), w[j + 1]) for j in range(b, b + 2 * vlen, 2))
            return BtfType(tid, kind, name, type_id=st, params=ps)
        if kind == Kind.DATASEC:
            ms = [
                Member(self.type(w[j]).name, w[j], w[j + 1] * 8, 0)
                for j in range(b, b + 3 * vlen, 3)
            ]
            return BtfType(tid, kind, name, size=st, members=tuple(ms))
        if kind == Kind.VAR:
            return BtfType(tid, kind, name, type_id=st, linkage=w[b])
        if kind == Kind.FUNC:
            return BtfType(tid, kind, name, type_id=st, linkage=vlen)
        if kind == Kind.DECL_TAG:
            c = w[b]
            return BtfType(tid, kind, name, type_id=st, component_idx=c - (c >> 31 << 32))
        if kind == Kind.FLOAT:
            return BtfType(tid, kind, name, size=st)
        if kind == Kind.FWD:
            return BtfType(tid, kind, name, kind_flag=kflag)
        return BtfType(tid, kind, name, type_id=st)  # PTR, TYPEDEF, modifiers, TYPE_TAG

    # -- names -------------------------------------------------------------------------------

    def _ids_named(self, name: str) -> list[int]:
        """All type ids named `name`: find the string, then its offset among type names."""
        ids = self._by_name.get(name)
        if ids is None:
            ids = []
            if self._name_raw is None:
                self._name_raw = self._name_offs.tobytes()
            for so in self._str_offsets(name):
                ids.extend(q // 4 for q in _find_u32(self._name_raw, so))
            ids.sort()
            self._by_name[name] = ids
        return ids

    def _str_offsets(self, name: str) -> list[int]:
        """Offsets of the string `name` in the string section (one in deduplicated BTF)."""
        strs, pat, found = self._strs, b"\0" + name.encode() + b"\0", []
        p = strs.find(pat) if name else -1
        while p >= 0:
            found.append(p + 1)
            p = strs.find(pat, p + 1)
        return found

    def find(self, name: str, *kinds: Kind) -> BtfType | None:
        for tid in self._ids_named(name):
            if not kinds or self._kinds[tid] in kinds:
                return self.type(tid)
        return None

    def find_all(self, name: str) -> list[BtfType]:
        return [self.type(tid) for tid in self._ids_named(name)]

    def names(self, *kinds: Kind) -> list[str]:
        """Every non-empty name of these kinds (all kinds if none), sorted, for did-you-mean."""
        want = set(kinds or Kind)
        offs = {o for o, k in zip(self._name_offs, self._kinds) if o and k in want}
        return sorted({self._str(o) for o in offs})

    def _tracepoint_names(self) -> dict[str, list[int]]:
        """name -> ids of every type named with a tracepoint prefix, found in one pass."""
        if self._prefixed is None:
            strs, by_off = self._strs, {}
            for prefix in _TP_PREFIXES:
                pat = b"\0" + prefix
                p = strs.find(pat)
                while p >= 0:
                    end = strs.find(b"\0", p + 1)
                    by_off[p + 1] = strs[p + 1 : end].decode("utf-8", "replace")
                    p = strs.find(pat, end)
            self._prefixed = {}
            for tid, o in enumerate(self._name_offs):
                n = by_off.get(o)
                if n is not None:
                    self._prefixed.setdefault(n, []).append(tid)
        return self._prefixed

    # -- type helpers ------------------------------------------------------------------------

    def strip(self, type_id: int) -> BtfType:
        """Follow typedefs and qualifiers to the type that gives the layout."""
        t = self.type(type_id)
        for _ in range(64):
            if t.kind not in _MODIFIERS:
                return t
            t = self.type(t.type_id)
        raise BtfError(f"{self.path}: typedef/modifier loop at type id {type_id}")

    def sizeof(self, type_id: int) -> int:
        t = self.strip(type_id)
        if t.kind == Kind.PTR:
            return 8
        if t.kind == Kind.ARRAY:
            return t.nelems * self.sizeof(t.type_id)
        if t.kind == Kind.VAR:
            return self.sizeof(t.type_id)
        return t.size

    def type_str(self, type_id: int) -> str:
        """C spelling of a type, as in a cast: "struct sock *", "__u8[16]", "int (*)(void)"."""
        return self._decl(type_id, "", 0).strip()

    def _decl(self, tid: int, inner: str, depth: int) -> str:
        if depth > 64:
            raise BtfError(f"{self.path}: type loop at type id {tid}")
        t = self.type(tid)
        k, d = t.kind, depth + 1
        if k in (Kind.PTR, Kind.CONST, Kind.VOLATILE, Kind.RESTRICT):
            if k != Kind.PTR:
                qual = k.name.lower()
                if self.type(t.type_id).kind == Kind.PTR:  # `char *const`: after the star
                    return self._decl(t.type_id, f"{qual} {inner}".rstrip(), d)
                return f"{qual} {self._decl(t.type_id, inner, d)}"
            return self._decl(t.type_id, "*" + inner, d)
        if k in (Kind.ARRAY, Kind.FUNC_PROTO):
            inner = f"({inner})" if inner.startswith("*") else inner
            if k == Kind.ARRAY:
                return self._decl(t.type_id, f"{inner}[{t.nelems}]", d)
            args = [("..." if not p.type_id else self.type_str(p.type_id)) for p in t.params]
            return self._decl(t.type_id, f"{inner}({', '.join(args) or 'void'})", d)
        if k in (Kind.TYPE_TAG, Kind.VAR, Kind.DECL_TAG):
            return self._decl(t.type_id, inner, d)
        if k == Kind.FUNC:
            return self._decl(t.type_id, t.name + inner, d)
        if k in (Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.FWD):
            tag = "union" if k == Kind.UNION or (k == Kind.FWD and t.kind_flag) else "struct"
            tag = "enum" if k in (Kind.ENUM, Kind.ENUM64) else tag
            base = f"{tag} {t.name or '{...}'}"
        else:
            base = t.name or "void"
        sep = "" if not inner or inner.startswith("[") else " "
        return base + sep + inner

    def member(self, type_id: int, name: str) -> MemberPath | None:
        """Find a member by name, also inside anonymous struct/union members."""
        t = self.strip(type_id)
        if t.kind not in (Kind.STRUCT, Kind.UNION):
            return None
        for m in t.members:
            if m.name == name:
                return MemberPath((m,), m.bit_offset, m.type_id, m.bitfield_size)
        for m in t.members:
            if not m.name:
                sub = self.member(m.type_id, name)
                if sub is not None:
                    bits = m.bit_offset + sub.bit_offset
                    return MemberPath((m, *sub.members), bits, sub.type_id, sub.bitfield_size)
        return None

    def member_names(self, type_id: int) -> list[str]:
        t = self.strip(type_id)
        if t.kind not in (Kind.STRUCT, Kind.UNION):
            return []
        out: list[str] = []
        for m in t.members:
            out.extend([m.name] if m.name else self.member_names(m.type_id))
        return out

    # -- enums, functions, tracepoints -------------------------------------------------------

    def enum_constant(self, name: str) -> tuple[BtfType, int] | None:
        """The (first) enum defining the constant `name`, and the constant's value.

        Finds the name's string offset among the raw type words, then checks the hit is the
        name of an enumerator, so no enum is decoded unless it holds the constant.
        """
        if name not in self._enum_consts:
            self._enum_consts[name] = None
            if self._type_raw is None:
                self._type_raw = self._w.tobytes()
            hits = []
            for so in self._str_offsets(name):
                for q in _find_u32(self._type_raw, so):
                    tid = bisect.bisect_right(self._starts, q // 4) - 1
                    step = 3 if self._kinds[tid] == Kind.ENUM64 else 2
                    rel = q // 4 - self._starts[tid] - 3
                    if self._kinds[tid] in _ENUMS and rel >= 0 and rel % step == 0:
                        hits.append((tid, rel // step))
            if hits:
                tid, idx = min(hits)
                self._enum_consts[name] = (tid, self.type(tid).enumerators[idx].value)
        hit = self._enum_consts[name]
        return (self.type(hit[0]), hit[1]) if hit else None

    def enum_names(self) -> list[str]:
        """Every enumerator name (for did-you-mean), read straight from the raw words."""
        w, names = self._w, set[str]()
        for tid, k in enumerate(self._kinds):
            if k in _ENUMS:
                o, step = self._starts[tid], 3 if k == Kind.ENUM64 else 2
                vlen = w[o + 1] & 0xFFFF
                names.update(self._str(w[j]) for j in range(o + 3, o + 3 + step * vlen, step))
        return sorted(names)

    def function(self, name: str) -> tuple[BtfType, tuple[Param, ...], int] | None:
        f = self.find(name, Kind.FUNC)
        if f is None:
            return None
        proto = self.type(f.type_id)
        return f, proto.params, proto.type_id

    def raw_tracepoint(self, name: str) -> tuple[Param, ...] | None:
        """A raw tracepoint's arguments (without the ctx), named from __traceiter_<name>."""
        td = self.find(f"btf_trace_{name}", Kind.TYPEDEF)
        if td is None:
            return None
        proto = self.strip(self.strip(td.type_id).type_id)
        if proto.kind != Kind.FUNC_PROTO:
            return None
        params = proto.params[1:]
        it = self.function(f"__traceiter_{name}")
        if it is not None and len(it[1]) == len(proto.params):
            named = it[1][1:]
            params = tuple(Param(n.name or p.name, p.type_id) for p, n in zip(params, named))
        return params

    def _event_types(self, event: str) -> tuple[int, ...] | None:
        it = self.function(f"__traceiter_{event}")
        if it is not None:
            return tuple(p.type_id for p in it[1][1:])
        params = self.raw_tracepoint(event)
        return None if params is None else tuple(p.type_id for p in params)

    def _class_index(self, resolved: bool) -> dict[tuple[int, ...], list[str]]:
        """Event classes by TP_PROTO argument types, read from their per-class functions.

        `resolved` keys by types with typedefs stripped: a DEFINE_EVENT may spell an argument
        with another typedef of the same type (xfs: xfs_fsblock_t vs uint64_t).
        """
        index = self._classes.get(resolved)
        if index is None:
            named, w, starts, kinds = self._tracepoint_names(), self._w, self._starts, self._kinds
            index = self._classes[resolved] = {}
            for fname, ids in named.items():
                cls = _class_of(fname)
                records = named.get(f"trace_event_raw_{cls}", [])
                if not cls or not any(kinds[r] == Kind.STRUCT for r in records):
                    continue
                for tid in ids:
                    proto = w[starts[tid] + 2]
                    is_proto = proto < len(kinds) and kinds[proto] == Kind.FUNC_PROTO
                    if kinds[tid] == Kind.FUNC and is_proto:
                        sig = self._sig(proto, resolved)
                        if cls not in index.setdefault(sig, []):
                            index[sig].append(cls)
        return index

    def _sig(self, proto: int, resolved: bool) -> tuple[int, ...]:
        """Argument type ids of a tracepoint FUNC_PROTO, without the leading ctx pointer."""
        w, o = self._w, self._starts[proto]
        ids = [w[j + 1] for j in range(o + 5, o + 3 + 2 * (w[o + 1] & 0xFFFF), 2)]
        return tuple(self.strip(i).id for i in ids) if resolved else tuple(ids)

    def tracepoint_records(self, event: str) -> list[BtfType]:
        """Candidate `struct trace_event_raw_<class>` records of an event, best first.

        An event that is its own class has exactly one. A DEFINE_EVENT event shares its class's
        record; BTF does not say which class, so every class whose per-class functions take
        the event's argument types is a candidate. Best first: templates that are not events
        themselves, then by shared name words, then by common name prefix.
        """
        own = self.find(f"trace_event_raw_{event}", Kind.STRUCT)
        if own is not None:
            return [own]
        sig = self._event_types(event)
        if sig is None:
            return []
        found = self._class_index(False).get(sig)
        if not found:
            found = self._class_index(True).get(tuple(self.strip(i).id for i in sig), [])
        words, named = set(event.split("_")) - {""}, self._tracepoint_names()

        def rank(cls: str) -> tuple[bool, float, int, str]:
            cw = set(cls.split("_")) - {""}
            same = (i for i, (a, b) in enumerate(zip(cls, event)) if a != b)
            prefix = next(same, min(len(cls), len(event)))
            return (f"btf_trace_{cls}" in named, -len(cw & words) / len(cw | words), -prefix, cls)

        records = (self.find(f"trace_event_raw_{c}", Kind.STRUCT) for c in sorted(found, key=rank))
        return [t for t in records if t is not None]
