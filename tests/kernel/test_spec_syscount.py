"""`specs/syscount.yaml` against bcc's own syscount, on the same traffic at the same time.

A child waits until both tools trace it, then makes 777 getppid() calls and exits. Both
must count exactly 777 for getppid; with -L the latency sum sits in one table with the counts
as bcc prints it, and the engine's TIME(us) is bcc's, within the tolerance two tools timing the
same calls need (see test_latency_sum_is_bccs)."""

from __future__ import annotations

import subprocess
import sys

import procs
import pytest
from conftest import CHILD_TIMEOUT
from oracle import BccTool

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/syscount.yaml"
N = 777


def start_child(n: int = N) -> subprocess.Popen[str]:
    child = f"import os, sys\nsys.stdin.readline()\nfor _ in range({n}):\n    os.getppid()\n"
    return procs.spawn(
        [sys.executable, "-I", "-c", child], stdin=subprocess.PIPE, text=True, cwd="/"
    )


def test_counts_equal_bccs_syscount(engine) -> None:
    child = start_child()
    try:
        bcc = BccTool("syscount-bpfcc", "-p", str(child.pid), "-T", "500")
        e = engine(SPEC, "-p", str(child.pid), "-o", "json")
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.wait(CHILD_TIMEOUT) == 0
        result = e.stop()
        out = bcc.stop()
    finally:
        child.kill()
        if child.stdin is not None:
            child.stdin.close()
    assert result.code == 0, result.stderr
    ours = {r["syscall"]: r["count"] for r in result.json_rows()}
    theirs = {}
    for line in out:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            theirs[parts[0]] = int(parts[1])
    assert ours["getppid"] == N
    assert theirs["getppid"] == N
    assert ours["getppid"] == theirs["getppid"]


def test_latency_sits_next_to_the_count(engine) -> None:
    child = start_child()
    try:
        e = engine(SPEC, "-p", str(child.pid), "-L")
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.wait(CHILD_TIMEOUT) == 0
        result = e.stop()
    finally:
        child.kill()
        if child.stdin is not None:
            child.stdin.close()
    assert result.code == 0, result.stderr
    lines = result.out_lines
    header = next(ln for ln in lines if ln.startswith("SYSCALL"))
    assert header.split() == ["SYSCALL", "COUNT", "TIME(us)"]
    row = next(ln.split() for ln in lines if ln.startswith("getppid "))
    assert int(row[1]) == N
    assert float(row[2]) >= 0 and "." in row[2]  # ns digits: 3 decimals in us


# Calls enough for a total of milliseconds (tens with -m, so the engine's whole milliseconds
# are within a few percent of bcc's decimals): a traced getppid() takes well under a
# microsecond to a few between one tool's probes, so the sum is far from either tool's rounding.
N_TIMED = {"us": 20000, "ms": 100000}
# Both tools time the same calls, each from its own sys_enter probe to its own sys_exit probe,
# so a preemption or interrupt in a call lands in both sums. What differs is probe work: the
# programs on one tracepoint run one after the other, so each tool's interval holds part of
# the other's probes, and each has its own ktime/map costs. That is a small share of every call,
# not a factor: measured on the 2-CPU build machine under load, engine/bcc was 1.03 .. 1.05
# (about 12,300 us against 11,760 us). The bound allows that overhead gap to grow several times
# on another kernel or machine; the per-event truncation it guards against gave 0.05 there
# (646 us against 12,307 us) and 0.31 .. 0.39 in the report.
RATIO = (0.75, 1.33)


@pytest.mark.parametrize("unit", ["us", "ms"])
def test_latency_sum_is_bccs(engine, unit: str) -> None:
    """syscount -L (and -L -m): the engine's TIME for getppid against bcc's `syscount -L` on
    the same calls of one child. bcc sums nanoseconds and divides the total once; so must the
    spec (its `print: us` / `print: ms`)."""
    n = N_TIMED[unit]
    flags = ["-L", "-m"] if unit == "ms" else ["-L"]
    child = start_child(n)
    try:
        bcc = BccTool("syscount-bpfcc", "-p", str(child.pid), "-T", "500", *flags)
        e = engine(SPEC, "-p", str(child.pid), *flags, "-o", "json")
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.wait(CHILD_TIMEOUT * 2) == 0
        result = e.stop()
        out = "".join(f"{line}\n" for line in bcc.stop())
    finally:
        child.kill()
        if child.stdin is not None:
            child.stdin.close()
    assert result.code == 0, result.stderr
    assert f"TIME ({unit})" in out, out
    ours = next(r for r in result.json_rows() if r["syscall"] == "getppid")
    theirs = next(ln.split() for ln in out.splitlines() if ln.startswith("getppid "))
    assert ours["count"] == int(theirs[1]) == n
    engine_t, bcc_t = ours[f"time({unit})"], float(theirs[2])
    assert isinstance(engine_t, float)  # ns resolution: 3 decimals in us, 6 in ms, as bcc
    print(f"getppid x{n}: engine {engine_t} {unit}, bcc {bcc_t} {unit}, "
          f"ratio {engine_t / bcc_t:.3f}")  # fmt: skip
    assert RATIO[0] <= engine_t / bcc_t <= RATIO[1], (engine_t, bcc_t, out)
