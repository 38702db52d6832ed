"""The plain data model between planning and rendering.

`planner.plan()` builds a `Plan` from a spec and kernel BTF: every attach alternative spelled
out, every value a chain of typed steps at BTF offsets, every filter a typed tree.
`bind()` then fixes what a run decides (output mode, option values, the alternative chosen
per probe) and returns a `Program`, the only thing the templates read. All of it is frozen
data: names in it are generated or validated identifiers, and numbers are ints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Mapping, Union

from engine import aggs
from engine.aggs import AggKind
from engine.aggs.linear import top_bucket
from engine.plan.ir import (  # noqa: F401  re-exported: `M.Load`, `M.CVar` keep working
    Add,
    AddrOf,
    Arg,
    Arith,
    Builtin,
    CArith,
    CBool,
    CCompare,
    CExpr,
    CIn,
    CInetEq,
    CInSet,
    CNode,
    CNot,
    CNum,
    Comm,
    CommLocal,
    Constant,
    COption,
    Copy,
    CopyLocal,
    CopyStr,
    CStrEq,
    CSwitch,
    CTrue,
    CVar,
    DataLocStr,
    Inet,
    Load,
    LoadBits,
    Local,
    Member,
    Operand,
    Select,
    SetMap,
    Stashed,
    StateDelete,
    StateHas,
    StateKey,
    StatePut,
    StateRead,
    Step,
    StepBase,
    Store,
    Test,
    local,
    member,
    operand,
    read_space,
    rewrite,
)
from engine.spec import expr as E


def leaf_size(sink: AggSink) -> int:
    """Bytes of one per-CPU value of an aggregation (its struct's members, 8 bytes each, or
    a plain 8-byte integer)."""
    return sum(8 * (n or 1) for _, _, n in sink.members) or 8


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
    align: int = 0  # declared alignment past the members' own (C `aligned`); 0: none


@dataclass(frozen=True)
class StateMap:
    """A spec's `state` map: `struct state_<name>_key_t` -> `struct state_<name>_val_t`."""

    name: str
    key: Layout
    value: Layout
    members: tuple[str, ...]  # the value's member names in the spec ("value" for one)
    size: int
    lru: bool
    # its counter in engine_errors (failed updates); 2 x index and 2 x index + 1 in
    # engine_state_keys count the keys inserted and deleted, so that user space knows the
    # keys an LRU map evicted (inserted - deleted - held), which the kernel does not say
    index: int
    stash: bool = False  # made by the engine for a return probe's entry arguments
    # value slots holding strings (`str[N]` members): such a value is built and read in a
    # per-CPU scratch array (`state_<name>_scratch`), not on the 512-byte BPF stack
    strings: tuple[str, ...] = ()

    @property
    def scratch(self) -> bool:
        return bool(self.strings)


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
    frames: int = 0  # a stack field (kstack(N), ustack(N)): at most this many frames (0: all)


@dataclass(frozen=True)
class Column:
    field: str
    header: str
    width: int
    option: str = ""  # a bool option that turns it on; "" = always
    unless: str = ""  # a bool option that turns it off; "" = none
    label: str = ""  # a `by` entry's header as written: a histogram's label (else the field)

    def shown(self, values: Mapping[str, object]) -> bool:
        """Whether this run's option values show the column."""
        on = not self.option or bool(values.get(self.option))
        return on and not (self.unless and values.get(self.unless))


@dataclass(frozen=True)
class Option:
    name: str
    short: str
    long: str
    ctype: str  # u8..s64 or bool
    is_list: bool
    help: str
    metavar: str
    default: int | None = None  # an integer option's value when its flag is not given
    output: str = ""  # a switch that chooses this output format when given (-f: folded)
    positional: bool = False  # given without a flag (`runqslower 1000`): `flag: min_us`

    @property
    def label(self) -> str:
        """How messages name it: its flags (`-p/--pid`), or a positional's METAVAR."""
        return "/".join(f for f in (self.short, self.long) if f) or self.metavar


@dataclass(frozen=True)
class Aggregation:
    """An in-kernel aggregation of the emitting probes' events, keyed by zero or more fields.

    `kind` names its engine.aggs kind (KINDS). `value` names the field aggregated (not for
    count). `by` lists the key columns, each possibly switched by a bool option. Active when
    every bool option of `when` is on and `unless` is off; the spec's `output.count` is
    `by_count`: active with the engine's -c/--count, and then alone."""

    name: str
    kind: str
    value: str
    by: tuple[Column, ...]
    header: str
    unit: str
    size: int
    when: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()  # any of these bool options on turns it off
    low: int = 0  # linear: the first bucket's lower bound
    high: int = 0  # linear: the bound past the last regular bucket
    step: int = 0  # linear: bucket width
    signed: bool = False  # the value field is signed: its sums, min and max are s64
    by_count: bool = False
    # sum/min/max/avg with `print:`: the kernel keeps `unit` (ns), the value prints divided by
    # this once, toward zero (sinks.printed); 1 prints the kernel's value
    divisor: int = 1
    hide: bool = False  # read for output.derived, not printed as a column

    # --- attach alternatives and probes -------------------------------------------------------

    def answers_to(self, name: str) -> bool:
        """`--sort NAME` names it: its name, its header, or the header before a unit in
        parentheses, in any case."""
        return answers_to((self.name, self.header), name)


@dataclass(frozen=True)
class Function:
    """One BPF C function and where it attaches."""

    name: str
    kind: str  # kprobe kretprobe tracepoint raw_tracepoint fentry fexit
    target: str  # kernel function, "category:event", or raw tracepoint name
    role: str  # "entry" (stash args for a return probe) or "main"
    pid: int = -1  # user-space probes: the process to attach in (-1: every one)
    pid_option: str = ""  # ... or the option whose value it is (bind fills `pid`)
    func: int = 0  # the `func` builtin's value here: its target's index in Plan.func_names


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
    stores: tuple[Step, ...] = ()  # `store`/`delete` into state maps, after the filter
    state_steps: tuple[Step, ...] = ()  # state reads (take/get/has): after `where`, first
    entry_steps: tuple[Step, ...] = ()  # a return probe's entry function: store arguments
    stash_steps: tuple[Step, ...] = ()  # its return function, before anything: take them


@dataclass(frozen=True)
class Probe:
    name: str
    index: int
    alternatives: tuple[Alternative, ...]
    filter: CExpr
    emits: bool = True  # a probe without fields only stores state: it sends nothing


def answers_to(column: tuple[str, str], name: str) -> bool:
    """`--sort NAME` names this (name, header) column: either, or the header before a unit in
    parentheses (TIME(us): also `time`), in any case."""
    words = (column[0], column[1], column[1].split("(")[0])
    return bool(name) and name.lower() in {w.lower() for w in words}


@dataclass(frozen=True)
class Derived:
    """A column computed when printing, from the aggregations `refs` of one table."""

    name: str
    header: str
    width: int
    expr: E.Node
    refs: tuple[str, ...]  # the aggregations it reads, by name


@dataclass(frozen=True)
class Plan:
    name: str
    description: str
    options: tuple[Option, ...]
    probes: tuple[Probe, ...]
    fields: tuple[Field, ...]
    event: Layout
    columns: tuple[Column, ...]
    states: tuple[StateMap, ...] = ()
    aggregations: tuple[Aggregation, ...] = ()
    # every attach target by the name `func` prints (index = the value in the C), all probes'
    func_names: tuple[str, ...] = ()
    derived: tuple[Derived, ...] = ()

    @property
    def counted(self) -> Aggregation | None:
        """The aggregation `-c/--count` turns on (the spec's `output.count`), if any."""
        return next((a for a in self.aggregations if a.by_count), None)


# --- what a run fixes: the render model ------------------------------------------------


@dataclass(frozen=True)
class ProgramProbe:
    name: str
    alternative: Alternative
    pre: tuple[Step, ...]  # field steps the filter needs
    filter: CExpr
    post: tuple[Step, ...]  # the other field steps the sinks need, then state stores
    emits: bool = True  # sends the event to the sinks (a store-only probe does not)


class Transport(str, Enum):
    """How events reach user space: the ring buffer, or the per-CPU perf buffer (kernels
    before 5.8, or --perf-buffer)."""

    RINGBUF = "ringbuf"
    PERF = "perf"


@dataclass(frozen=True)
class EventSink:
    """Every event to user space, through the ring buffer or the per-CPU perf buffer."""

    transport: Transport
    ringbuf_pages: int
    wakeup_batch: int  # 0: wake the reader on every event

    @property
    def emit_partial(self) -> str:
        """templates/partials/emit_<this>.c.j2 sends one event."""
        return Transport(self.transport).value


@dataclass(frozen=True)
class AggMaps:
    """One epoch's maps of an aggregation: the per-key hash and its overflow array."""

    hash: str
    other: str


@dataclass(frozen=True)
class AggSink:
    """One active aggregation: a per-CPU hash from its key to its value, updated in the kernel.

    Per-CPU values make every update race-free without atomics (user space merges the CPUs).
    One entry per key holds the whole value (a histogram's buckets and sum too), so `size`
    counts keys. An event whose key does not fit is folded, whole, into `other` (a one-entry
    per-CPU array of the same value) and counted once in engine_errors[index].

    `epochs` is 2 when the run clears after each print (`--clear`): two sets of maps, the
    kernel writing the one `agg_epoch` selects, so user space reads and clears the other
    once no program can still be writing it (engine.runtime.sinks.Epochs)."""

    agg: Aggregation
    key: Layout  # struct agg_<name>_key_t: the active `by` slots (or one zero slot)
    by: tuple[Column, ...]  # the active key columns
    value_ctype: str  # the value's C type: s64 for a signed field (sum, min, max, avg, sums)
    index: int  # its counter in engine_errors
    epochs: int = 1

    @property
    def emit_partial(self) -> str:
        """emit_agg.c.j2 finds the value; emit_agg_<kind>.c.j2 updates it."""
        return "agg"

    @property
    def kind(self) -> AggKind:
        """The aggregation's kind (engine.aggs): its layout, partial, merge and value."""
        return aggs.KINDS[self.agg.kind]

    @property
    def members(self) -> tuple[tuple[str, str, int], ...]:
        """(C type, name, array length or 0) of the value struct; () for a plain integer."""
        return self.kind.members(self.value_ctype, self.buckets)

    @property
    def key_copies(self) -> tuple[tuple[str, bool], ...]:
        """Each key slot filled from the event's, and whether it is an array: an array is
        copied with bpf_probe_read_kernel, since clang copies a byte-aligned one inline a byte
        at a time through spilled registers (a 200-byte string passed the 512-byte stack)."""
        arrays = {s.name for s in self.key.slots if s.count}
        return tuple((slot_name(c.field), slot_name(c.field) in arrays) for c in self.by)

    @property
    def leaf(self) -> str:
        """The C type of one per-CPU value."""
        return f"struct {self.map}_val_t" if self.members else self.value_ctype

    @property
    def buckets(self) -> int:
        """A histogram's buckets (engine.aggs); 0 for the other kinds."""
        return self.kind.buckets(self.agg)

    @property
    def top_bucket(self) -> int:
        """A linear histogram's bucket for values at or above its max."""
        return top_bucket(self.agg)

    @property
    def map(self) -> str:
        return f"agg_{self.agg.name}"

    @property
    def map_sets(self) -> tuple[AggMaps, ...]:
        """The maps of each epoch; epoch 0's are also the only ones without --clear."""
        return tuple(
            AggMaps(f"{self.map}{suffix}", f"{self.map}_other{suffix}")
            for suffix in ("", "_e1")[: self.epochs]
        )


Sink = Union[EventSink, AggSink]


@dataclass(frozen=True)
class Program:
    name: str
    probes: tuple[ProgramProbe, ...]
    event: Layout
    fields: tuple[Field, ...] = field(default=())
    sinks: tuple[Sink, ...] = ()
    states: tuple[StateMap, ...] = ()
    errors: tuple[str, ...] = ()  # what each engine_errors counter counts, by index
    sets: tuple[SetMap, ...] = ()  # long list options' values, as hash sets
    stack_storage: int = 0  # the stack map's entries (0: no field reads a stack)
    stack_errors: int = -1  # engine_errors' counter of kernel stacks not stored; user: +1
    derived: tuple[Derived, ...] = ()  # columns computed when printing (output.derived)
    # --cgroup: cgroup v2 directories; only tasks under one of them send events
    cgroups: tuple[str, ...] = ()
    cgroup_slots: int = 0  # the cgroup array's size (>= len(cgroups): room for later ones)

    @property
    def layouts(self) -> tuple[Layout, ...]:
        """Every struct the C declares: the event, state keys and values, aggregation keys."""
        out = [self.event]
        for st in self.states:
            out += [st.key, st.value]
        out += [s.key for s in self.sinks if isinstance(s, AggSink)]
        return tuple(out)

    @property
    def state_counters(self) -> int:
        """engine_state_keys' size: two counters per state map, by StateMap.index, which
        counts the plan's maps (a stash map of an alternative not chosen is left out here)."""
        return 2 * (max(st.index for st in self.states) + 1) if self.states else 0

    @property
    def aggregations(self) -> tuple[AggSink, ...]:
        return tuple(s for s in self.sinks if isinstance(s, AggSink))

    @property
    def label(self) -> str:
        """What the generated C's first comment (and its golden file's name) calls the
        program's output: its counted aggregation (-c), aggregations, or events. Words for
        people; nothing branches on them."""
        if any(s.agg.by_count for s in self.aggregations):
            return aggs.COUNT.name
        return "aggregate" if self.aggregations else "events"

    @property
    def epochs(self) -> int:
        """2 when the aggregations keep two map sets (--clear), else 1."""
        return max((s.epochs for s in self.aggregations), default=1)
