"""The IR between planning and rendering: typed expression trees (filters and `where`) and
the steps (C statements) that compute values.

Every node says what it holds through `children()` (and `map_children()` where it rebuilds), so
a walker is a `Visitor` or `Transformer` that overrides only the node kinds it handles; a node
kind no walker knows is an error, never silently skipped (a missed case once rendered a local
before its declaration).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Union, cast

from engine.nodes import Node, Transformer

# --- typed expression trees (filters and `where`) -----------------------------------------


class CNode(Node):
    """A node of a typed expression tree (a filter or `where`)."""


@dataclass(frozen=True)
class CVar(CNode):
    """A generated C local (`v3`) or event slot (`ev.dport`)."""

    child_fields: ClassVar[tuple[str, ...]] = ()

    name: str
    ctype: str  # u8..u64, s8..s64


@dataclass(frozen=True)
class CNum(CNode):
    child_fields: ClassVar[tuple[str, ...]] = ()
    value: int
    ctype: str


@dataclass(frozen=True)
class COption(CNode):
    """An option placeholder; `bind` replaces it by typed constants or drops its term."""

    child_fields: ClassVar[tuple[str, ...]] = ()

    option: str
    ctype: str
    is_list: bool


@dataclass(frozen=True)
class CCompare(CNode):
    child_fields: ClassVar[tuple[str, ...]] = ("left", "right")
    op: str  # == != < <= > >=
    left: CExpr
    right: CExpr


@dataclass(frozen=True)
class CIn(CNode):
    child_fields: ClassVar[tuple[str, ...]] = ("left", "values")
    left: CExpr
    values: Union[tuple[CNum, ...], COption]
    negate: bool = False


@dataclass(frozen=True)
class SetMap:
    """A list option's values in a BPF hash set (`bind` makes one for a long list): declared
    by templates/partials/maps_sets.c.j2, filled by the runner before attaching. Or a
    `pinned_map` option's map: declared pinned at its path, filled by whoever pinned it."""

    map: str  # set_<option>
    ctype: str  # the key: the compared value's C type (u64 for a pinned map)
    values: tuple[int, ...]  # distinct, each representable in ctype
    pinned: str = ""  # a `pinned_map` option: the map another tool pinned here, used as is

    @property
    def size(self) -> int:
        return max(1, len(self.values))


@dataclass(frozen=True)
class CInSet(CNode):
    """`left in $list` for a long list: one hash lookup instead of a chain of ==."""

    child_fields: ClassVar[tuple[str, ...]] = ("left",)

    left: CVar
    set: SetMap
    negate: bool = False


@dataclass(frozen=True)
class CStrEq(CNode):
    """A char slot equal to a string: `size` bytes, NUL-terminated unless the value fills it."""

    child_fields: ClassVar[tuple[str, ...]] = ("value",)

    slot: str
    value: Union[bytes, COption]
    size: int
    negate: bool = False


@dataclass(frozen=True)
class CBool(CNode):
    child_fields: ClassVar[tuple[str, ...]] = ("terms",)
    op: str  # && ||
    terms: tuple[CExpr, ...]


@dataclass(frozen=True)
class CNot(CNode):
    child_fields: ClassVar[tuple[str, ...]] = ("term",)
    term: CExpr


@dataclass(frozen=True)
class CTrue(CNode):
    child_fields: ClassVar[tuple[str, ...]] = ()


@dataclass(frozen=True)
class CArith(CNode):
    """Arithmetic inside a filter (which is one C expression): `(ctype)(left OP right)`, the
    operands cast to `via` or `ctype` as in the `arith` step. An operand is a generated token
    (an event slot, a typed literal) or a nested CArith; unary - and ~ have no left."""

    child_fields: ClassVar[tuple[str, ...]] = ("left", "right")

    op: str
    left: Union[str, CArith, None]
    right: Union[str, CArith]
    ctype: str
    via: str = ""
    guard: bool = False  # a division by a variable: as the `arith` step's `guard`


@dataclass(frozen=True)
class CSwitch(CNode):
    """`$flag and TERM` (on) or `not $flag and TERM` (off): `bind` keeps TERM when the switch
    is in that state, else the whole guard drops out (true)."""

    child_fields: ClassVar[tuple[str, ...]] = ("term",)

    option: str
    on: bool
    term: CExpr


CExpr = Union[
    CVar, CNum, COption, CCompare, CIn, CInSet, CStrEq, CBool, CNot, CTrue, CArith, CSwitch
]


def rewrite(walker: Transformer, expr: CExpr) -> CExpr:
    """`walker` applied to an expression tree, which must give an expression tree back."""
    found = walker.visit(expr)
    if not isinstance(found, CNode):
        raise TypeError(f"{type(walker).__name__} made {found!r} of an expression")
    return cast(CExpr, found)


# --- steps: C statements in a probe function, one kind each ------------------------------

_NUMBER = re.compile(r"\(?-?[0-9]")  # constants: 5, -5, (-5LL)


class StepBase(Node):
    """What every step says about itself: the locals it reads and the name it defines, so
    selecting the steps a field needs walks declared dependencies, not naming conventions."""

    dest: str
    reads_from: ClassVar[tuple[str, ...]] = ()  # attributes holding locals (or (slot, local) pairs)

    def reads(self) -> frozenset[str]:
        found: set[str] = set()
        for attr in self.reads_from:
            value = getattr(self, attr)
            if isinstance(value, str):
                found.add(value)
            else:
                found.update(v for _, v in value)
        # `v3.f_ts` reads local v3 (a state value's member)
        return frozenset(v.split(".")[0] for v in found if v and not _NUMBER.match(v))

    def writes(self) -> str:
        return self.dest


@dataclass(frozen=True)
class Builtin(StepBase):
    kind: ClassVar[str] = "builtin"
    dest: str
    ctype: str
    which: str  # tgid tid uid gid ktime_ns boot_ns cpu cgroup_id


@dataclass(frozen=True)
class Comm(StepBase):
    kind: ClassVar[str] = "comm"
    dest: str  # event slot, char[16]
    size: int


@dataclass(frozen=True)
class Arg(StepBase):
    """A function argument (kprobe/fentry/raw tracepoint) or the return value (`index` -1)."""

    kind: ClassVar[str] = "arg"
    dest: str
    ctype: str
    index: int
    access: str = "regs"  # engine.attach.ArgAccess value: how the C reads it


@dataclass(frozen=True)
class Stashed(StepBase):
    """An entry argument read back from the kretprobe/fexit stash."""

    kind: ClassVar[str] = "stashed"
    dest: str
    ctype: str
    slot: str


@dataclass(frozen=True)
class Load(StepBase):
    """`dest = *(ctype *)(base + offset)` through bpf_probe_read_kernel, or (`direct`, a
    tracepoint record's aligned field) a plain load from the context."""

    kind: ClassVar[str] = "load"
    reads_from: ClassVar[tuple[str, ...]] = ("base",)
    dest: str
    ctype: str
    base: str
    offset: int
    size: int
    direct: bool = False


@dataclass(frozen=True)
class LoadBits(StepBase):
    """A bitfield: read `size` bytes, shift right, mask."""

    kind: ClassVar[str] = "loadbits"
    reads_from: ClassVar[tuple[str, ...]] = ("base",)
    dest: str
    ctype: str
    base: str
    offset: int
    size: int
    shift: int
    mask: int


@dataclass(frozen=True)
class AddrOf(StepBase):
    """`u64 dest = base + offset` (an address; nothing read)."""

    kind: ClassVar[str] = "addr"
    reads_from: ClassVar[tuple[str, ...]] = ("base",)
    dest: str
    base: str
    offset: int


@dataclass(frozen=True)
class Sum(StepBase):
    """`u64 dest = left + right` (e.g. skb->head + skb->transport_header)."""

    kind: ClassVar[str] = "sum"
    reads_from: ClassVar[tuple[str, ...]] = ("left", "right")
    dest: str
    left: str
    right: str


@dataclass(frozen=True)
class Store(StepBase):
    """`ev.slot = src`, byte-swapped first when `swap` is 16/32/64."""

    kind: ClassVar[str] = "store"
    reads_from: ClassVar[tuple[str, ...]] = ("src",)
    dest: str
    src: str
    swap: int = 0


@dataclass(frozen=True)
class Copy(StepBase):
    """Copy `size` bytes of kernel memory into an event array slot."""

    kind: ClassVar[str] = "copy"
    reads_from: ClassVar[tuple[str, ...]] = ("base",)
    dest: str
    base: str
    offset: int
    size: int


@dataclass(frozen=True)
class CopyStr(StepBase):
    """A NUL-terminated string into an event char slot (`deref`: base holds a char *)."""

    kind: ClassVar[str] = "copystr"
    reads_from: ClassVar[tuple[str, ...]] = ("base",)
    dest: str
    base: str
    offset: int
    size: int
    user: bool = False  # a user-space string (syscall arguments)


@dataclass(frozen=True)
class DataLocStr(StepBase):
    """A tracepoint `__data_loc char[]` string: the u32 at `offset` locates it in the record."""

    kind: ClassVar[str] = "datalocstr"
    reads_from: ClassVar[tuple[str, ...]] = ("base",)
    dest: str
    base: str
    offset: int
    size: int


@dataclass(frozen=True)
class Inet(StepBase):
    """An address by family: 4 bytes at v4, or 16 at v6, into `dest.addr`; family kept."""

    kind: ClassVar[str] = "inet"
    reads_from: ClassVar[tuple[str, ...]] = ("family", "v4_base", "v6_base")
    dest: str
    family: str  # a local holding the family
    v4_base: str
    v4_offset: int
    v6_base: str
    v6_offset: int


@dataclass(frozen=True)
class Arith(StepBase):
    """`ctype dest = left OP right` computed in `ctype` (unary - and ~: `left` is "")."""

    kind: ClassVar[str] = "arith"
    reads_from: ClassVar[tuple[str, ...]] = ("left", "right")
    dest: str
    ctype: str
    op: str
    left: str
    right: str
    # the type the operands are computed in, when not ctype: the unsigned type of its width
    # for a signed + - * << and unary - (they wrap, where C's signed overflow is undefined),
    # and for a signed division of values that cannot be negative
    via: str = ""
    # `/` or `%` by a variable: BPF's x / 0 == 0 and x % 0 == x, written out in the C, which
    # leaves a division by zero undefined (clang folded `x % (y - y)` to 0, `x / x` to 1)
    guard: bool = False

    @property
    def operand_ctype(self) -> str:
        return self.via or self.ctype


@dataclass(frozen=True)
class StateKey(StepBase):
    """`struct state_<map>_key_t dest = {...}`: a state map's key from locals, member by member."""

    kind: ClassVar[str] = "statekey"
    reads_from: ClassVar[tuple[str, ...]] = ("parts",)
    dest: str
    map: str
    parts: tuple[tuple[str, str], ...]  # (key slot, local or constant text)


@dataclass(frozen=True)
class StateRead(StepBase):
    """Look a key up: `take` deletes it, `get` keeps it; a missing key drops the event unless
    a default is given (`defaults`: value slot -> constant text). `dest` is the value struct."""

    kind: ClassVar[str] = "stateread"
    reads_from: ClassVar[tuple[str, ...]] = ("key",)
    dest: str
    map: str
    key: str  # the StateKey local
    delete: bool
    defaults: tuple[tuple[str, str], ...] = ()
    has_default: bool = False
    index: int = 0  # the map's StateMap.index: a take's delete is counted (engine_state_keys)


@dataclass(frozen=True)
class StateHas(StepBase):
    """`u64 dest = key present in the map` (nothing deleted)."""

    kind: ClassVar[str] = "statehas"
    reads_from: ClassVar[tuple[str, ...]] = ("key",)
    dest: str
    map: str
    key: str


@dataclass(frozen=True)
class StatePut(StepBase):
    """Store a value struct under a key; a failed update is counted (engine_errors[index]),
    and so is a new key (engine_state_keys[2 * index]: evictions are what is missing)."""

    kind: ClassVar[str] = "stateput"
    reads_from: ClassVar[tuple[str, ...]] = ("key", "parts")
    dest: str  # the value struct local this step declares and fills
    map: str
    key: str
    parts: tuple[tuple[str, str], ...]  # (value slot, local); slot "" never occurs
    comm: tuple[str, ...] = ()  # value slots filled with the current task's comm
    index: int = 0


@dataclass(frozen=True)
class StateDelete(StepBase):
    """Delete a key (a path that ends a pairing without reading the value)."""

    kind: ClassVar[str] = "statedelete"
    reads_from: ClassVar[tuple[str, ...]] = ("key",)
    dest: str  # unused local name, so every step has one
    map: str
    key: str
    index: int = 0  # the map's StateMap.index: a delete is counted (engine_state_keys)


@dataclass(frozen=True)
class CopyLocal(StepBase):
    """Copy `size` bytes from a generated local's member (a state value) into an event slot."""

    kind: ClassVar[str] = "copylocal"
    reads_from: ClassVar[tuple[str, ...]] = ("src",)
    dest: str
    src: str
    size: int


Step = Union[
    Builtin,
    Comm,
    Arg,
    Stashed,
    Load,
    LoadBits,
    AddrOf,
    Sum,
    Store,
    Copy,
    CopyStr,
    DataLocStr,
    Inet,
    Arith,
    StateKey,
    StateRead,
    StateHas,
    StatePut,
    StateDelete,
    CopyLocal,
]
