"""Builtins the output names without a field (engine.plan.implicit): `by: [pid, comm]` reads
them as if each probe declared `pid: pid`; a field of that name is the spec's own. And a
field's step that acts (a take, a read that drops the event) runs even when the field is not
printed (engine.plan.bind.acts): syscount without -L still pairs its exits with enters."""

from __future__ import annotations

import pytest

from engine.codegen import render
from engine.errors import SpecError
from engine.plan import planner
from engine.plan.bind import bind
from engine.spec.loader import load_text
from tests.unit.test_arith import FIXTURE

SPEC = """\
name: t
options:
  latency: {flag: -L, type: bool}
state:
  start: {key: u32, value: u64}
probes:
  - name: enter
    attach:
      - tracepoint: sched/sched_process_fork
    store:
      start: {key: tid, value: ktime_ns}
  - name: exit
    attach:
      - tracepoint: sched/sched_process_exec
    fields:
FIELDS
output:
  aggregations:
    - {name: calls, count: true, by: BY}
    - {name: time, sum: nsecs, by: BY, if: latency}
"""


def plan(fields: str, by: str):  # type: ignore[no-untyped-def]
    text = SPEC.replace("FIELDS", fields).replace("BY", by)
    return planner.plan(load_text(text, "t.yaml"), FIXTURE)


NSECS = "      nsecs: ktime_ns - take(start, tid)"


def test_builtins_in_by_need_no_field() -> None:
    p = plan(NSECS, "[pid, comm, cpu]")
    assert [f.name for f in p.fields] == ["nsecs", "pid", "comm", "cpu"]
    assert [f.ctype for f in p.fields[1:]] == ["u32", "char", "u32"]
    c = render.render_c(bind(p))
    assert "bpf_get_current_comm(&ev.f_comm" in c and "bpf_get_smp_processor_id()" in c


def test_a_declared_field_wins() -> None:
    p = plan(NSECS + "\n      pid: tid", "[pid]")
    assert [f.name for f in p.fields] == ["nsecs", "pid"]
    c = render.render_c(bind(p))
    assert ">> 32" not in c[c.index("sched_process_exec") :]  # the spec's tid, not the tgid
    assert ">> 32" in render.render_c(bind(plan(NSECS, "[pid]")))


def test_an_unknown_name_is_still_an_error() -> None:
    with pytest.raises(SpecError, match="no field 'pidd'"):
        plan(NSECS, "[pidd]")


def test_a_take_in_an_unprinted_field_still_runs() -> None:
    p = plan(NSECS, "[pid]")
    for options in ({}, {"latency": True}):  # the sum (nsecs) off, then on
        c = render.render_c(bind(p, options=options))
        exit_fn = c[c.index("sched_process_exec") :]
        assert "state_start.delete(" in exit_fn, options
        assert "return 0; // no state stored for this key" in exit_fn, options


def test_namespace_ids_read_the_pid_at_its_level() -> None:
    """ns_pid / ns_tid: `pid->numbers[pid->level].nr`; the entry's address is computed from
    the level (numbers + level * sizeof(struct upid)), from the fixture's BTF offsets."""
    text = SPEC.replace("FIELDS", NSECS).replace("by: BY, if: latency", "if: latency")
    text = text.replace("by: BY", "by: [ns_pid, ns_tid, pid]")
    p = planner.plan(load_text(text, "t.yaml"), FIXTURE)
    assert [f.name for f in p.fields][1:] == ["ns_pid", "ns_tid", "pid"]
    assert [f.ctype for f in p.fields][1:3] == ["s32", "s32"]
    c = render.render_c(bind(p))
    assert c.count("* (u64)16ULL)") == 2  # struct upid is 16 bytes: one per id
    assert c.count("bpf_get_current_task()") == 2
