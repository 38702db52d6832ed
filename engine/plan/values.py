"""Values and types of the planner: what every plan module shares.

`VT` (what a value is), `Val` (where it is: a C local or kernel memory at base+offset),
`PlanError`, and the small integer-range rules. It sits below `resolve`, `arith`, `state`,
`bind` and `tracepoints` so they depend on it, not on each other: the `ValueResolver`
protocol is the part of `resolve.Resolver` that `arith` and `state` call back into, so
`resolve` can import them without them importing `resolve` (no cycle).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Iterable, Protocol

from engine.kernel.btf import BtfType, Kind
from engine.plan import model as M
from engine.plan.types import TypeSource
from engine.spec import expr as E

PINNED = "pinned_map"  # an option type: the path of a BPF hash map another tool pinned
INET_OPTION = "inet"  # an option type: an IPv4 or IPv6 address (tcprtt's -a/-A)


class PlanError(E.ExprError):
    """A meaning problem inside one expression, at a 0-based column.

    Same shape as a parse error (message, column); only the stage differs.
    """


class AlreadyReported(PlanError):
    """The expression uses a `let` whose own error was already reported where it is bound."""

    def __init__(self) -> None:
        super().__init__("")


# --- value types ------------------------------------------------------------------------------


class VKind(str, Enum):
    """What kind of value the planner holds."""

    INT = "int"
    PTR = "ptr"
    STRUCT = "struct"  # a struct or union in memory (an lvalue)
    ARRAY = "array"
    INET = "inet"  # an address by family (sock_saddr, inet())
    STR = "str"  # a string: a char array slot, a __data_loc string
    COMM = "comm"  # the current task's name (bpf_get_current_comm)
    VOID = "void"
    STATE = "state"  # a multi-member state map value (engine.plan.state)


@dataclass(frozen=True)
class VT:
    """What a planner value is: an int, a pointer, a struct in memory, an array, ..."""

    kind: VKind
    size: int = 0
    signed: bool = False
    btf: int = 0  # ptr: pointee id; struct: its id; array: element id; int: enum id or 0
    count: int = 0
    label: str = ""  # C spelling for messages
    char: bool = False  # char arrays and char pointers
    data_loc: bool = False
    user: bool = False  # a user-space pointer (syscall arguments): read with *_user helpers
    state: str = ""  # a state map's value (kind "state"): the map's name
    # the state members ("map.member") this value was read or computed from: a user-space
    # pointer kept in state is still one (Provenance)
    origins: tuple[str, ...] = ()
    func: bool = False  # the `func` builtin: an index that prints as the function's name
    stack: str = ""  # the `kstack`/`ustack` builtins: a stack id that prints as frames
    frames: int = 0  # kstack(N)/ustack(N): at most N frames printed (0: all)

    @property
    def ctype(self) -> str:
        if self.kind is VKind.PTR:
            return "u64"
        return f"{'s' if self.signed else 'u'}{self.size * 8}"


def int_vt(ctype: str) -> VT:
    return VT(VKind.INT, int(ctype[1:]) // 8, ctype[0] == "s", label=ctype)


@dataclass(frozen=True)
class Val:
    """A value during planning: in a C local (rvalue), or in kernel memory at base+offset."""

    vt: VT
    var: str = ""  # rvalue: the local (or constant text of a generated number)
    base: str = ""  # lvalue: local holding the base address
    offset: int = 0
    bits: tuple[int, int] = (0, 0)  # lvalue bitfield: (bit offset from `offset`, width)
    parts: tuple[Val, ...] = ()  # inet: family (rvalue), v4 lvalue, v6 lvalue
    const: int | None = None  # a number written in the spec, an enum constant, or folded

    @property
    def is_lvalue(self) -> bool:
        return bool(self.base)

    @property
    def is_const(self) -> bool:
        return self.const is not None


def constant_val(value: int, label: str = "integer") -> Val:
    """A constant: its value kept as a number (`const`); `var` is its C text."""
    return Val(VT(VKind.INT, 8, True, label=label), var=str(value), const=value)


def is_char(t: BtfType) -> bool:
    """Text, not bytes: kernel BTF gives `char` no CHAR encoding, so go by its name."""
    return t.kind == Kind.INT and t.size == 1 and (t.is_char or t.name == "char")


def vt_of(btf: TypeSource, type_id: int) -> VT:
    """Planner type of a BTF type (typedefs and qualifiers skipped)."""
    t = btf.strip(type_id)
    label = btf.type_str(type_id)
    if t.kind == Kind.INT:
        return VT(VKind.INT, t.size, t.signed, label=label, char=is_char(t))
    if t.kind in (Kind.ENUM, Kind.ENUM64):
        return VT(VKind.INT, t.size, t.signed, btf=t.id, label=label)
    if t.kind == Kind.PTR:
        target = btf.strip(t.type_id)
        return VT(VKind.PTR, 8, btf=target.id, label=label, char=is_char(target))
    if t.kind in (Kind.STRUCT, Kind.UNION, Kind.FWD):
        return VT(VKind.STRUCT, t.size, btf=t.id, label=label)
    if t.kind == Kind.ARRAY:
        elem = btf.strip(t.type_id)
        return VT(
            VKind.ARRAY,
            btf.sizeof(t.id),
            btf=elem.id,
            count=t.nelems,
            label=label,
            char=is_char(elem),
        )
    return VT(VKind.VOID, label=label)


@dataclass
class Provenance:
    """What state members hold, across every probe of a spec: a member some store fills with
    a user-space pointer (a syscall's `const char *`) holds one, and so does a member filled
    from such a member. A value read back from state is only an integer, so casts of such
    values are noted (`casts`) and checked once every store is known: a spec may read a map
    in a probe that comes before the one that stores it."""

    user: dict[str, str] = field(default_factory=dict)  # member -> the stored pointer's type
    flows: dict[str, set[str]] = field(default_factory=dict)  # member -> members stored in it
    casts: list[tuple[E.Cast, tuple[str, ...]]] = field(default_factory=list)
    # member -> a kernel pointer's type stored in it (such a member is no user string)
    kernel: dict[str, str] = field(default_factory=dict)
    # values read from state as user strings (`decode: str`, a store into a `str` member):
    # each must come from a member that holds user pointers, and from no kernel pointer
    strings: list[tuple[E.Node, tuple[str, ...]]] = field(default_factory=list)

    def user_pointer(self, origins: Iterable[str]) -> tuple[str, str] | None:
        """(member, pointer type) of the first origin that holds a user-space pointer."""
        return self._holding(origins, self.user)

    def kernel_pointer(self, origins: Iterable[str]) -> tuple[str, str] | None:
        """(member, pointer type) of the first origin that holds a kernel pointer."""
        return self._holding(origins, self.kernel)

    def _holding(self, origins: Iterable[str], table: dict[str, str]) -> tuple[str, str] | None:
        for origin in origins:
            seen, todo = {origin}, [origin]
            while todo:
                member = todo.pop()
                if member in table:
                    return origin, table[member]
                for source in self.flows.get(member, ()):
                    if source not in seen:
                        seen.add(source)
                        todo.append(source)
        return None


def is_constant(val: Val) -> bool:
    """A number written in the spec (or an enum constant), not a kernel value."""
    return val.is_const


def fits(value: int, ctype: str, node: E.Node) -> int:
    """`value` if it is in `ctype`'s range, else a PlanError at the constant."""
    lo, hi = ctype_range(ctype)
    if not lo <= value <= hi:
        raise PlanError(f"{value} does not fit a {ctype} ({lo}..{hi})", getattr(node, "col", 0))
    return value


def fits64(value: int, node: E.Node) -> int:
    """A constant standing alone must be a 64-bit integer, signed or not."""
    if not -(1 << 63) <= value < 1 << 64:
        raise PlanError(
            f"{value} does not fit 64 bits ({-(1 << 63)}..{(1 << 64) - 1})",
            getattr(node, "col", 0),
        )
    return value


def ctype_range(ctype: str) -> tuple[int, int]:
    bits = int(ctype[1:])
    if ctype[0] == "s":
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


# --- what arith and state ask of a resolver -----------------------------------------------------


class Emitter(Protocol):
    """The code being built for one attach alternative (`resolve.Scope`)."""

    provenance: Provenance
    steps: list[M.Step]

    def local(self) -> str: ...

    def emit(self, step: M.Step) -> None: ...


class ValueResolver(Protocol):
    """What `arith` and `state` call on a resolver (`resolve.Resolver` implements it)."""

    @property
    def s(self) -> Emitter: ...

    @property
    def leaf(self) -> Callable[[E.Node], Val]: ...

    def value(self, node: E.Node) -> Val: ...

    def number(self, val: Val, node: E.Node) -> Val: ...

    def rvalue(self, val: Val) -> Val: ...

    def address(self, val: Val) -> str: ...

    def constant(self, node: E.Node, ctype: str) -> int: ...


def inet_value(text: str) -> tuple[int, bytes]:
    """An address as the kernel keeps it: (AF_INET, 4 bytes) or (AF_INET6, 16 bytes); an
    IPv4-mapped IPv6 address stays IPv6, as the socket holds it. ValueError if none."""
    addr = ipaddress.ip_address(text)
    return (socket.AF_INET if addr.version == 4 else socket.AF_INET6), addr.packed
