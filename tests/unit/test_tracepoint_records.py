"""Which record a tracepoint's `args` is, planned offline against the committed BTF fixture.

A DEFINE_EVENT event shares its class's `trace_event_raw_<class>` record, and BTF does not say
which class. Candidates that take the same argument types used to be merged to the fields they
all agree on, which for irq/softirq_entry (softirq vs kvm_pml_full, both `unsigned int`) was
nothing: `has no field 'vec'; fields:  `. The event's own argument names settle it.
"""

from __future__ import annotations

import pathlib

import pytest

from engine.errors import SpecError
from engine.kernel.btf import Btf
from engine.plan import model as M
from engine.plan import planner
from engine.plan.layout import load_btf
from engine.plan.tracepoints import RecordError, tracepoint_record
from engine.spec.loader import load_text

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = str(ROOT / "tests" / "fixtures" / "btf" / "linux-6.18.44-fc.btf.xz")


@pytest.fixture(scope="module")
def btf() -> Btf:
    return load_btf(FIXTURE)


def spec(target: str, *fields: str) -> str:
    lines = "\n".join(f"      x{i}: args.{f}" for i, f in enumerate(fields))
    return (
        "name: t\nprobes:\n  - name: p\n    attach:\n"
        f"      - tracepoint: {target}\n    fields:\n{lines}\noutput:\n  columns: [x0]\n"
    )


def plan(text: str) -> M.Plan:
    return planner.plan(load_text(text, "t.yaml"), FIXTURE)


def slot_loads(p: M.Plan) -> list[tuple[int, int]]:
    """(offset, size) of every record load of the first alternative, in field order."""
    alt = p.probes[0].alternatives[0]
    return [
        (s.offset, s.size)
        for f in alt.fields
        for s in f.steps
        if isinstance(s, M.Load) and s.base == M.Local("ctx_addr")
    ]


@pytest.mark.parametrize("event", ["softirq_entry", "softirq_exit", "softirq_raise"])
def test_softirq_events_read_vec(event: str) -> None:
    p = plan(spec(f"irq/{event}", "vec"))
    # struct trace_event_raw_softirq { struct trace_entry ent; unsigned int vec; }
    assert slot_loads(p) == [(8, 4)]
    assert p.fields[0].ctype == "u32"


@pytest.mark.parametrize("event", ["sched_wakeup", "sched_wakeup_new"])
def test_sched_wakeup_offline_says_why_it_cannot_tell(event: str) -> None:
    # Six classes take (struct task_struct *); two also name it `p`. sched_wakeup_template
    # (comm[16], pid at 24) and sched_process_template (__data_loc comm, pid at 12) share no
    # field, and BTF does not say which one the event uses (name likeness would guess right
    # here and wrong for sched/sched_wait_task): refused, with the reason, not "fields:  ".
    with pytest.raises(SpecError) as err:
        plan(spec(f"sched/{event}", "pid"))
    (problem,) = err.value.problems
    assert problem.message == (
        f"BTF does not say which record sched/{event} uses "
        "(trace_event_raw_sched_wakeup_template, trace_event_raw_sched_process_template), and "
        "they share no field; on the running kernel (as root, without --btf) tracefs settles it"
    )
    assert (problem.location.line, problem.location.col) == (5, 21)


def test_argument_names_pick_the_class(btf: Btf) -> None:
    record = tracepoint_record(btf, "irq", "softirq_entry", live=False)
    assert (record.source, record.struct, record.candidates) == (
        "btf",
        "trace_event_raw_softirq",
        (),
    )
    assert list(record.fields) == ["vec"]


def test_candidates_offer_the_fields_they_agree_on(btf: Btf) -> None:
    # block_rq and block_rq_requeue both take (struct request *rq): dev, sector and
    # nr_sector sit at the same offsets in both; the rest differ.
    record = tracepoint_record(btf, "block", "block_rq_issue", live=False)
    assert record.candidates == ("trace_event_raw_block_rq", "trace_event_raw_block_rq_requeue")
    assert list(record.fields) == ["dev", "sector", "nr_sector"]
    p = plan(spec("block/block_rq_issue", "dev", "sector", "nr_sector"))
    assert slot_loads(p) == [(8, 4), (16, 8), (24, 4)]


def test_a_field_lost_to_ambiguity_says_why() -> None:
    with pytest.raises(SpecError) as err:
        plan(spec("block/block_rq_issue", "bytes"))
    (problem,) = err.value.problems
    assert problem.message == (
        "tracepoint block/block_rq_issue has no field 'bytes'; fields: dev, sector, nr_sector "
        "(BTF does not say which of trace_event_raw_block_rq, trace_event_raw_block_rq_requeue "
        "it uses: these are the fields they agree on; on the running kernel, as root without "
        "--btf, tracefs settles it)"
    )


def test_syscalls_offline_say_where_their_fields_come_from(btf: Btf) -> None:
    with pytest.raises(RecordError) as err:
        tracepoint_record(btf, "syscalls", "sys_enter_kill", live=False)
    assert str(err.value) == (
        f"{FIXTURE} has no record of syscalls/sys_enter_kill: the syscalls/* fields come from "
        "the running kernel's tracefs, so they are checked only there (as root, without --btf)"
    )


def test_ftrace_events_are_not_tracepoints(btf: Btf) -> None:
    with pytest.raises(SpecError) as err:
        plan(spec("ftrace/function", "ip"))
    (problem,) = err.value.problems
    assert problem.message == (
        "ftrace/function is one of the function tracer's own records, not a tracepoint: "
        "BPF programs cannot attach to it"
    )
    assert (problem.location.line, problem.location.col) == (5, 21)
