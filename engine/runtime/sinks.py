"""Reading and printing in-kernel aggregations (the `AggSink`s of a Program).

Each aggregation is a per-CPU hash, one entry per key; reading it merges the CPUs per key
(sum, min, max, sum/count for avg, bucket by bucket for histograms), decodes the key with the
same struct layout and decoders as events (engine.runtime.rows), and adds `other`, the
series of events whose key did not fit. Each kind (engine.aggs) says how CPUs merge.

A CPU's slot of a key it never saw reads as zeros (the kernel zeroes them when the key is
created), so min and max keep a count beside the value and only slots with a count merge.
Sums keep the field's signedness (an s64 for a signed field) and wrap as the C type does.
"""

# ruff: noqa: UP031 -- the tables copy bcc's printf formats, so they stay % formats
from __future__ import annotations

import ctypes
import json
import os
import struct
from dataclasses import dataclass
from typing import Any, Sequence, TextIO

from engine import aggs
from engine.errors import EngineError
from engine.plan import model as M
from engine.runtime import decoders
from engine.runtime.output import render_rows
from engine.runtime.rows import getter, struct_format

STARS = 40


# How each kind merges per-CPU values, how buckets bound, how a value prints: engine.aggs.
# The names below stay for the callers and tests that import them from here.
KINDS = aggs.KINDS
wrap = aggs.wrap
c_div = aggs.c_div
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
        out = []
        for k, per_cpu in self.items(bpf[maps.hash]):
            t = self.unpack(bytes(k))
            s = self.series(tuple(g(t) for g in self.getters), per_cpu)
            if s is not None:
                out.append(s)
        other = self.series(("other",) * len(self.sink.by), bpf[maps.other][0])
        if other is None or (self.kind.zero_is_empty and other.value == 0):
            return out  # `other` keeps no count beside a count or sum: 0 is nothing folded
        return [*out, other]

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


def _plain(v: Any) -> Any:
    """A per-CPU leaf as Python: a ctypes integer becomes an int; structs stay structs (min
    and max have a field named `value` too)."""
    return v.value if isinstance(v, ctypes._SimpleCData) else v


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
        table = bpf["agg_epoch"]
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


def bounds(agg: M.Aggregation, i: int) -> tuple[int | None, int | None]:
    kind = aggs.KINDS[agg.kind]
    assert isinstance(kind, aggs.Histogram)
    return kind.bounds(agg, i)


# --- printing ---------------------------------------------------------------------------------


def stars(val: int, val_max: int, width: int) -> str:
    """bcc's bar (table._stars): floor(width * val / val_max) stars, at most `width`."""
    return "*" * min(width, int(width * val / val_max)) if val_max else ""


def log2_table(buckets: dict[int, int], unit: str) -> str:
    """A log2 histogram byte for byte as bcc's print_log2_hist prints it (its
    table._print_log2_hist on the same bucket counts; the tests compare the two): rows from
    bucket 1 to the last non-empty one, the wide layout with 20 stars past bucket 32, nothing
    at all when no bucket past 0 holds a count."""
    idx_max = max((i for i, v in buckets.items() if v > 0), default=-1)
    if idx_max <= 0:
        return ""
    val_max = max(buckets.values())
    if idx_max <= 32:
        header, body, width = (
            "     %-19s : count     distribution",
            "%10d -> %-10d : %-8d |%-*s|",
            STARS,
        )
    else:
        header = "               %-29s : count     distribution"
        body, width = "%20d -> %-20d : %-8d |%-*s|", STARS // 2
    lines = [header % unit]
    for i in range(1, idx_max + 1):
        low, high = log2_bounds(i)
        val = buckets.get(i, 0)
        lines.append(body % (low, high, val, width, stars(val, val_max, width)))
    return "\n".join(lines) + "\n"


def linear_table(agg: M.Aggregation, buckets: dict[int, int], unit: str) -> str:
    """A linear histogram, from the bucket of `min` (or the one below it when that holds a
    count) to the last non-empty one. With step 1 each row is one value, byte for byte as
    bcc's print_linear_hist prints it (for min 0 and no value outside min..max); wider steps
    print ranges as print_log2_hist does. The outer buckets read `< min` and `>= max`."""
    idx_max = max((i for i, v in buckets.items() if v > 0), default=-1)
    if idx_max < 0:
        return ""
    val_max = max(buckets.values())
    if agg.step == 1:
        lines = ["     %-13s : count     distribution" % unit]
    else:
        lines = ["     %-19s : count     distribution" % unit]
    for i in range(0 if buckets.get(0) else 1, idx_max + 1):
        low, high = linear_bounds(agg, i)
        if low is None or high is None:
            text = f"< {agg.low}" if low is None else f">= {agg.high}"
            label = ("        %-10s" if agg.step == 1 else "%-24s") % text
        elif agg.step == 1:
            label = "        %-10d" % low
        else:
            label = "%10d -> %-10d" % (low, high)
        val = buckets.get(i, 0)
        lines.append("%s : %-8d |%-*s|" % (label, val, STARS, stars(val, val_max, STARS)))
    return "\n".join(lines) + "\n"


def bucket_rows(
    agg: M.Aggregation, buckets: dict[int, int]
) -> list[tuple[int | None, int | None, int]]:
    """(min, max, count) of each bucket from the first non-empty one to the last, the empty
    ones between included (as bpftrace's JSON lists them); max is inclusive, None unbounded."""
    full = [i for i, v in buckets.items() if v > 0]
    if not full:
        return []
    return [(*bounds(agg, i), buckets.get(i, 0)) for i in range(min(full), max(full) + 1)]


def bucket_json(low: int | None, high: int | None, count: int) -> dict[str, int]:
    """A bucket as bpftrace -f json writes one: an unbounded side has no key."""
    obj = {} if low is None else {"min": low}
    if high is not None:
        obj["max"] = high
    obj["count"] = count
    return obj


def printed(agg: M.Aggregation, value: Any) -> int | Exact:
    """A count/sum/min/max/avg as it prints (engine.aggs: the kind's `number`). avg is the
    sum over the count, toward zero as C divides. A `print:` unit (divisor 10**d: us, ms, s
    from ns) prints the kernel's exact value with d decimals, as bcc's syscount prints TIME
    (us: 3, ms: 6): a Decimal made from the integer, never a float and never a sum of
    per-event truncations."""
    return aggs.KINDS[agg.kind].number(agg, value)


def key_order(key: tuple[Any, ...]) -> tuple[tuple[int, Any], ...]:
    """Sorts keys naturally: numbers by value (pid 9 before pid 10), then text."""
    return tuple((0, k) if isinstance(k, (int, float)) else (1, str(k)) for k in key)


class AggregatePrinter:
    """Prints every active aggregation of a Program in table, json or csv."""

    def __init__(self, program: M.Program, fmt: str, out: TextIO, state: decoders.State):
        fields = {f.name: f for f in program.fields}
        self.fields = fields
        self.fmt = fmt
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
        self.out.write("".join(parts))
        self.out.flush()

    def render_table(self, group: list[tuple[M.AggSink, list[Series]]]) -> str:
        """One row per key, one column per aggregation, sorted by the first (descending)."""
        by = group[0][0].by
        cols = [
            (c.field, c.header, c.width, decoders.REGISTRY[self.fields[c.field].decoder].decimal)
            for c in by
        ]
        values: dict[tuple[Any, ...], list[Any]] = {}
        for n, (sink, series) in enumerate(group):
            agg = sink.agg
            width = 16 if agg.divisor != 1 else 8  # bcc's syscount: %8d COUNT, %16.3f TIME
            cols.append((agg.header.lower(), agg.header, max(len(agg.header), width), False))
            for s in series:
                row = values.setdefault(s.key, [0] * len(group))
                row[n] = printed(agg, s.value)
        rows = sorted(values.items(), key=lambda kv: key_order(kv[0]))  # ties in key order
        rows.sort(key=lambda kv: kv[1][0], reverse=True)
        text = render_rows(self.fmt, cols, [[*key, *vals] for key, vals in rows])
        return ("\n" + text) if self.fmt == "table" else text

    def render_hist(self, sink: M.AggSink, series: list[Series]) -> str:
        agg = sink.agg
        names = [c.field for c in sink.by]
        series = sorted(series, key=lambda s: key_order(s.key))
        if self.fmt == "json":
            lines = []
            for s in series:
                assert s.buckets is not None
                obj: dict[str, Any] = {"aggregation": agg.name, **dict(zip(names, s.key))}
                obj["unit"] = agg.unit
                obj["buckets"] = [bucket_json(*b) for b in bucket_rows(agg, s.buckets)]
                obj["count"] = s.count
                obj["sum"] = s.total
                lines.append(json.dumps(obj, separators=(",", ":")) + "\n")
            return "".join(lines)
        if self.fmt == "csv":
            cols = [(n, n, 0, False) for n in names] + [
                ("min", "min", 0, False), ("max", "max", 0, False), ("count", "count", 0, False)
            ]  # fmt: skip
            rows = []
            for s in series:
                assert s.buckets is not None
                for low, high, n in bucket_rows(agg, s.buckets):
                    rows.append(
                        [*s.key, "" if low is None else low, "" if high is None else high, n]
                    )
            return render_rows("csv", cols, rows)
        out = []
        for s in series:
            assert s.buckets is not None
            head = ", ".join(f"{h} = {v}" for h, v in zip(names, s.key))
            table = (
                log2_table(s.buckets, agg.unit)
                if sink.kind is aggs.LOG2
                else linear_table(agg, s.buckets, agg.unit)
            )
            out.append(("\n" + head + "\n" if head else "\n") + table)
        return "".join(out)
