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


def start_child(n: int = N, calls: str = "") -> subprocess.Popen[str]:
    """A child that makes `n` getppid() calls (or runs `calls`) once a line reaches its stdin."""
    body = calls.format(n=n) if calls else f"import os\nfor _ in range({n}):\n    os.getppid()\n"
    child = "import sys\nsys.stdin.readline()\n" + body
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


# The timed calls: select() with a 20 us timeout (pselect6 here), about 100 us each with the
# timer's slack, N_TIMED of them. Both tools time the same calls, each from its own sys_enter
# probe to its own sys_exit probe: the programs on one tracepoint run one after the other, so
# each tool's interval holds part of the other's probes. On getppid (about 1 us a call) that
# overhead was a large, noisy share: engine/bcc measured 1.03 .. 1.05 in one session and
# 0.61 .. 1.60 in another on the same 2-CPU machine under load (bcc's own sum of the same
# 20,000 calls ranged 16 to 40 ms). On a 100 us call it is well under 1%, so the sums agree
# within RATIO. That the sum is exact nanoseconds divided once (not each call divided first,
# the issue's 61-69% loss on getppid) is the unit tests' (tests/unit/test_print_units.py) and
# this file's first -L test's: TIME(us) has its three nanosecond decimals.
N_TIMED = 2000
SELECT = "import select\nfor _ in range({n}):\n    select.select([], [], [], 0.00002)\n"
RATIO = (0.95, 1.05)  # measured 1.000 .. 1.001


@pytest.mark.parametrize("unit", ["us", "ms"])
def test_latency_sum_is_bccs(engine, unit: str) -> None:
    """syscount -L (and -L -m): the engine's TIME for select() against bcc's `syscount -L`
    on the same calls of one child. bcc sums nanoseconds and divides the total once; so must the
    spec (its `print: us` / `print: ms`)."""
    n = N_TIMED
    flags = ["-L", "-m"] if unit == "ms" else ["-L"]
    child = start_child(n, SELECT)
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
    # select() is pselect6 here (select on older C libraries): the syscall called n times
    ours = next(r for r in result.json_rows() if r["syscall"] in ("pselect6", "select"))
    theirs = next(ln.split() for ln in out.splitlines() if ln.startswith(ours["syscall"] + " "))
    assert ours["count"] == int(theirs[1]) == n
    engine_t, bcc_t = ours[f"time({unit})"], float(theirs[2])
    assert isinstance(engine_t, float)  # ns resolution: 3 decimals in us, 6 in ms, as bcc
    print(f"{ours['syscall']} x{n}: engine {engine_t} {unit}, bcc {bcc_t} {unit}, "
          f"ratio {engine_t / bcc_t:.3f}")  # fmt: skip
    assert RATIO[0] <= engine_t / bcc_t <= RATIO[1], (engine_t, bcc_t, out)
