"""The planner and `engine explain` on the running kernel: BTF and tracefs together.

The unit tests plan against the committed BTF fixture, which never reads tracefs. Here the
live plan (no --btf) must read each tracepoint field at the offset the kernel's own tracefs
format file gives, and explain must consult tracefs where BTF has no record (syscalls/*).
"""

from __future__ import annotations

import io
import os
import pathlib

import pytest

from engine.codegen.render import render_c
from engine.kernel import tracefs
from engine.kernel.btf import VMLINUX
from engine.plan import model as M
from engine.plan import planner
from engine.plan.bind import bind
from engine.plan.shapes import option_shapes
from engine.spec.loader import load_document
from engine.verbs.explain import run_explain
from tests.live_specs import needs_live_kernel

pytestmark = pytest.mark.kernel
ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def live() -> None:
    if not os.path.exists(VMLINUX):
        pytest.skip(f"{VMLINUX} is absent: kernel built without CONFIG_DEBUG_INFO_BTF")
    try:
        tracefs.events_dir()
    except tracefs.TracefsError as exc:
        pytest.skip(f"tracefs unreadable (needs root): {exc}")


def test_tracepoint_loads_match_tracefs(live: None) -> None:
    """tcpconnect's tracepoint alternative reads skaddr, protocol and the states at the
    offsets and sizes tracefs declares on this kernel."""
    plan = planner.plan(load_document(str(ROOT / "specs" / "tcpconnect.yaml")))
    alt = plan.probes[0].alternatives[1]
    assert alt.kind == "tracepoint"
    fmt = tracefs.read_format("sock", "inet_sock_set_state")
    declared = {(f.offset, f.size) for f in fmt.fields}
    ctx = M.Local("ctx_addr")
    loads = [s for s in planner.iter_steps(alt) if isinstance(s, M.Load) and s.base == ctx]
    assert loads, "the tracepoint alternative reads nothing from its record"
    assert {(s.offset, s.size) for s in loads} <= declared
    skaddr = fmt.field("skaddr")
    assert skaddr is not None
    assert [s.offset for s in loads if s.size == 8] == [skaddr.offset]


def test_explain_shared_class_event_lists_its_fields(
    live: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """sched/sched_wakeup is a DEFINE_EVENT: on the live kernel tracefs settles its record
    (moved from the unit tests, where a BTF file alone leaves the class open)."""
    out = io.StringIO()
    assert run_explain("sched/sched_wakeup", None, False, out) == 0
    comm = tracefs.read_format("sched", "sched_wakeup").field("comm")
    assert comm is not None
    rows = [" ".join(line.split()) for line in out.getvalue().splitlines()]
    assert f"{comm.offset} 16 comm char[16] args.comm (a string)" in rows
    assert capsys.readouterr().err == ""


def test_explain_defaults_to_the_running_kernel(capsys: pytest.CaptureFixture[str]) -> None:
    if not os.path.exists(VMLINUX):
        pytest.skip(f"{VMLINUX} is absent: kernel built without CONFIG_DEBUG_INFO_BTF")
    out = io.StringIO()
    assert run_explain("struct sock_common", None, False, out) == 0
    assert out.getvalue().startswith("struct sock_common (")
    assert capsys.readouterr().err == ""


LIVE_SPECS = [p for p in sorted((ROOT / "specs").glob("*.yaml")) if needs_live_kernel(p)]


@pytest.mark.parametrize("path", LIVE_SPECS, ids=[p.name for p in LIVE_SPECS])
def test_live_specs_plan_and_render_here(live: None, path: pathlib.Path) -> None:
    """specs/ marked `# live:` (syscalls/* records: tracefs only), which the offline tests
    leave out, plan and render on the running kernel in every option shape."""
    plan = planner.plan(load_document(str(path)))
    for shape in option_shapes(plan):
        assert "int p0_" in render_c(bind(plan, options=shape.values))


def test_there_are_live_specs_in_specs() -> None:
    assert {p.name for p in LIVE_SPECS} >= {"opensnoop.yaml"}
