"""`specs/syscount.yaml` against bcc's own syscount, on the same traffic at the same time.

A child waits until both tools trace it, then makes 777 getppid() calls and exits. Both
must count exactly 777 for getppid; with -L the engine's latency sum is a positive total
(a time, so only its shape is asserted), in one table with the counts as bcc prints it."""

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
CHILD = f"import os, sys\nsys.stdin.readline()\nfor _ in range({N}):\n    os.getppid()\n"


def start_child() -> subprocess.Popen[str]:
    return procs.spawn(
        [sys.executable, "-I", "-c", CHILD], stdin=subprocess.PIPE, text=True, cwd="/"
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
    assert int(row[2]) >= 0
