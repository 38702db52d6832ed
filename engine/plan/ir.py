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

from engine.memory import AddressSpace
from engine.nodes import Node, Transformer, Visitor

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
    """A char slot (`size` bytes) matching a string: equal to it, or (`kind`) starting or
    ending with it, holding it, or matching it as a glob (engine.plan.strmatch)."""

    child_fields: ClassVar[tuple[str, ...]] = ("value",)

    slot: str
    value: Union[bytes, COption]
    size: int
    negate: bool = False
    kind: str = "eq"  # eq prefix suffix contains glob


@dataclass(frozen=True)
class CInetEq(CNode):
    """An address slot (`struct inet_addr`) equal to an address: its family and its 4 or 16
    bytes (`saddr == "127.0.0.1"`, `daddr == $raddr` with an `inet` option)."""

    child_fields: ClassVar[tuple[str, ...]] = ("value",)

    slot: str
    value: Union[tuple[int, bytes], COption]  # (AF_INET or AF_INET6, the packed address)
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
    operands cast to `via` or `ctype` as in the `arith` step. An operand is a step operand
    (an event slot, a typed literal) or a nested CArith; unary - and ~ have no left."""

    child_fields: ClassVar[tuple[str, ...]] = ("left", "right")

    op: str
    left: Union[Operand, CArith, None]
    right: Union[Operand, CArith]
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
    CVar,
    CNum,
    COption,
    CCompare,
    CIn,
    CInSet,
    CStrEq,
    CInetEq,
    CBool,
    CNot,
    CTrue,
    CArith,
    CSwitch,
]


def rewrite(walker: Transformer, expr: CExpr) -> CExpr:
    """`walker` applied to an expression tree, which must give an expression tree back."""
    found = walker.visit(expr)
    if not isinstance(found, CNode):
        raise TypeError(f"{type(walker).__name__} made {found!r} of an expression")
    return cast(CExpr, found)


# --- step operands: what a step reads, typed where it is built -----------------------------


class Operand(Node):
    """A step's input, as its C text (`str()`), and the generated local it reads (`reads`,
    "" for none), so dependencies come from the operand's kind, not from its spelling."""

    child_fields: ClassVar[tuple[str, ...]] = ()

    @property
    def reads(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Local(Operand):
    """A generated C local (`v3`, `ctx_addr`, a stash's `key`)."""

    child_fields: ClassVar[tuple[str, ...]] = ()

    name: str

    def __str__(self) -> str:
        return self.name

    @property
    def reads(self) -> str:
        return self.name


@dataclass(frozen=True)
class Member(Operand):
    """A member of a local struct: a state value's (`v3.f_ts`) or the event's (`ev.f_pid`)."""

    child_fields: ClassVar[tuple[str, ...]] = ()

    local: str
    member: str
    arrow: bool = False  # the local is a pointer (a state value in its per-CPU scratch map)

    def __str__(self) -> str:
        return f"{self.local}{'->' if self.arrow else '.'}{self.member}"

    @property
    def reads(self) -> str:
        return self.local


@dataclass(frozen=True)
class Constant(Operand):
    """A typed C literal (`5U`, `(-5LL)`, an address family's `2`): reads no local."""

    child_fields: ClassVar[tuple[str, ...]] = ()

    text: str

    def __str__(self) -> str:
        return self.text

    @property
    def reads(self) -> str:
        return ""


_NUMBER = re.compile(r"\(?-?[0-9]")  # constants: 5, -5, (-5LL)


def operand(text: str) -> Operand:
    """The operand a planner value's text names (Val.var and Val.base are still text): a
    literal, a member of a local (`v3.f_ts`) or a local. The one place that reads a spelling."""
    if _NUMBER.match(text):
        return Constant(text)
    local, arrow, member = text.partition("->")
    if arrow:
        return Member(local, member, arrow=True)
    local, dot, member = text.partition(".")
    return Member(local, member) if dot else Local(text)


def local(text: str) -> Local:
    """A planner value's text that must name a local (a state key)."""
    found = operand(text)
    if not isinstance(found, Local):
        raise TypeError(f"not a local: {text!r}")
    return found


def member(text: str) -> Member:
    """A planner value's text that must name a member of a local (a state value's comm)."""
    found = operand(text)
    if not isinstance(found, Member):
        raise TypeError(f"not a member of a local: {text!r}")
    return found


def read_space(user: bool) -> AddressSpace:
    """The space a value points into: a planner VT's `user` flag (syscall arguments)."""
    return AddressSpace.USER if user else AddressSpace.KERNEL


# --- steps: C statements in a probe function, one kind each ------------------------------


class StepBase(Node):
    """What every step says about itself: the locals it reads (through its operands, the
    `child_fields`) and the name it defines, so selecting the steps a field needs walks
    declared dependencies, not naming conventions."""

    dest: str
    kind: ClassVar[str]
    partial: ClassVar[str]  # its template: templates/partials/steps/<kind>.c.j2

    def operands(self) -> tuple[Operand, ...]:
        return tuple(op for op in self.children() if isinstance(op, Operand))

    def reads(self) -> frozenset[str]:
        return frozenset(op.reads for op in self.operands() if op.reads)

    def writes(self) -> str:
        return self.dest


@dataclass(frozen=True)
class Builtin(StepBase):
    kind: ClassVar[str] = "builtin"
    partial: ClassVar[str] = "partials/steps/builtin.c.j2"
    child_fields: ClassVar[tuple[str, ...]] = ()
    dest: str
    ctype: str
    which: str  # tgid tid uid gid ktime_ns boot_ns cpu cgroup_id task func


@dataclass(frozen=True)
class Comm(StepBase):
    kind: ClassVar[str] = "comm"
    partial: ClassVar[str] = "partials/steps/comm.c.j2"
    child_fields: ClassVar[tuple[str, ...]] = ()
    dest: str  # event slot, char[16]
    size: int


@dataclass(frozen=True)
class CommLocal(StepBase):
    """`char dest[16]` holding the current task's name: `comm` compared in a `where` or a
    value (a filter compares the event's comm field instead)."""

    kind: ClassVar[str] = "commlocal"
    partial: ClassVar[str] = "partials/steps/commlocal.c.j2"
    child_fields: ClassVar[tuple[str, ...]] = ()
    dest: str
    size: int


@dataclass(frozen=True)
class Arg(StepBase):
    """A function argument (kprobe/fentry/raw tracepoint) or the return value (`index` -1)."""

    kind: ClassVar[str] = "arg"
    partial: ClassVar[str] = "partials/steps/arg.c.j2"
    child_fields: ClassVar[tuple[str, ...]] = ()
    dest: str
    ctype: str
    index: int
    access: str = "regs"  # engine.attach.ArgAccess value: how the C reads it


@dataclass(frozen=True)
class Stashed(StepBase):
    """An entry argument read back from the kretprobe/fexit stash."""

    kind: ClassVar[str] = "stashed"
    partial: ClassVar[str] = "partials/steps/stashed.c.j2"
    child_fields: ClassVar[tuple[str, ...]] = ()
    dest: str
    ctype: str
    slot: str


@dataclass(frozen=True)
class Load(StepBase):
    """`dest = *(ctype *)(base + offset)` through bpf_probe_read_kernel, or (`direct`, a
    tracepoint record's aligned field) a plain load from the context."""

    kind: ClassVar[str] = "load"
    partial: ClassVar[str] = "partials/steps/load.c.j2"
    child_fields: ClassVar[tuple[str, ...]] = ("base",)
    dest: str
    ctype: str
    base: Operand
    offset: int
    size: int
    direct: bool = False
    space: AddressSpace = AddressSpace.KERNEL  # where the memory read lives


@dataclass(frozen=True)
class LoadBits(StepBase):
    """A bitfield: read `size` bytes, shift right, mask."""

    kind: ClassVar[str] = "loadbits"
    partial: ClassVar[str] = "partials/steps/loadbits.c.j2"
    child_fields: ClassVar[tuple[str, ...]] = ("base",)
    dest: str
    ctype: str
    base: Operand
    offset: int
    size: int
    shift: int
    mask: int
    space: AddressSpace = AddressSpace.KERNEL  # where the memory read lives


@dataclass(frozen=True)
class AddrOf(StepBase):
    """`u64 dest = base + offset` (an address; nothing read)."""

    kind: ClassVar[str] = "addr"
    partial: ClassVar[str] = "partials/steps/addr.c.j2"
    child_fields: ClassVar[tuple[str, ...]] = ("base",)
    dest: str
    base: Operand
    offset: int


@dataclass(frozen=True)
class Add(StepBase):
    """`u64 dest = left + right` (e.g. skb->head + skb->transport_header)."""

    kind: ClassVar[str] = "add"
    partial: ClassVar[str] = "partials/steps/add.c.j2"
    child_fields: ClassVar[tuple[str, ...]] = ("left", "right")
    dest: str
    left: Operand
    right: Operand


@dataclass(frozen=True)
class Store(StepBase):
    """`ev.slot = src`, byte-swapped first when `swap` is 16/32/64."""

    kind: ClassVar[str] = "store"
    partial: ClassVar[str] = "partials/steps/store.c.j2"
    child_fields: ClassVar[tuple[str, ...]] = ("src",)
    dest: str
    src: Operand
    swap: int = 0


@dataclass(frozen=True)
class Copy(StepBase):
    """Copy `size` bytes of kernel memory into an event array slot."""

    kind: ClassVar[str] = "copy"
    partial: ClassVar[str] = "partials/steps/copy.c.j2"
    child_fields: ClassVar[tuple[str, ...]] = ("base",)
    dest: str
    base: Operand
    offset: int
    size: int
    space: AddressSpace = AddressSpace.KERNEL  # where the memory read lives


@dataclass(frozen=True)
class CopyStr(StepBase):
    """A NUL-terminated string into an event char slot (`deref`: base holds a char *)."""

    kind: ClassVar[str] = "copystr"
    partial: ClassVar[str] = "partials/steps/copystr.c.j2"
    child_fields: ClassVar[tuple[str, ...]] = ("base",)
    dest: str
    base: Operand
    offset: int
    size: int
    space: AddressSpace = AddressSpace.KERNEL  # USER: a user-space string (syscall arguments)


@dataclass(frozen=True)
class DataLocStr(StepBase):
    """A tracepoint `__data_loc char[]` string: the u32 at `offset` locates it in the record."""

    kind: ClassVar[str] = "datalocstr"
    partial: ClassVar[str] = "partials/steps/datalocstr.c.j2"
    child_fields: ClassVar[tuple[str, ...]] = ("base",)
    dest: str
    base: Operand
    offset: int
    size: int
    space: AddressSpace = AddressSpace.KERNEL  # where the memory read lives


@dataclass(frozen=True)
class Inet(StepBase):
    """An address by family: 4 bytes at v4, or 16 at v6, into `dest.addr`; family kept."""

    kind: ClassVar[str] = "inet"
    partial: ClassVar[str] = "partials/steps/inet.c.j2"
    child_fields: ClassVar[tuple[str, ...]] = ("family", "v4_base", "v6_base")
    dest: str
    family: Operand  # a local holding the family, or a constant
    v4_base: Operand
    v4_offset: int
    v6_base: Operand
    v6_offset: int
    space: AddressSpace = AddressSpace.KERNEL  # where the memory read lives


@dataclass(frozen=True)
class Arith(StepBase):
    """`ctype dest = left OP right` computed in `ctype` (unary - and ~: `left` is None)."""

    kind: ClassVar[str] = "arith"
    partial: ClassVar[str] = "partials/steps/arith.c.j2"
    child_fields: ClassVar[tuple[str, ...]] = ("left", "right")
    dest: str
    ctype: str
    op: str
    left: Operand | None  # None: unary - and ~
    right: Operand
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
class Test(StepBase):
    """`s32 dest = (cond)`: a comparison (or and/or/not of them) as a value, 0 or 1, an int as
    in C. Its locals are the condition's variables."""

    kind: ClassVar[str] = "test"
    partial: ClassVar[str] = "partials/steps/test.c.j2"
    child_fields: ClassVar[tuple[str, ...]] = ()
    dest: str
    cond: CExpr

    def reads(self) -> frozenset[str]:
        walker = _LocalsRead()
        walker.visit(self.cond)
        return frozenset(walker.found)


@dataclass(frozen=True)
class Select(StepBase):
    """`ctype dest = test ? then : other` (`a if test else b`): both arms are computed before
    (they read memory or compute, nothing with an effect), the test picks one."""

    kind: ClassVar[str] = "select"
    partial: ClassVar[str] = "partials/steps/select.c.j2"
    child_fields: ClassVar[tuple[str, ...]] = ("test", "then", "other")
    dest: str
    ctype: str
    test: Operand
    then: Operand
    other: Operand


class _LocalsRead(Visitor[None]):
    """The generated locals a condition reads (its variables; literals read none)."""

    def __init__(self) -> None:
        self.found: set[str] = set()

    def visit_CVar(self, node: CVar) -> None:
        self.found.add(node.name)

    def visit_CStrEq(self, node: CStrEq) -> None:
        self.found.add(node.slot)

    def visit_CInetEq(self, node: CInetEq) -> None:
        self.found.add(node.slot)

    def visit_Operand(self, node: Operand) -> None:
        if node.reads:
            self.found.add(node.reads)


@dataclass(frozen=True)
class StateKey(StepBase):
    """`struct state_<map>_key_t dest = {...}`: a state map's key from locals, member by member."""

    kind: ClassVar[str] = "statekey"
    partial: ClassVar[str] = "partials/steps/statekey.c.j2"
    child_fields: ClassVar[tuple[str, ...]] = ("parts",)
    dest: str
    map: str
    parts: tuple[tuple[str, Operand], ...]  # (key slot, local or constant): a map


@dataclass(frozen=True)
class StateRead(StepBase):
    """Look a key up: `take` deletes it, `get` keeps it; a missing key drops the event unless
    a default is given (`defaults`: value slot -> constant text). `dest` is the value struct."""

    kind: ClassVar[str] = "stateread"
    partial: ClassVar[str] = "partials/steps/stateread.c.j2"
    child_fields: ClassVar[tuple[str, ...]] = ("key",)
    dest: str
    map: str
    key: Local  # the StateKey local
    delete: bool
    defaults: tuple[tuple[str, Constant], ...] = ()
    has_default: bool = False
    index: int = 0  # the map's StateMap.index: a take's delete is counted (engine_state_keys)
    # >= 0: `dest` is a pointer to this entry of the map's per-CPU scratch array, which the
    # value is copied into (a value holding strings is too large for the 512-byte stack)
    scratch: int = -1


@dataclass(frozen=True)
class StateHas(StepBase):
    """`u64 dest = key present in the map` (nothing deleted)."""

    kind: ClassVar[str] = "statehas"
    partial: ClassVar[str] = "partials/steps/statehas.c.j2"
    child_fields: ClassVar[tuple[str, ...]] = ("key",)
    dest: str
    map: str
    key: Local


@dataclass(frozen=True)
class StatePut(StepBase):
    """Store a value struct under a key; a failed update is counted (engine_errors[index]),
    and so is a new key (engine_state_keys[2 * index]: evictions are what is missing)."""

    kind: ClassVar[str] = "stateput"
    partial: ClassVar[str] = "partials/steps/stateput.c.j2"
    child_fields: ClassVar[tuple[str, ...]] = ("key", "parts", "strings")
    dest: str  # the value struct local this step declares and fills
    map: str
    key: Local
    parts: tuple[tuple[str, Operand], ...]  # (value slot, local or constant): a map
    comm: tuple[str, ...] = ()  # value slots filled with the current task's comm
    index: int = 0
    # string slots: (value slot, the address of the string), copied with the helper of
    # `spaces[i]` (bpf_probe_read_user_str for a user pointer)
    strings: tuple[tuple[str, Operand], ...] = ()
    spaces: tuple[AddressSpace, ...] = ()
    scratch: int = -1  # >= 0: the value is built in this entry of the per-CPU scratch array


@dataclass(frozen=True)
class StateDelete(StepBase):
    """Delete a key (a path that ends a pairing without reading the value)."""

    kind: ClassVar[str] = "statedelete"
    partial: ClassVar[str] = "partials/steps/statedelete.c.j2"
    child_fields: ClassVar[tuple[str, ...]] = ("key",)
    dest: str  # unused local name, so every step has one
    map: str
    key: Local
    index: int = 0  # the map's StateMap.index: a delete is counted (engine_state_keys)


@dataclass(frozen=True)
class CopyLocal(StepBase):
    """Copy `size` bytes from a generated local's member (a state value) into an event slot."""

    kind: ClassVar[str] = "copylocal"
    partial: ClassVar[str] = "partials/steps/copylocal.c.j2"
    child_fields: ClassVar[tuple[str, ...]] = ("src",)
    dest: str
    src: Member
    size: int


Step = Union[
    Builtin,
    Comm,
    CommLocal,
    Arg,
    Stashed,
    Load,
    LoadBits,
    AddrOf,
    Add,
    Store,
    Copy,
    CopyStr,
    DataLocStr,
    Inet,
    Arith,
    Test,
    Select,
    StateKey,
    StateRead,
    StateHas,
    StatePut,
    StateDelete,
    CopyLocal,
]
