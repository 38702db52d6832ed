"""`tests/specs/live/killsnoop.yaml`: state carried from a syscall's entry to its exit.

The entry probe only stores (target, signal) by thread id; the exit probe takes them back and
prints one row with the result. A child sends known signals; each row must be exact, and a
`-x`-free run prints the successful and the failed kill alike."""

from __future__ import annotations

import os
import sys

import pytest
from conftest import HeldChild

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


def rows_of(engine, *args: str) -> tuple[int, list[int], list[dict]]:
    """The child's pid, the results it saw, and the engine's rows (only its: -p PID)."""
    child = HeldChild(CHILD)
    e = engine(SPEC, "-o", "json", "-p", str(child.pid), *args)
    me, *results = (int(x) for x in child.run().split())
    assert me == child.pid
    result = e.stop()
    assert result.code == 0, result.stderr
    return me, results, result.json_rows()


def test_each_kill_is_one_exact_row_with_its_result(engine) -> None:
    me, results, rows = rows_of(engine)
    assert all(r["pid"] == me for r in rows), rows
    assert [(r["tpid"], r["sig"], r["result"]) for r in rows] == [
        (me, 0, "0"),
        (999_999_1, 0, "ESRCH"),
        (me, 0, "0"),
    ]
    assert results == [0, -3, 0]
    assert all(r["comm"] == os.path.basename(sys.executable)[:15] for r in rows)


def test_filter_on_a_value_taken_from_state(engine) -> None:
    """`sig == $signal` compares a field that came out of the state map."""
    _, _, rows = rows_of(engine, "-s", "9")
    assert rows == []
