"""`engine explain` on events whose record only tracefs has (the syscalls/* events): it lists
the fields a spec can read, says they come from tracefs, and validate agrees (needs root:
tracefs is readable only by root)."""

from __future__ import annotations

import io

import pytest

from engine.errors import SpecError
from engine.kernel import tracefs
from engine.plan import planner
from engine.spec.loader import load_text
from engine.verbs.explain import run_explain

pytestmark = pytest.mark.kernel


@pytest.fixture(autouse=True)
def live_tracefs() -> None:
    try:
        tracefs.events_dir()
    except tracefs.TracefsError as exc:
        pytest.skip(f"tracefs unreadable: {exc}")


def explain(target: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    out = io.StringIO()
    code = run_explain(target, None, False, out)
    lines = [" ".join(line.split()) for line in out.getvalue().splitlines()]
    return code, lines, capsys.readouterr().err


def test_syscall_fields_come_from_tracefs(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = explain("syscalls/sys_enter_kill", capsys)
    assert (code, err) == (0, "")
    assert lines[:5] == [
        "tracepoint syscalls/sys_enter_kill: from tracefs "
        "(events/syscalls/sys_enter_kill/format; BTF has no trace_event_raw_* record of it)",
        "OFFSET SIZE FIELD TYPE IN A SPEC",
        "8 4 __syscall_nr int args.__syscall_nr",
        "16 4 pid pid_t args.pid (in a slot of 8 bytes)",
        "24 4 sig int args.sig (in a slot of 8 bytes)",
    ]


def test_user_pointers_say_how_to_read_them(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = explain("syscalls/sys_enter_openat", capsys)
    assert code == 0
    assert "24 8 filename const char * args.filename (user memory: decode: str)" in lines


def test_validate_agrees(capsys: pytest.CaptureFixture[str]) -> None:
    text = (
        "name: t\nprobes:\n  - name: p\n    attach:\n      - tracepoint: syscalls/sys_enter_kill\n"
        "    fields:\n      a: args.pid\n      b: args.sig\n      c: args.__syscall_nr\n"
        "output:\n  columns: [a, b, c]\n"
    )
    plan = planner.plan(load_text(text, "t.yaml"))
    assert [(f.name, f.ctype) for f in plan.fields] == [("a", "s32"), ("b", "s32"), ("c", "s32")]
    with pytest.raises(SpecError) as err:
        planner.plan(load_text(text.replace("args.sig", "args.signal"), "t.yaml"))
    assert err.value.problems[0].message == (
        "tracepoint syscalls/sys_enter_kill has no field 'signal'; "
        "fields: __syscall_nr, pid, sig; did you mean 'sig'?"
    )
