"""The planner's BPF stack sum against clang: what it accepts compiles, a little more does not.

For each shape (a tracepoint with a user string, count mode, a count key string copied from
past a number, a return probe with stashed arguments, aggregation keys switched on by an
option, a `by` column switched on by one, a histogram's key, a state value of task names
stored and copied out) the test finds the largest size the validator accepts, compiles that
program with bcc in a child process (clang ends its process on a too-large stack) in the shape
that needs the most stack, and checks the next size is refused. Then it compiles the program
9 bytes past the accepted one and expects clang's stack error: the planner's sum is within one
8-byte slot of what clang sees. A compiler that does end the process still has its message
copied to stderr (engine.runtime.runner.captured_stderr).
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest

from engine.errors import SpecError
from engine.plan import planner
from engine.plan.passes import limits
from engine.spec.loader import load_text
from engine.spec.schema import check_schema

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

ROOT = pathlib.Path(__file__).resolve().parents[2]
COMPILE = "import bcc, sys; bcc.BPF(text=sys.stdin.read()); print('compiled')"
OVER_STACK = "BPF stack limit of 512 bytes is exceeded"
SWITCH = "options:\n  wide: {flag: --wide, type: bool}\n"


def one_probe(attach: str, fields: str, output: str, head: str = "") -> Callable[[int], str]:
    """A spec with one probe; `{n}` in its text is the size being searched."""

    def spec(n: int) -> str:
        return (
            f"name: stack\n{head}probes:\n  - name: p\n    attach:\n      - {attach}\n"
            f"    fields:\n{fields.format(n=n)}output:\n{output}"
        ).replace("BY", "{field: b, if: wide}")

    return spec


def states(n: int) -> str:
    """Eight task names (the most a state value holds) stored by one probe, taken and copied
    out by another, beside string fields of 128 and `n` bytes (each probe sets every printed
    field)."""
    names = ", ".join(f"c{i}: comm" for i in range(8))
    return (
        f"name: stack\nstate:\n  st: {{key: u32, value: {{{names}}}}}\nprobes:\n"
        f"  - name: a\n    attach:\n      - {OPENAT}\n"
        f"    fields:\n      a: {{value: args.filename, size: 128}}\n"
        f"      b: {{value: args.filename, size: {n}}}\n      c: comm\n"
        f"    store:\n      st: {{key: tid, value: {{{names}}}}}\n"
        f"  - name: b\n    attach:\n      - {OPENAT}\n"
        f"    let:\n      s: take(st, tid)\n    fields:\n"
        f"      b: {{value: args.filename, size: {n}}}\n      c: s.c7\n"
        f"output:\n  columns: [b, c]\n"
    )


OPENAT = "tracepoint: syscalls/sys_enter_openat"
STRING = "      b: {{value: args.filename, size: {n}}}\n      pid: tgid\n"
BIG = "      a: {{value: args.filename, size: 256}}\n"


@dataclass
class Shape:
    spec: Callable[[int], str]
    count: bool = False  # -c
    options: dict[str, Any] = field(default_factory=dict)
    over: int = 9  # past the largest accepted size by this much, clang refuses (slack < 1 slot)


SHAPES = {
    "tracepoint": Shape(one_probe(OPENAT, BIG + STRING, "  columns: [b]\n")),
    "count": Shape(
        one_probe(OPENAT, STRING, "  columns: [b]\n  count: {by: [b, pid]}\n"), count=True
    ),
    "count-key-after-a-number": Shape(
        one_probe(OPENAT, "      cpu: cpu\n" + STRING, "  columns: [b]\n  count: {by: [b]}\n"),
        count=True,
    ),
    "kretprobe": Shape(
        one_probe(
            "kretprobe: do_sys_openat2",
            "      a: {{value: filename, size: 256}}\n      b: {{value: filename, size: {n}}}\n"
            "      r: ret\n      d: dfd\n",
            "  columns: [b]\n",
        )
    ),
    "aggregation-switched": Shape(
        one_probe(
            OPENAT, STRING, "  aggregations:\n    - {count: true, by: [b], if: wide}\n", SWITCH
        ),
        options={"wide": True},
    ),
    "by-column-switched": Shape(
        one_probe(OPENAT, STRING, "  aggregations:\n    - {sum: pid, by: [pid, BY]}\n", SWITCH),
        options={"wide": True},
    ),
    "histogram-key": Shape(
        one_probe(OPENAT, STRING, "  aggregations:\n    - {hist: pid, by: [b]}\n"),
    ),
    "state-values": Shape(states),
}


def accepted(shape: str, size: int) -> bool:
    document = load_text(SHAPES[shape].spec(size), "stack.yaml")
    assert check_schema(document) == []
    try:
        planner.plan(document)
    except SpecError as exc:
        assert "bytes of BPF stack" in exc.problems[0].message, exc.problems[0].message
        return False
    return True


def rendered(shape: str, size: int) -> str:
    """The program in the shape's mode and options, planned past the limit if need be."""
    from engine.codegen import render
    from engine.plan.bind import bind

    s = SHAPES[shape]
    limit = limits.STACK_LIMIT
    limits.STACK_LIMIT = 1 << 20
    try:
        plan = planner.plan(load_text(s.spec(size), "stack.yaml"))
    finally:
        limits.STACK_LIMIT = limit
    return render.render_c(bind(plan, count=s.count, options=s.options))


def compile_c(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", COMPILE], input=text, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_largest_accepted_compiles_and_a_little_more_does_not(shape: str) -> None:
    s = SHAPES[shape]
    largest = max(n for n in range(1, 257) if accepted(shape, n))
    assert largest < 256, "the shape never reaches the limit; make it larger"
    assert not accepted(shape, largest + 1)
    done = compile_c(rendered(shape, largest))
    assert done.stdout.strip() == "compiled", done.stderr[-2000:]
    over = compile_c(rendered(shape, largest + s.over))
    assert "compiled" not in over.stdout and OVER_STACK in over.stderr, over.stderr[-2000:]


RESCUE = """
import sys
from engine.plan import planner
from engine.plan.bind import bind
from engine.plan.passes import limits
from engine.runtime.runner import Session
from engine.spec.loader import load_text
limits.STACK_LIMIT = 1 << 20  # let the planner pass what clang cannot compile
plan = planner.plan(load_text(sys.stdin.read(), "stack.yaml"))
Session(bind(plan), verbose=False).load()
print("loaded")
"""


def test_a_compiler_that_ends_the_process_is_heard() -> None:
    done = subprocess.run(
        [sys.executable, "-c", RESCUE], input=SHAPES["tracepoint"].spec(256), capture_output=True,
        text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 1 and "loaded" not in done.stdout
    assert "engine: the compiler ended the process; it said:" in done.stderr
    assert OVER_STACK in done.stderr
