"""`tests/specs/live/killsnoop.yaml`: state carried from a syscall's entry to its exit.

The entry probe only stores (target, signal) by thread id; the exit probe takes them back and
prints one row with the result. A child sends known signals; each row must be exact, and a
`-x`-free run prints the successful and the failed kill alike."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "tests/specs/live/killsnoop.yaml"
CHILD = """
import errno, os, sys
me = os.getpid()
results = []
for pid, sig in ((me, 0), (999_999_1, 0), (me, 0)):
    try:
        os.kill(pid, sig)
        results.append(0)
    except OSError as e:
        results.append(-e.errno)
print(me, *results)
"""


def run_child() -> tuple[int, list[int]]:
    done = subprocess.run(
        [sys.executable, "-I", "-c", CHILD], capture_output=True, text=True, timeout=30, check=True
    )
    me, *results = (int(x) for x in done.stdout.split())
    return me, results


def test_each_kill_is_one_exact_row_with_its_result(engine) -> None:
    e = engine(SPEC, "-o", "json")
    me, results = run_child()
    result = e.stop()
    assert result.code == 0, result.stderr
    rows = [r for r in result.json_rows() if r["pid"] == me]
    assert [(r["tpid"], r["sig"], r["result"]) for r in rows] == [
        (me, 0, "0"),
        (999_999_1, 0, "ESRCH"),
        (me, 0, "0"),
    ]
    assert results == [0, -3, 0]
    assert all(r["comm"] == os.path.basename(sys.executable)[:15] for r in rows)


def test_filter_on_a_value_taken_from_state(engine) -> None:
    """`sig == $signal` compares a field that came out of the state map."""
    e = engine(SPEC, "-o", "json", "-s", "9")
    me, _ = run_child()
    result = e.stop()
    assert result.code == 0, result.stderr
    assert [r for r in result.json_rows() if r["pid"] == me] == []
