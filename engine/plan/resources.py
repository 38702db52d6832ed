"""The resources pass: every BPF map a bound Program needs, declared once.

The templates declare the maps from these declarations (templates/partials/map.c.j2) and the
runtime opens them and reads their counters by the same declarations, so a map's name, type,
size or a counter's index is written in one place, here, not once in template text and again
in a Python string literal.

What a program needs: the event buffer (a ring buffer, and its `pending` wakeup counter, or a
perf buffer), the `lost` counter, each active aggregation's per-epoch hash and overflow
(`other`) maps and a histogram's zero value, the `agg_epoch` array of --clear, one hash set
per long list option (or the map a `pinned_map` option names), the `engine_errors` counters
(a state map's failed updates, an aggregation's overflowing keys), the `engine_state_keys`
counters (keys inserted and deleted per state map), the state maps, and a per-CPU scratch
array per state map whose values hold strings (too large for the BPF stack).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Sequence

from engine.plan import model as M

EVENTS = "events"
PENDING = "pending"
LOST = "lost"
EPOCH = "agg_epoch"
ERRORS = "engine_errors"
STATE_KEYS = "engine_state_keys"
NO_PREALLOC = "BPF_F_NO_PREALLOC"
STACKS = "stack_traces"
CGROUPS = "engine_cgroups"  # --cgroup: a cgroup array, one directory per slot
STACK_STORAGE = 16384  # the stack map's default entries, as bcc's profile (--stack-storage-size)
# engine_errors' counters of stacks not stored, after the aggregations' (Program.stack_errors)
STACK_ERRORS = (
    "kernel stacks not stored (stack map full or hash collision: --stack-storage-size)",
    "user stacks not stored (stack map full or hash collision: --stack-storage-size)",
)


class MapType(str, Enum):
    """A BPF map type, as bcc spells its table type."""

    ARRAY = "array"
    PERCPU_ARRAY = "percpu_array"
    HASH = "hash"
    PERCPU_HASH = "percpu_hash"
    LRU_HASH = "lru_hash"
    RINGBUF = "ringbuf"
    PERF = "perf_output"
    STACK_TRACE = "stack_trace"
    CGROUP_ARRAY = "cgroup_array"


@dataclass(frozen=True)
class MapDecl:
    """One BPF map: what the C declares and what user space opens by name."""

    name: str
    type: MapType
    key: str  # the key's C type ("" for arrays, indexed by int, and event buffers)
    value: str  # the value's C type ("" for event buffers)
    size: int  # entries; a ring buffer's pages
    flags: str = ""  # map flags (BPF_F_NO_PREALLOC)
    pinned: str = ""  # a map another tool pinned at this path: opened as it is, not created
    note: str = ""  # said beside the declaration in the C


@dataclass(frozen=True)
class Counters:
    """A per-CPU array of u64 counters: `names[i]` says what counter i counts."""

    map: MapDecl
    names: tuple[str, ...]


@dataclass(frozen=True)
class AggMapDecls:
    """An aggregation's maps: per epoch its per-key hash and its `other` overflow array, and
    a histogram's all-zero first value (too large for the BPF stack)."""

    sink: M.AggSink
    epochs: tuple[tuple[MapDecl, MapDecl], ...]  # (hash, other), epoch 0 first
    zero: MapDecl | None


@dataclass(frozen=True)
class Resources:
    """Every map of one bound Program, in the order the C declares them."""

    aggregations: tuple[AggMapDecls, ...]
    events: MapDecl | None  # the event buffer (ring or perf), when events go to user space
    pending: MapDecl | None  # events queued since the last wakeup, per CPU (--wakeup N)
    sets: tuple[MapDecl, ...]
    epoch: MapDecl | None  # --clear: which map set the aggregations write
    lost: MapDecl
    errors: Counters
    state_keys: Counters | None
    states: tuple[MapDecl, ...]
    # a per-CPU array per state map holding strings: its values are built and read there, as
    # they are too large for the BPF stack (one entry per read or store in one function)
    scratch: tuple[MapDecl, ...] = ()
    stacks: MapDecl | None = None  # the stack map, when a field reads a stack
    cgroups: MapDecl | None = None  # --cgroup: the directories events must come from under

    @property
    def before_probes(self) -> tuple[MapDecl, ...]:
        """Maps the C declares after `lost`, before the counters (stacks, --cgroup's)."""
        return tuple(m for m in (self.stacks, self.cgroups) if m is not None)

    def all(self) -> tuple[MapDecl, ...]:
        """Every declaration, in C order."""
        out: list[MapDecl] = []
        for agg in self.aggregations:
            out += [m for pair in agg.epochs for m in pair] + ([agg.zero] if agg.zero else [])
        out += [m for m in (self.events, self.pending) if m is not None]
        out += [*self.sets, *([self.epoch] if self.epoch else []), self.lost, *self.before_probes]
        if self.errors.names:
            out.append(self.errors.map)
            out += [self.state_keys.map] if self.state_keys else []
            out += self.states
            out += self.scratch
        return tuple(out)

    def of(self, sink: M.AggSink) -> AggMapDecls:
        """The maps of aggregation `sink`."""
        return next(a for a in self.aggregations if a.sink == sink)

    def state(self, st: M.StateMap) -> MapDecl:
        """The declaration of state map `st`."""
        return next(m for m in self.states if m.name == state_map_name(st.name))


# --- names and counter indices ------------------------------------------------------------------


def state_map_name(name: str) -> str:
    """The BPF map of the spec's state map `name` (its structs: state_<name>_key_t, _val_t)."""
    return f"state_{name}"


def set_map_name(option: str) -> str:
    """The hash set of a list option's values, or the pinned map an option names."""
    return f"set_{option}"


def error_names(states: Sequence[M.StateMap], aggs: Sequence[M.Aggregation]) -> list[str]:
    """engine_errors' counters by index: each of the plan's state maps at its `index` (its
    place among the plan's states, chosen or not), then each active aggregation's."""
    names = [f"state '{st.name}': failed updates" for st in states]
    return names + [
        f"aggregation '{a.name}': events past {a.size} keys, folded into 'other'" for a in aggs
    ]


def agg_error_index(states: Sequence[M.StateMap], position: int) -> int:
    """The engine_errors counter of the `position`-th active aggregation (`error_names`)."""
    return len(states) + position


def inserted_counter(state_index: int) -> int:
    """engine_state_keys' counter of the keys inserted into the `state_index`-th state map."""
    return 2 * state_index


def deleted_counter(state_index: int) -> int:
    """engine_state_keys' counter of the keys deleted from the `state_index`-th state map."""
    return 2 * state_index + 1


def scratch_map_name(name: str) -> str:
    """The per-CPU scratch array of state map `name`, whose values hold strings."""
    return f"{state_map_name(name)}_scratch"


# --- the pass -----------------------------------------------------------------------------------


def declare(program: M.Program) -> Resources:
    """Every map `program` needs, derived from its sinks, sets, states and counters."""
    return Resources(
        aggregations=tuple(_agg_maps(s) for s in program.aggregations),
        events=_event_buffer(program),
        pending=_pending(program),
        sets=tuple(_set_map(s) for s in program.sets),
        epoch=(
            MapDecl(
                EPOCH,
                MapType.ARRAY,
                "",
                "u32",
                1,
                note="which map set the aggregations write (--clear)",
            )
            if program.epochs > 1
            else None
        ),
        lost=MapDecl(LOST, MapType.PERCPU_ARRAY, "", "u64", 1),
        errors=Counters(
            MapDecl(ERRORS, MapType.PERCPU_ARRAY, "", "u64", len(program.errors)), program.errors
        ),
        state_keys=_state_keys(program),
        states=tuple(_state_map(st) for st in program.states),
        scratch=_scratch_maps(program),
        stacks=(
            MapDecl(STACKS, MapType.STACK_TRACE, "", "", program.stack_storage)
            if program.stack_storage
            else None
        ),
        cgroups=(
            MapDecl(
                CGROUPS,
                MapType.CGROUP_ARRAY,
                "",
                "",
                program.cgroup_slots,
                note="--cgroup: a task under one of these sends events",
            )
            if program.cgroup_slots
            else None
        ),
    )


def _agg_maps(sink: M.AggSink) -> AggMapDecls:
    key, leaf, size = f"struct {sink.key.struct}", sink.leaf, sink.agg.size
    # a histogram's value is large: its entries are allocated as keys arrive, not all up front
    hash_type, flags = (MapType.PERCPU_HASH, NO_PREALLOC if sink.buckets else "")
    epochs = tuple(
        (
            MapDecl(m.hash, hash_type, key, leaf, size, flags),
            MapDecl(m.other, MapType.PERCPU_ARRAY, "", leaf, 1),
        )
        for m in sink.map_sets
    )
    zero = MapDecl(f"{sink.map}_zero", MapType.ARRAY, "", leaf, 1) if sink.buckets else None
    return AggMapDecls(sink, epochs, zero)


def _event_sink(program: M.Program) -> M.EventSink | None:
    return next((s for s in program.sinks if isinstance(s, M.EventSink)), None)


def _event_buffer(program: M.Program) -> MapDecl | None:
    sink = _event_sink(program)
    if sink is None:
        return None
    if sink.transport == M.Transport.RINGBUF:
        return MapDecl(EVENTS, MapType.RINGBUF, "", "", sink.ringbuf_pages)
    return MapDecl(EVENTS, MapType.PERF, "", "", 0)


def _pending(program: M.Program) -> MapDecl | None:
    sink = _event_sink(program)
    if sink is None or sink.transport != M.Transport.RINGBUF or sink.wakeup_batch <= 1:
        return None
    return MapDecl(PENDING, MapType.PERCPU_ARRAY, "", "u64", 1)


def _set_map(st: M.SetMap) -> MapDecl:
    if st.pinned:  # its type, size and value stand as pinned; the key was checked to be a u64
        return MapDecl(st.map, MapType.HASH, "u64", "u8", 1, pinned=st.pinned)
    return MapDecl(st.map, MapType.HASH, st.ctype, "u8", st.size)


def _state_keys(program: M.Program) -> Counters | None:
    if not program.states:
        return None
    names = [""] * program.state_counters
    for st in program.states:
        names[inserted_counter(st.index)] = f"state '{st.name}': keys inserted"
        names[deleted_counter(st.index)] = f"state '{st.name}': keys deleted"
    decl = MapDecl(STATE_KEYS, MapType.PERCPU_ARRAY, "", "u64", program.state_counters)
    return Counters(decl, tuple(names))


def _scratch_maps(program: M.Program) -> tuple[MapDecl, ...]:
    entries: dict[str, int] = {}
    for probe in program.probes:
        alt = probe.alternative
        for step in (*alt.stash_steps, *alt.steps, *alt.state_steps, *probe.pre, *probe.post):
            if isinstance(step, (M.StateRead, M.StatePut)) and step.scratch >= 0:
                entries[step.map] = max(entries.get(step.map, 0), step.scratch + 1)
    return tuple(
        MapDecl(
            scratch_map_name(st.name),
            MapType.PERCPU_ARRAY,
            "",
            f"struct {st.value.struct}",
            entries[st.name],
            note="values with strings are built here, not on the 512-byte stack",
        )
        for st in program.states
        if st.name in entries
    )


def _state_map(st: M.StateMap) -> MapDecl:
    key, value = f"struct {st.key.struct}", f"struct {st.value.struct}"
    kind = MapType.LRU_HASH if st.lru else MapType.HASH
    return MapDecl(state_map_name(st.name), kind, key, value, st.size)
