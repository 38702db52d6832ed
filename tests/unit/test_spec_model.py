"""engine.spec.model: short forms normalized, expressions parsed once, locations kept."""

from __future__ import annotations

import pathlib

from engine.spec import expr as E
from engine.spec import model
from engine.spec.loader import load_document, load_text

ROOT = pathlib.Path(__file__).resolve().parents[2]

SPEC = """\
name: t
options:
  pid: {type: u32, flag: -p/--pid}
  sw: {type: bool}
state:
  start: {key: u32, value: u64}
  pair: {key: [u32, u64], value: {ts: u64, who: comm}}
probes:
  - name: a
    attach:
      - kprobe: [f1, f2]
        where: "x > 1"
      - tracepoint: sched/sched_switch
        let:
          x: args.prev_pid
    let:
      y: x + 1
    fields:
      pid: tid
      port: {value: y, decode: be16, header: P, width: 7}
      st: {value: x, decode: {enum: TCP_CLOSE}}
    filter: $sw and pid == $pid
    store:
      start: {key: tid, value: ktime_ns}
      pair: {key: [tid, ktime_ns], value: {ts: ktime_ns, who: comm}}
    delete:
      start: tid
output:
  columns: [pid, {field: port, if: sw, header: PORT}]
  count: {by: [pid]}
  aggregations:
    - count: true
      if: sw
    - lhist: {value: port, min: 0, max: 10, step: 1}
      by: [pid]
      if: [sw]
      unless: sw
metrics:
  count: {type: counter}
"""


def build(text: str = SPEC) -> model.Spec:
    return model.build(load_text(text, "t.yaml"))


def test_field_short_and_long_forms_are_one_shape() -> None:
    pid, port, st = build().probes[0].fields
    assert (pid.name, pid.value.text, pid.decode, pid.header, pid.width) == (
        "pid", "tid", None, None, None,
    )  # fmt: skip
    assert (port.decode, port.header, port.width) == ("be16", "P", 7)
    assert (st.decode, st.enum) == ("enum", "TCP_CLOSE")
    assert isinstance(pid.value.node, E.Name)


def test_columns_short_and_long_forms() -> None:
    a, b = build().output.columns
    assert (a.field, a.when, a.header) == ("pid", "", None)
    assert (b.field, b.when, b.header) == ("port", "sw", "PORT")


def test_attach_alternatives_keep_the_kind_and_targets() -> None:
    first, second = build().probes[0].attach
    assert (first.kind, first.targets, first.listed) == ("kprobe", ("f1", "f2"), True)
    assert [at.value.col for at in first.target_ats] == [18, 22]
    assert (second.kind, second.targets, second.listed) == (
        "tracepoint",
        ("sched/sched_switch",),
        False,
    )
    assert second.target_ats == (second.kind_at,)
    assert first.where is not None and isinstance(first.where.node, E.Compare)
    assert [let.name for let in second.lets] == ["x"]


def test_state_short_forms() -> None:
    start, pair = build().states
    assert [t.type for t in start.key] == ["u32"]
    assert [(t.name, t.type) for t in start.value] == [("value", "u64")]
    assert [t.type for t in pair.key] == ["u32", "u64"]
    assert [(t.name, t.type) for t in pair.value] == [("ts", "u64"), ("who", "comm")]
    assert (start.size, start.lru) == (10240, True)


def test_stores_and_deletes() -> None:
    probe = build().probes[0]
    start, pair = probe.stores
    assert start.value.expr is not None and start.value.members == ()
    assert isinstance(pair.key.node, E.ListOf) and len(pair.key.node.items) == 2
    assert [n for n, _ in pair.value.members] == ["ts", "who"]
    (delete,) = probe.deletes
    assert (delete.map, delete.key.text) == ("start", "tid")


def test_aggregations_normalize_if() -> None:
    count, lhist = build().output.aggregations
    assert (count.kind, count.name, [s.name for s in count.when]) == ("count", "count", ["sw"])
    assert (lhist.kind, lhist.value, lhist.low, lhist.high, lhist.step) == (
        "lhist",
        "port",
        0,
        10,
        1,
    )
    assert [s.name for s in lhist.when] == ["sw"] and lhist.unless is not None
    assert lhist.value_at.value.path == "$.output.aggregations[1].lhist.value"


def test_options_and_switches_are_collected() -> None:
    spec = build()
    (pid, sw) = spec.options
    assert (pid.flag, pid.metavar, sw.flag) == ("-p/--pid", "PID", "--sw")
    assert set(spec.probes[0].filter.options) == {"sw", "pid"}  # type: ignore[union-attr]
    assert set(spec.output.switches()) == {"sw"}
    assert spec.output.count is not None and [c.field for c in spec.output.count.by] == ["pid"]
    assert [m.aggregation for m in spec.metrics] == ["count"] and spec.has_metrics


def test_locations_skip_quotes_and_shift_by_column() -> None:
    where = build().probes[0].attach[0].where
    assert where is not None
    assert (where.at.value.line, where.at.value.col, where.at.quoted) == (12, 16, 1)
    assert where.at.col().col == 17  # past the opening quote
    assert where.at.col(4).col == 21
    assert where.at.value.path == "$.probes[0].attach[0].where"
    assert build().probes[0].fields_at.key.col == 5


def test_a_parse_error_is_a_problem_and_the_node_is_none() -> None:
    spec = build(SPEC.replace("pid: tid", "pid: tid +"))
    assert spec.probes[0].fields[0].value.node is None
    (problem,) = spec.problems
    assert problem.location.line == 19


def test_every_shipped_spec_builds() -> None:
    for path in sorted((ROOT / "specs").glob("*.yaml")):
        spec = model.build(load_document(str(path)))
        assert spec.problems == () and spec.probes, path
        assert all(e.node is not None for e in spec.expressions())
