"""Reading and printing in-kernel aggregations (the `AggSink`s of a Program).

Each aggregation is a per-CPU hash, one entry per key; reading it merges the CPUs per key
(sum, min, max, sum/count for avg, bucket by bucket for histograms), decodes the key with the
same struct layout and decoders as events (engine.runtime.rows), and adds `other`, the
series of events whose key did not fit. Each kind (engine.aggs) says how CPUs merge.

A CPU's slot of a key it never saw reads as zeros (the kernel zeroes them when the key is
created), so min and max keep a count beside the value and only slots with a count merge.
Sums keep the field's signedness (an s64 for a signed field) and wrap as the C type does.
"""

from __future__ import annotations

import ctypes
import os
import struct
from dataclasses import dataclass
from typing import Any, Sequence, TextIO

from engine import aggs
from engine.decoders import CONTAINER_DECODERS, STACK_DECODERS
from engine.errors import EngineError
from engine.output import RENDERERS, values
from engine.output import json as json_output
from engine.output import table as table_output
from engine.plan import model as M
from engine.plan import resources
from engine.runtime import decoders, derive
from engine.runtime.rows import getter, struct_format

# How each kind merges per-CPU values, how buckets bound, how a value prints: engine.aggs.
# The names below stay for the callers and tests that import them from here.
KINDS = aggs.KINDS
wrap = aggs.wrap
Exact = aggs.Exact
log2_bounds = aggs.log2_bounds
linear_bounds = aggs.linear_bounds


@dataclass
class Series:
    """One key of an aggregation: its decoded key values and merged value (or buckets)."""

    key: tuple[Any, ...]
    value: Any = 0  # count/sum/min/max: an int; avg: (sum, count)
    buckets: dict[int, int] | None = None  # histograms: bucket index -> count
    total: int = 0  # histograms: the sum of the values

    @property
    def count(self) -> int:
        return sum(self.buckets.values()) if self.buckets is not None else 0


# decoders whose text for the same bytes may change while a run goes on: the first timestamp
# (elapsed), a module loaded (ksym), the containers running (container, pod...)
IMPURE = frozenset({"elapsed", "ksym", *CONTAINER_DECODERS})
MAX_DECODED = 1 << 20  # keys kept decoded before the cache starts over (a bound on memory)


class Reader:
    """Reads one AggSink's maps (those of one epoch) into Series."""

    def __init__(self, sink: M.AggSink, fields: dict[str, M.Field], state: decoders.State):
        self.sink = sink
        self.kind = sink.kind
        self.signed = sink.value_ctype.startswith("s")
        fmt, index = struct_format(sink.key)
        self.unpack = struct.Struct(fmt).unpack_from
        self.getters = [
            getter(fields[c.field], index[M.slot_name(c.field)], state) for c in sink.by
        ]
        # a key's decoded values by its bytes, where they depend on nothing else: the same
        # keys come back at every read (engine serve's scrapes), decoded once
        self.pure = not any(fields[c.field].decoder in IMPURE for c in sink.by)
        self.decoded: dict[bytes, tuple[Any, ...]] = {}
        self.labels: dict[tuple[Any, ...], Any] = {}  # engine.runtime.aggregates' cache

    def series(self, key: tuple[Any, ...], per_cpu: Sequence[Any]) -> Series | None:
        merged = self.kind.merge([_plain(v) for v in per_cpu], self.signed)
        if merged is None:
            return None
        if self.kind.histogram:
            buckets, total = merged
            return Series(key, buckets=buckets, total=total)
        return Series(key, merged)

    def read(self, bpf: Any, epoch: int = 0) -> list[Series]:
        """Every key that holds a value, then `other` when it holds one; `epoch` picks the
        map set (only --clear runs have a second)."""
        maps = self.sink.map_sets[epoch]
        # keys that print the same (stacks cut to N frames) merge as one key's more CPUs
        merged: dict[tuple[Any, ...], list[Any]] = {}
        decoded = self.decoded if self.pure else {}
        if len(decoded) > MAX_DECODED:
            decoded.clear()
        for k, per_cpu in self.items(bpf[maps.hash]):
            raw = bytes(k)
            key = decoded.get(raw)
            if key is None:
                t = self.unpack(raw)
                key = decoded[raw] = tuple(g(t) for g in self.getters)
            merged.setdefault(key, []).extend(per_cpu)
        out = []
        for key, per_cpu in merged.items():
            s = self.series(key, per_cpu)
            if s is not None:
                out.append(s)
        if not self.sink.by:
            return out or self.nothing()
        other = self.series(("other",) * len(self.sink.by), bpf[maps.other][0])
        if other is None or (self.kind.zero_is_empty and other.value == 0):
            return out  # `other` keeps no count beside a count or sum: 0 is nothing folded
        return [*out, other]

    def nothing(self) -> list[Series]:
        """An aggregation with no key that saw nothing: a count or sum of 0, an empty
        histogram (an interval with no events prints zeros, not nothing); min, max and avg
        have no value."""
        if self.kind.histogram:
            return [Series((), buckets={}, total=0)]
        return [Series((), 0)] if self.kind.zero_is_empty else []

    batch = True  # BPF_MAP_LOOKUP_BATCH (Linux 5.6+) until the kernel refuses it once

    def items(self, table: Any) -> Any:
        """The map's (key, per-CPU values): one batched syscall per chunk where the kernel
        has it (about 25x faster than bcc's key-by-key walk at 10,000 keys), else the walk."""
        if self.batch:
            try:
                return list(table.items_lookup_batch())
            except Exception:  # bcc raises a bare Exception when the syscall fails
                self.batch = False
        return table.items()

    def clear(self, bpf: Any, epoch: int = 0) -> None:
        maps = self.sink.map_sets[epoch]
        bpf[maps.hash].clear()
        bpf[maps.other].clear()


_SIMPLE: dict[type, bool] = {}  # ctypes leaf type -> whether it is a plain integer


def _plain(v: Any) -> Any:
    """A per-CPU leaf as Python: a ctypes integer becomes an int; structs stay structs (min
    and max have a field named `value` too). The type's answer is kept: isinstance on ctypes
    types was a third of a 10,000-series scrape."""
    simple = _SIMPLE.get(type(v))
    if simple is None:
        simple = _SIMPLE[type(v)] = isinstance(v, ctypes._SimpleCData)
    return v.value if simple else v


# --- clearing without losing events ----------------------------------------------------------

MEMBARRIER_CMD_QUERY = 0
MEMBARRIER_CMD_GLOBAL = 1  # synchronize_rcu() (kernel/sched/membarrier.c)
SYS_MEMBARRIER = {"x86_64": 324, "aarch64": 283, "riscv64": 283, "ppc64le": 365, "s390x": 356}


def _membarrier(cmd: int) -> int:
    number = SYS_MEMBARRIER.get(os.uname().machine)
    if number is None:
        raise EngineError(f"--clear: no membarrier syscall number known for {os.uname().machine}")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    ret = int(libc.syscall(ctypes.c_long(number), ctypes.c_int(cmd), ctypes.c_int(0)))
    if ret < 0:
        raise EngineError(f"--clear: membarrier({cmd}) failed: {os.strerror(ctypes.get_errno())}")
    return ret


def check_membarrier() -> None:
    """Before tracing: --clear needs MEMBARRIER_CMD_GLOBAL, which a nohz_full kernel refuses."""
    if not _membarrier(MEMBARRIER_CMD_QUERY) & MEMBARRIER_CMD_GLOBAL:
        raise EngineError(
            "--clear needs membarrier(MEMBARRIER_CMD_GLOBAL) to know when the kernel stopped "
            "writing a map set, and this kernel refuses it (nohz_full); print without --clear"
        )


class Epochs:
    """--clear without losing an event: each aggregation has two map sets, and the kernel
    writes the one the `agg_epoch` array names (read once per event).

    To print, user space names the other set, then waits until every program that may have
    read the old name has ended: BPF tracing programs run inside rcu_read_lock (with
    preemption off), and membarrier(MEMBARRIER_CMD_GLOBAL) returns after synchronize_rcu(),
    a full grace period (on one online CPU it returns at once, and no program can be running
    then). The old set is then written by no one: it is read and cleared at leisure, and an
    event is in exactly one print. Keeping deltas in user space instead would not clear keys
    (the map would only fill) and cannot undo min and max."""

    def __init__(self) -> None:
        self.current = 0

    def swap(self, bpf: Any) -> int:
        """Make the other set current; return the old one, which no program writes now."""
        old, self.current = self.current, 1 - self.current
        table = bpf[resources.EPOCH]
        table[table.Key(0)] = table.Leaf(self.current)
        _membarrier(MEMBARRIER_CMD_GLOBAL)
        return old


# --- bucket bounds ----------------------------------------------------------------------------


def log2_index(v: int) -> int:
    """bcc's bpf_log2l(v), the kernel's bucket of a u64 (engine.aggs.log2)."""
    return aggs.log2_index(v)


def linear_index(agg: M.Aggregation, v: int) -> int:
    """The kernel's linear bucket of a value read as s64 (emit_agg_linear.c.j2)."""
    return aggs.LINEAR.index(agg, v)


# --- printing ---------------------------------------------------------------------------------


def printed(agg: M.Aggregation, value: Any) -> int | Exact:
    """A count/sum/min/max/avg as it prints (engine.aggs: the kind's `number`). avg is the
    sum over the count, toward zero as C divides. A `print:` unit (divisor 10**d: us, ms, s
    from ns) prints the kernel's exact value with d decimals, as bcc's syscount prints TIME
    (us: 3, ms: 6): a Decimal made from the integer, never a float and never a sum of
    per-event truncations."""
    return aggs.KINDS[agg.kind].number(agg, value)


key_order = values.key_order
bucket_json = json_output.bucket_json


# The histogram text of engine.output.table, by the names its callers and tests use.
def log2_table(buckets: dict[int, int], unit: str) -> str:
    return table_output.log2_table(values.Histogram(buckets, 0, unit, values.Log2Scale()))


def linear_table(agg: M.Aggregation, buckets: dict[int, int], unit: str) -> str:
    return table_output.linear_table(values.Histogram(buckets, 0, unit, aggs.LINEAR.scale(agg)))


def bucket_rows(
    agg: M.Aggregation, buckets: dict[int, int]
) -> list[tuple[int | None, int | None, int]]:
    """(min, max, count) of each bucket from the first non-empty one to the last."""
    kind = aggs.KINDS[agg.kind]
    assert isinstance(kind, aggs.Histogram)
    return values.Histogram(buckets, 0, "", kind.scale(agg)).rows()


class AggregatePrinter:
    """Prints every active aggregation of a Program in one format (engine.output.RENDERERS):
    each read becomes values (a Table of the plain aggregations, Histograms), rendered."""

    def __init__(
        self,
        program: M.Program,
        fmt: str,
        out: TextIO,
        state: decoders.State,
        sort: str = "",
        top: int = 0,
        intervals: bool = False,
        clock: bool = False,
    ):
        fields = {f.name: f for f in program.fields}
        self.derived = program.derived
        self.intervals = intervals  # --interval: each print is stamped (Renderer.stamp)
        self.clock = clock
        self.printed = 0
        self.sort = sort  # an aggregation's name or header (any case): --sort
        self.top = top
        self.fields = fields
        self.renderer = RENDERERS[fmt]
        self.out = out
        self.readers = [Reader(s, fields, state) for s in program.aggregations]
        self.epochs = Epochs() if program.epochs > 1 else None

    def print(self, bpf: Any, clear: bool = False) -> None:
        """Every aggregation; plain ones keyed by the same fields share one table, a column
        each (syscount -L prints COUNT and TIME side by side). `clear` (a Program bound with
        clear=True) prints the map set the kernel wrote since the last print, then clears it."""
        parts: list[str] = []
        groups: dict[tuple[str, ...], list[tuple[M.AggSink, list[Series]]]] = {}
        if clear and self.epochs is None:
            raise ValueError("clearing needs a Program bound with clear=True (two map sets)")
        epoch = self.epochs.swap(bpf) if clear and self.epochs is not None else 0
        for reader in self.readers:
            series = reader.read(bpf, epoch)
            if reader.kind.histogram:
                parts.append(self.render_hist(reader.sink, series))
            else:
                by = tuple(c.field for c in reader.sink.by)
                groups.setdefault(by, []).append((reader.sink, series))
            if clear:
                reader.clear(bpf, epoch)
        parts[:0] = [self.render_table(group) for group in groups.values()]
        if self.intervals:
            self.printed += 1
            parts.insert(0, self.renderer(()).stamp(self.printed, self.clock))
        self.out.write("".join(parts))
        self.out.flush()

    def render_table(self, group: list[tuple[M.AggSink, list[Series]]]) -> str:
        """One row per key, one column per aggregation, sorted by the first (descending), or
        by --sort's; --top keeps the largest rows."""
        table = aggregate_table(group, self.fields, self.derived)
        keys = tuple(range(len(group[0][0].by)))
        names = {s.agg.name for s, _ in group}
        shown = [(s.agg.name, s.agg.header) for s, _ in group if not s.agg.hide]
        shown += [(d.name, d.header) for d in self.derived if set(d.refs) <= names]
        column = next((i for i, c in enumerate(shown) if M.answers_to(c, self.sort)), 0) + len(keys)
        order = values.Order(column=column, natural=keys, top=self.top)
        return self.renderer(()).table(table, order)

    def render_hist(self, sink: M.AggSink, series: list[Series]) -> str:
        agg = sink.agg
        kind = sink.kind
        assert isinstance(kind, aggs.Histogram)
        names = [c.field for c in sink.by]
        labels = tuple(c.label or c.field for c in sink.by)  # `by: [{field, header}]`
        keyed = []
        for s in sorted(series, key=lambda s: key_order(s.key)):
            assert s.buckets is not None
            h = kind.value(agg, (s.buckets, s.total), agg.unit)
            keyed.append(values.Keyed(tuple(zip(names, s.key)), h, labels))
        return self.renderer(()).histograms(agg.name, labels, keyed)


def aggregate_table(
    group: list[tuple[M.AggSink, list[Series]]],
    fields: dict[str, M.Field],
    derived: tuple[M.Derived, ...] = (),
) -> values.Table:
    """Aggregations keyed by the same fields as one Table: the key columns, then a column
    per aggregation (a key one of them lacks shows 0 there)."""
    decimal = {n: decoders.REGISTRY[f.decoder].decimal for n, f in fields.items()}
    cols = [
        values.Column(
            c.field, c.header, c.width, decimal[c.field], fields[c.field].decoder in STACK_DECODERS
        )
        for c in group[0][0].by
    ]
    rows: dict[tuple[Any, ...], list[values.Cell]] = {}
    raw: dict[tuple[Any, ...], dict[str, int]] = {}  # the kernel's values, for derived columns
    for n, (sink, series) in enumerate(group):
        agg = sink.agg
        width = 16 if agg.divisor != 1 else 8  # bcc's syscount: %8d COUNT, %16.3f TIME
        cols.append(values.Column(agg.header.lower(), agg.header, max(len(agg.header), width)))
        for s in series:
            row = rows.setdefault(s.key, [values.Number(0)] * len(group))
            row[n] = values.Number(printed(agg, s.value))
            raw.setdefault(s.key, {})[agg.name] = s.value
    names = {sink.agg.name for sink, _ in group}
    here = [d for d in derived if set(d.refs) <= names]
    for d in here:
        cols.append(values.Column(d.header.lower(), d.header, d.width))
    keep = [i for i, (sink, _) in enumerate(group) if not sink.agg.hide]
    nkeys = len(group[0][0].by)
    table_rows = tuple(
        (
            *key,
            *(vals[i] for i in keep),
            *(values.Number(derive.evaluate(d.expr, raw.get(key, {}))) for d in here),
        )
        for key, vals in rows.items()
    )
    shown = cols[:nkeys] + [cols[nkeys + i] for i in keep] + cols[nkeys + len(group) :]
    return values.Table(tuple(shown), table_rows, keys=nkeys)
