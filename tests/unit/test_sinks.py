"""Aggregation printing (engine.runtime.sinks): log2 tables byte for byte as bcc's own
print_log2_hist (called on the same counts), linear tables, per-key headers, JSON buckets as
bpftrace -f json writes them, CSV rows, and the count/sum/min/max/avg tables."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import random
import types

import pytest

from engine.plan import model as M
from engine.plan import planner
from engine.plan.bind import bind
from engine.runtime import decoders, sinks
from engine.spec.loader import load_text

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = str(ROOT / "tests" / "fixtures" / "btf" / "linux-6.18.44-fc.btf.xz")

SPEC = """\
name: t
probes:
  - name: p
    attach:
      - tracepoint: sock/inet_sock_set_state
    fields:
      port: args.sport
      state: {value: args.newstate, decode: {enum: TCP_ESTABLISHED}}
      delta: args.dport
output:
  aggregations:
    - {hist: delta, by: [port], unit: usecs}
    - {name: lin, lhist: {value: delta, min: 0, max: 100, step: 10}}
    - {name: one, lhist: {value: delta, min: 0, max: 8, step: 1}}
    - {count: true, by: [port, state], header: EVENTS}
    - {avg: delta, by: [port]}
"""


def printer(fmt: str) -> tuple[sinks.AggregatePrinter, M.Program]:
    program = bind(planner.plan(load_text(SPEC, "t.yaml"), FIXTURE))
    return sinks.AggregatePrinter(program, fmt, io.StringIO(), decoders.State()), program


def sink(program: M.Program, name: str) -> M.AggSink:
    return next(s for s in program.aggregations if s.agg.name == name)


def bcc_table() -> types.ModuleType:
    """bcc's own printers, the reference of two tests: only those skip without python3-bpfcc
    (the rest of this file is pure Python and runs everywhere)."""
    return pytest.importorskip("bcc.table", reason="bcc's Python module (python3-bpfcc)")


def bcc_log2(vals: list[int], unit: str) -> str:
    table = bcc_table()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        table._print_log2_hist(vals, unit, None)
    return buf.getvalue()


def bcc_linear(vals: list[int], unit: str) -> str:
    table = bcc_table()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        table._print_linear_hist(vals, unit, None)
    return buf.getvalue()


def test_log2_table_is_bccs_byte_for_byte() -> None:
    rng = random.Random(7)
    cases = [[0] * 65 for _ in range(4)]
    cases[1][1] = 5  # only the first bucket
    cases[2][0] = 9  # bucket 0 (never used by bpf_log2l): bcc prints nothing
    cases[3][33], cases[3][64] = 1, 1  # the wide layout
    for _ in range(2000):
        vals = [0] * 65
        for _ in range(rng.randint(1, 8)):
            i = rng.choice([1, 2, 3, 10, 31, 32, 33, 63, 64, rng.randint(1, 64)])
            vals[i] = rng.choice([1, 2, 3, 39, 40, 41, 10**9, rng.randint(1, 10**6)])
        cases.append(vals)
    for vals in cases:
        mine = sinks.log2_table({i: v for i, v in enumerate(vals) if v}, "usecs")
        assert mine == bcc_log2(vals, "usecs"), vals
    assert sinks.log2_table({3: 4, 1: 2}, "msecs") == (
        "     msecs               : count     distribution\n"
        "         0 -> 1          : 2        |********************                    |\n"
        "         2 -> 3          : 0        |                                        |\n"
        "         4 -> 7          : 4        |****************************************|\n"
    )


def test_log2_index_is_bpf_log2l_and_bounds_hold_it() -> None:
    values = [0, 1, 2, 3, 4, 7, 8, 1023, 1024, 2**32, 2**63, 2**64 - 1]
    assert [sinks.log2_index(v) for v in values] == [1, 1, 2, 2, 3, 3, 4, 10, 11, 33, 64, 64]
    for v in values:
        low, high = sinks.log2_bounds(sinks.log2_index(v))
        assert low <= v <= high
    assert sinks.log2_bounds(1) == (0, 1) and sinks.log2_bounds(64) == (2**63, 2**64 - 1)


def test_linear_step_one_is_bccs_print_linear_hist() -> None:
    _, program = printer("table")
    agg = sink(program, "one").agg
    rng = random.Random(3)
    for _ in range(300):
        vals = [0] * 8
        for _ in range(rng.randint(1, 5)):
            vals[rng.randint(0, 7)] = rng.randint(1, 1000)
        buckets = {sinks.linear_index(agg, v): n for v, n in enumerate(vals) if n}
        assert sinks.linear_table(agg, buckets, "value") == bcc_linear(vals, "value"), vals


def test_linear_buckets_and_table() -> None:
    _, program = printer("table")
    agg = sink(program, "lin").agg
    assert [sinks.linear_index(agg, v) for v in (-5, 0, 9, 10, 99, 100, 2**64 - 1)] == [
        0, 1, 1, 2, 10, 11, 0,  # 2**64 - 1 is -1 as an s64
    ]  # fmt: skip
    assert [sinks.linear_bounds(agg, i) for i in (0, 1, 10, 11)] == [
        (None, -1), (0, 9), (90, 99), (100, None)
    ]  # fmt: skip
    assert sinks.linear_table(agg, {0: 1, 2: 2, 11: 1}, "ms") == (
        "     ms                  : count     distribution\n"
        "< 0                      : 1        |********************                    |\n"
        "         0 -> 9          : 0        |                                        |\n"
        "        10 -> 19         : 2        |****************************************|\n"
        + "".join(
            f"{lo:10d} -> {lo + 9:<10d} : 0        |{' ' * 40}|\n" for lo in range(20, 100, 10)
        )
        + ">= 100                   : 1        |********************                    |\n"
    )


def series(key: tuple[object, ...], buckets: dict[int, int], total: int) -> sinks.Series:
    return sinks.Series(key, buckets=buckets, total=total)


def test_histogram_per_key_sorted_numerically_with_a_header() -> None:
    p, program = printer("table")
    hist = sink(program, "hist")
    text = p.render_hist(hist, [series((10,), {2: 1}, 3), series((9,), {1: 2}, 1)])
    assert text == (
        "\nport = 9\n"
        "     usecs               : count     distribution\n"
        "         0 -> 1          : 2        |****************************************|\n"
        "\nport = 10\n"
        "     usecs               : count     distribution\n"
        "         0 -> 1          : 0        |                                        |\n"
        "         2 -> 3          : 1        |****************************************|\n"
    )


def test_histogram_json_is_bpftraces_bucket_shape() -> None:
    """Buckets from the first non-empty to the last, empty ones between kept; max inclusive;
    an unbounded side has no key (bpftrace: {"max": -1, "count": 1} below an lhist's min)."""
    p, program = printer("json")
    text = p.render_hist(sink(program, "hist"), [series((80,), {1: 1, 4: 2}, 17)])
    assert json.loads(text) == {
        "aggregation": "hist", "port": 80, "unit": "usecs",
        "buckets": [
            {"min": 0, "max": 1, "count": 1}, {"min": 2, "max": 3, "count": 0},
            {"min": 4, "max": 7, "count": 0}, {"min": 8, "max": 15, "count": 2},
        ],
        "count": 3, "sum": 17,
    }  # fmt: skip
    text = p.render_hist(sink(program, "lin"), [series((), {0: 1, 1: 1, 11: 1}, 0)])
    buckets = json.loads(text)["buckets"]
    assert buckets[0] == {"max": -1, "count": 1} and buckets[-1] == {"min": 100, "count": 1}
    assert len(buckets) == 12 and buckets[1] == {"min": 0, "max": 9, "count": 1}


def test_histogram_csv_is_one_row_per_bucket() -> None:
    p, program = printer("csv")
    text = p.render_hist(sink(program, "lin"), [series((), {0: 2, 2: 1}, 0)])
    assert text == "min,max,count\n,-1,2\n0,9,0\n10,19,1\n"
    text = p.render_hist(sink(program, "hist"), [series((7,), {3: 5}, 20)])
    assert text == "port,min,max,count\n7,4,7,5\n"


def test_count_and_avg_tables() -> None:
    p, program = printer("table")
    count = sink(program, "count")
    est, syn = "TCP_ESTABLISHED", "TCP_SYN_SENT"  # keys arrive decoded
    rows = [sinks.Series((22, est), 5), sinks.Series((80, syn), 7), sinks.Series((8, est), 5)]
    assert p.render_table([(count, rows)]) == (
        "\nPORT   STATE        EVENTS\n"  # by count, then ties by key (8 before 22)
        "80     TCP_SYN_SENT 7\n"
        "8      TCP_ESTABLISHED 5\n"
        "22     TCP_ESTABLISHED 5\n"
    )
    j, program = printer("json")
    avg = sink(program, "avg")
    text = j.render_table([(avg, [sinks.Series((1,), (-7, 2)), sinks.Series((2,), (9, 0))])])
    assert [json.loads(line) for line in text.splitlines()] == [
        {"port": 2, "delta": 0},
        {"port": 1, "delta": -3},  # C's division toward zero, as bpftrace's avg
    ]


# --- reading the maps: per-CPU merge, signedness, `other`, --clear's two map sets -------------

SIGNED = """\
name: s
probes:
  - name: p
    attach:
      - tracepoint: sock/inet_sock_set_state
    fields:
      port: args.sport
      v: args.oldstate
output:
  aggregations:
    - {name: least, header: LEAST, min: v, by: [port]}
    - {name: most, header: MOST, max: v, by: [port]}
    - {name: mean, header: MEAN, avg: v, by: [port]}
    - {name: total, header: TOTAL, sum: v, by: [port]}
    - {name: lin, lhist: {value: v, min: -100, max: 100, step: 10}, by: [port]}
"""


class Table:
    """A bcc per-CPU table as the Reader uses one: batched items, [0], clear()."""

    def __init__(self, entries: dict[bytes, list[object]]) -> None:
        self.entries = entries
        self.cleared = False

    def items_lookup_batch(self) -> list[tuple[bytes, list[object]]]:
        return list(self.entries.items())

    def __getitem__(self, index: int) -> list[object]:
        return self.entries[b"other"]

    def clear(self) -> None:
        self.cleared = True
        self.entries = {k: [] for k in self.entries}


def leaf(sink: M.AggSink, **values: object) -> object:
    """One CPU's value of the sink's struct, as bcc decodes it (ctypes, signed per C type)."""
    import ctypes

    ctype = ctypes.c_longlong if sink.value_ctype == "s64" else ctypes.c_ulonglong
    types = {"u64": ctypes.c_ulonglong, "s64": ctype}
    fields = [
        (name, types[c] * n if n else types[c]) for c, name, n in sink.members
    ]  # fmt: skip
    cls = type("Leaf", (ctypes.Structure,), {"_fields_": fields})
    out = cls()
    for name, v in values.items():
        if isinstance(v, list):
            getattr(out, name)[: len(v)] = v
        else:
            setattr(out, name, v)
    return out


def key_bytes(sink: M.AggSink, *values: int) -> bytes:
    import struct as st

    from engine.runtime.rows import struct_format

    fmt, _ = struct_format(sink.key)
    return st.pack(fmt, *values)


def reader(name: str) -> tuple[sinks.Reader, M.AggSink]:
    program = bind(planner.plan(load_text(SIGNED, "s.yaml"), FIXTURE))
    s = sink(program, name)
    fields = {f.name: f for f in program.fields}
    return sinks.Reader(s, fields, decoders.State()), s


def read(
    name: str, per_key: dict[int, list[dict[str, object]]], other: list[dict[str, object]]
) -> list[sinks.Series]:
    r, s = reader(name)
    table = Table({key_bytes(s, k): [leaf(s, **v) for v in cpus] for k, cpus in per_key.items()})
    others = Table({b"other": [leaf(s, **v) for v in other]})
    return r.read({s.map: table, f"{s.map}_other": others})


def test_min_and_max_merge_only_the_cpus_that_saw_the_key() -> None:
    """A CPU that never saw a key holds zeros (count 0): 17 stays the min, -5 the max."""
    unseen = {"value": 0, "count": 0}
    got = read("least", {1: [{"value": 17, "count": 3}, unseen]}, [unseen, unseen])
    assert [(s.key, s.value) for s in got] == [((1,), 17)]
    got = read("most", {1: [unseen, {"value": -5, "count": 3}]}, [unseen, unseen])
    assert [(s.key, s.value) for s in got] == [((1,), -5)]
    # a key no CPU has counted yet (created, not yet updated) is not a series
    assert read("least", {1: [unseen, unseen]}, [unseen, unseen]) == []


def test_other_keeps_min_and_max_of_the_folded_events() -> None:
    unseen = {"value": 0, "count": 0}
    got = read("least", {}, [{"value": -7, "count": 1}, {"value": 3, "count": 1}])
    assert [(s.key, s.value) for s in got] == [(("other",), -7)]
    got = read("most", {}, [{"value": -7, "count": 2}, unseen])
    assert [(s.key, s.value) for s in got] == [(("other",), -7)]


def test_signed_sums_and_averages() -> None:
    got = read("mean", {1: [{"sum": -7, "count": 1}, {"sum": 0, "count": 1}]}, [])
    assert [s.value for s in got] == [(-7, 2)]
    j, _ = printer("json")
    _, mean = reader("mean")
    assert json.loads(j.render_table([(mean, got)])) == {"port": 1, "mean": -3}
    r, s = reader("total")
    assert (r.signed, s.value_ctype) == (True, "s64")
    assert sinks.wrap(-5 + -107, True) == -112
    assert sinks.wrap(2**64 - 1 + 2, False) == 1  # per-CPU u64 parts wrap as their sum would
    assert sinks.wrap(2**63 + 2**63 - 1, True) == -1


def test_histogram_buckets_merge_per_cpu_with_a_signed_sum() -> None:
    cpus = [{"buckets": [0, 1, 0, 2], "sum": -112}, {"buckets": [0, 0, 0, 1], "sum": -5}]
    empty = [{"buckets": [], "sum": 0}] * 2
    got = read("lin", {9: cpus, 10: empty}, empty)
    assert [(s.key, s.buckets, s.total, s.count) for s in got] == [((9,), {1: 1, 3: 3}, -117, 4)]


def test_clear_reads_and_clears_the_set_the_kernel_no_longer_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With clear=True: two map sets; each print names the other set, waits (membarrier),
    then prints and clears the old one."""
    import ctypes

    calls: list[int] = []
    monkeypatch.setattr(sinks, "_membarrier", lambda cmd: calls.append(cmd) or 0)
    program = bind(planner.plan(load_text(SIGNED, "s.yaml"), FIXTURE), clear=True)
    assert program.epochs == 2
    total = sink(program, "total")
    assert [m.hash for m in total.map_sets] == ["agg_total", "agg_total_e1"]

    class Epoch:
        Key = ctypes.c_int
        Leaf = ctypes.c_uint

        def __init__(self) -> None:
            self.written: list[tuple[int, int]] = []

        def __setitem__(self, key: ctypes.c_int, value: ctypes.c_uint) -> None:
            self.written.append((key.value, value.value))

    epoch = Epoch()
    bpf: dict[str, object] = {"agg_epoch": epoch}
    for s in program.aggregations:
        for n, m in enumerate(s.map_sets):
            k = key_bytes(s, 1)
            v = leaf(s, value=n + 1, count=1) if s.members else n + 1
            if s.buckets:
                v = leaf(s, buckets=[0, n + 1], sum=0)
            if s.agg.kind == "avg":
                v = leaf(s, sum=n + 1, count=1)
            bpf[m.hash] = Table({k: [v]})
            bpf[m.other] = Table({b"other": []})
    p = sinks.AggregatePrinter(program, "json", io.StringIO(), decoders.State())
    p.print(bpf, clear=True)
    assert epoch.written == [(0, 1)] and calls == [sinks.MEMBARRIER_CMD_GLOBAL]
    row = {"port": 1, "least": 1, "most": 1, "mean": 1, "total": 1}
    assert json.loads(p.out.getvalue().splitlines()[0]) == row
    assert bpf["agg_total"].cleared and not bpf["agg_total_e1"].cleared  # type: ignore[attr-defined]
    p.out = io.StringIO()
    p.print(bpf, clear=True)
    assert epoch.written == [(0, 1), (0, 0)] and len(calls) == 2
    row = {"port": 1, "least": 2, "most": 2, "mean": 2, "total": 2}
    assert json.loads(p.out.getvalue().splitlines()[0]) == row
    assert bpf["agg_total_e1"].cleared  # type: ignore[attr-defined]


def test_clear_refused_where_the_kernel_has_no_global_membarrier(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """nohz_full kernels leave MEMBARRIER_CMD_GLOBAL out of the query's mask: --clear could
    not know when the kernel stopped writing a map set, so it says so before tracing."""
    from engine.errors import EngineError

    monkeypatch.setattr(sinks, "_membarrier", lambda cmd: 0b1111110)
    with pytest.raises(EngineError, match=r"--clear needs membarrier\(MEMBARRIER_CMD_GLOBAL\)"):
        sinks.check_membarrier()
    monkeypatch.setattr(sinks, "_membarrier", lambda cmd: 0b1)
    sinks.check_membarrier()


def test_membarrier_query_on_this_machine() -> None:
    """The real syscall answers the query (Linux 4.3+), so the number used is right here."""
    if sinks.SYS_MEMBARRIER.get(os.uname().machine) is None:
        pytest.skip("no membarrier number known for this architecture")
    assert sinks._membarrier(sinks.MEMBARRIER_CMD_QUERY) > 0
