"""The planner's BPF stack sum against clang: what it accepts compiles, one byte more it refuses.

For a few shapes (a tracepoint with a user string, count mode, a return probe with stashed
arguments) the test finds the largest string `size` the validator accepts, compiles that
program with bcc in a child process (clang ends its process on a too-large stack), and checks
the next size is refused. A compiler that does end the process still has its message copied to
stderr (engine.runtime.runner.captured_stderr).
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from engine.errors import SpecError
from engine.plan import planner
from engine.spec.loader import load_text

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHAPES = {
    "tracepoint": ("tracepoint: syscalls/sys_enter_openat", "args.filename", "pid: tgid", ""),
    "count": ("tracepoint: syscalls/sys_enter_openat", "args.filename", "pid: tgid", "[b, pid]"),
    "kretprobe": ("kretprobe: do_sys_openat2", "filename", "r: ret\n      d: dfd", ""),
}
COMPILE = "import bcc, sys; bcc.BPF(text=sys.stdin.read()); print('compiled')"


def spec(shape: str, size: int) -> str:
    attach, value, extra, by = SHAPES[shape]
    first = "" if by else f"      a: {{value: {value}, size: 256}}\n"
    count = f"\n  count: {{by: {by}}}" if by else ""
    return (
        f"name: stack\nprobes:\n  - name: p\n    attach:\n      - {attach}\n    fields:\n"
        f"{first}      b: {{value: {value}, size: {size}}}\n      {extra}\n"
        f"output:\n  columns: [b]{count}\n"
    )


def accepted(shape: str, size: int) -> bool:
    try:
        planner.plan(load_text(spec(shape, size), "stack.yaml"))
    except SpecError as exc:
        assert "bytes of BPF stack" in exc.problems[0].message
        return False
    return True


def rendered(shape: str, size: int) -> str:
    from engine.codegen import render
    from engine.plan.bind import bind

    plan = planner.plan(load_text(spec(shape, size), "stack.yaml"))
    return render.render_c(bind(plan, mode="count" if SHAPES[shape][3] else "events"))


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_largest_accepted_event_compiles(shape: str) -> None:
    largest = max(n for n in range(1, 257) if accepted(shape, n))
    assert largest < 256, "the shape never reaches the limit; make it larger"
    assert not accepted(shape, largest + 1)
    done = subprocess.run(
        [sys.executable, "-c", COMPILE], input=rendered(shape, largest), capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert done.stdout.strip() == "compiled", done.stderr[-2000:]


RESCUE = """
import sys
from engine.plan import planner
from engine.plan.bind import bind
from engine.runtime.runner import Session
from engine.spec.loader import load_text
planner.STACK_LIMIT = 1 << 20  # let the planner pass what clang cannot compile
plan = planner.plan(load_text(sys.stdin.read(), "stack.yaml"))
Session(bind(plan), verbose=False).load()
print("loaded")
"""


def test_a_compiler_that_ends_the_process_is_heard() -> None:
    done = subprocess.run(
        [sys.executable, "-c", RESCUE], input=spec("tracepoint", 256), capture_output=True,
        text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 1 and "loaded" not in done.stdout
    assert "engine: the compiler ended the process; it said:" in done.stderr
    assert "BPF stack limit of 512 bytes is exceeded" in done.stderr
