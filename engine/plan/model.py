"""The plain data model between planning and rendering.

`planner.plan()` builds a `Plan` from a spec and kernel BTF: every attach alternative spelled
out, every value a chain of typed steps at BTF offsets, every filter a typed tree.
`bind()` then fixes what a run decides (output mode, option values, the alternative chosen
per probe) and returns a `Program`, the only thing the templates read. All of it is frozen
data: names in it are generated or validated identifiers, and numbers are ints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Union

# --- typed expression trees (filters and `where`) -----------------------------------------


@dataclass(frozen=True)
class CVar:
    """A generated C local (`v3`) or event slot (`ev.dport`)."""

    name: str
    ctype: str  # u8..u64, s8..s64


@dataclass(frozen=True)
class CNum:
    value: int
    ctype: str


@dataclass(frozen=True)
class COption:
    """An option placeholder; `bind` replaces it by typed constants or drops its term."""

    option: str
    ctype: str
    is_list: bool


@dataclass(frozen=True)
class CCompare:
    op: str  # == != < <= > >=
    left: CExpr
    right: CExpr


@dataclass(frozen=True)
class CIn:
    left: CExpr
    values: Union[tuple[CNum, ...], COption]
    negate: bool = False


@dataclass(frozen=True)
class CStrEq:
    """A char slot equal to a string: `size` bytes, NUL-terminated unless the value fills it."""

    slot: str
    value: Union[bytes, COption]
    size: int
    negate: bool = False


@dataclass(frozen=True)
class CBool:
    op: str  # && ||
    terms: tuple[CExpr, ...]


@dataclass(frozen=True)
class CNot:
    term: CExpr


@dataclass(frozen=True)
class CTrue:
    pass


CExpr = Union[CVar, CNum, COption, CCompare, CIn, CStrEq, CBool, CNot, CTrue]

# --- steps: C statements in a probe function, one kind each ------------------------------


@dataclass(frozen=True)
class Builtin:
    kind: ClassVar[str] = "builtin"
    dest: str
    ctype: str
    which: str  # tgid tid uid gid ktime_ns boot_ns cpu cgroup_id


@dataclass(frozen=True)
class Comm:
    kind: ClassVar[str] = "comm"
    dest: str  # event slot, char[16]
    size: int


@dataclass(frozen=True)
class Arg:
    """A function argument (kprobe/fentry/raw tracepoint) or the return value (`index` -1)."""

    kind: ClassVar[str] = "arg"
    dest: str
    ctype: str
    index: int
    access: str = "regs"  # engine.attach.ArgAccess value: how the C reads it


@dataclass(frozen=True)
class Stashed:
    """An entry argument read back from the kretprobe/fexit stash."""

    kind: ClassVar[str] = "stashed"
    dest: str
    ctype: str
    slot: str


@dataclass(frozen=True)
class Load:
    """`dest = *(ctype *)(base + offset)` through bpf_probe_read_kernel."""

    kind: ClassVar[str] = "load"
    dest: str
    ctype: str
    base: str
    offset: int
    size: int


@dataclass(frozen=True)
class LoadBits:
    """A bitfield: read `size` bytes, shift right, mask."""

    kind: ClassVar[str] = "loadbits"
    dest: str
    ctype: str
    base: str
    offset: int
    size: int
    shift: int
    mask: int


@dataclass(frozen=True)
class AddrOf:
    """`u64 dest = base + offset` (an address; nothing read)."""

    kind: ClassVar[str] = "addr"
    dest: str
    base: str
    offset: int


@dataclass(frozen=True)
class Sum:
    """`u64 dest = left + right` (e.g. skb->head + skb->transport_header)."""

    kind: ClassVar[str] = "sum"
    dest: str
    left: str
    right: str


@dataclass(frozen=True)
class Store:
    """`ev.slot = src`, byte-swapped first when `swap` is 16/32/64."""

    kind: ClassVar[str] = "store"
    dest: str
    src: str
    swap: int = 0


@dataclass(frozen=True)
class Copy:
    """Copy `size` bytes of kernel memory into an event array slot."""

    kind: ClassVar[str] = "copy"
    dest: str
    base: str
    offset: int
    size: int


@dataclass(frozen=True)
class CopyStr:
    """A NUL-terminated string into an event char slot (`deref`: base holds a char *)."""

    kind: ClassVar[str] = "copystr"
    dest: str
    base: str
    offset: int
    size: int
    user: bool = False  # a user-space string (syscall arguments)


@dataclass(frozen=True)
class DataLocStr:
    """A tracepoint `__data_loc char[]` string: the u32 at `offset` locates it in the record."""

    kind: ClassVar[str] = "datalocstr"
    dest: str
    base: str
    offset: int
    size: int


@dataclass(frozen=True)
class Inet:
    """An address by family: 4 bytes at v4, or 16 at v6, into `dest.addr`; family kept."""

    kind: ClassVar[str] = "inet"
    dest: str
    family: str  # a local holding the family
    v4_base: str
    v4_offset: int
    v6_base: str
    v6_offset: int


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
]


def slot_name(field: str) -> str:
    """The C struct member and ctypes attribute of a field: prefixed, so no field name can
    collide with a C or Python keyword or a kernel macro (`int`, `from`, `current`)."""
    return f"f_{field}"


# --- layouts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """A member of the event or count-key struct."""

    name: str
    ctype: str  # u8..u64, s8..s64, char, u8 (arrays), or "struct inet_addr"
    count: int  # array length; 0 for a scalar
    offset: int
    size: int


@dataclass(frozen=True)
class Layout:
    struct: str
    slots: tuple[Slot, ...]
    size: int


# --- fields and output ------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """A named value of the event, with how it prints."""

    name: str
    ctype: str
    count: int
    decoder: str  # int str inet ip_version enum errno bool hex elapsed
    header: str
    width: int
    enum_values: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class Column:
    field: str
    header: str
    width: int
    option: str = ""  # a bool option that turns it on; "" = always


@dataclass(frozen=True)
class Option:
    name: str
    short: str
    long: str
    ctype: str  # u8..s64 or bool
    is_list: bool
    help: str
    metavar: str


# --- attach alternatives and probes -------------------------------------------------------


@dataclass(frozen=True)
class Function:
    """One BPF C function and where it attaches."""

    name: str
    kind: str  # kprobe kretprobe tracepoint raw_tracepoint fentry fexit
    target: str  # kernel function, "category:event", or raw tracepoint name
    role: str  # "entry" (stash args for a return probe) or "main"


@dataclass(frozen=True)
class FieldCode:
    name: str
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Alternative:
    index: int
    kind: str
    targets: tuple[str, ...]
    functions: tuple[Function, ...]
    stash: tuple[tuple[str, int], ...]  # (slot, argument index) saved at entry
    steps: tuple[Step, ...]  # bindings needed by `where`
    where: CExpr
    fields: tuple[FieldCode, ...]  # each field's own steps, in field order
    filter_fields: tuple[str, ...]  # fields the probe filter reads (computed first)


@dataclass(frozen=True)
class Probe:
    name: str
    index: int
    alternatives: tuple[Alternative, ...]
    filter: CExpr


@dataclass(frozen=True)
class Plan:
    name: str
    description: str
    options: tuple[Option, ...]
    probes: tuple[Probe, ...]
    fields: tuple[Field, ...]
    event: Layout
    columns: tuple[Column, ...]
    count_by: tuple[Column, ...]
    count_header: str
    key: Layout | None


# --- what a run fixes: the render model ------------------------------------------------


@dataclass(frozen=True)
class ProgramProbe:
    name: str
    alternative: Alternative
    pre: tuple[Step, ...]  # field steps the filter needs
    filter: CExpr
    post: tuple[Step, ...]  # the other field steps (events) or key steps (count)


@dataclass(frozen=True)
class Program:
    name: str
    mode: str  # events | count
    transport: str  # ringbuf | perf
    ringbuf_pages: int
    wakeup_batch: int  # 0: wake the reader on every event
    probes: tuple[ProgramProbe, ...]
    event: Layout
    key: Layout | None
    fields: tuple[Field, ...] = field(default=())

    @property
    def output(self) -> str:
        """Which output partials render: count, ringbuf or perf."""
        return "count" if self.mode == "count" else self.transport
