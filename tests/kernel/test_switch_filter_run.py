"""A bool option in a filter on the real kernel: killsnoop's `-x` (`$failed and result < 0`)
keeps only failed kill() calls, and without `-x` that condition drops out.

A child makes one successful kill(self, 0) and one failing kill(-999997, 0) (no such process
group: ESRCH, nothing signalled); both runs see the same child's calls, so the rows are exact.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "tests/specs/live/killsnoop.yaml"
CHILD = """
import os
me = os.getpid()
os.kill(me, 0)
try:
    os.kill(-999997, 0)
except ProcessLookupError:
    print(me)
"""


def kill_twice() -> int:
    done = subprocess.run(
        [sys.executable, "-I", "-c", CHILD], capture_output=True, text=True, timeout=30, check=True
    )
    return int(done.stdout)


def rows_of(engine, *args: str) -> tuple[int, list[tuple[int, int, int, str]]]:
    e = engine(SPEC, "-o", "json", *args)
    child = kill_twice()
    result = e.stop()
    assert result.code == 0, result.stderr
    rows = [(r["pid"], r["tpid"], r["sig"], r["result"]) for r in result.json_rows()]
    return child, [r for r in rows if r[0] == child]


def test_without_the_switch_every_kill_prints(engine) -> None:
    child, rows = rows_of(engine)
    assert rows == [(child, child, 0, "0"), (child, -999997, 0, "ESRCH")]


def test_with_the_switch_only_failures_print(engine) -> None:
    child, rows = rows_of(engine, "-x")
    assert rows == [(child, -999997, 0, "ESRCH")]


def test_the_switch_combines_with_a_value_option(engine) -> None:
    child, rows = rows_of(engine, "--failed", "-s", "0")
    assert rows == [(child, -999997, 0, "ESRCH")]


def test_arithmetic_under_a_switch_compiles_and_filters(engine) -> None:
    """`$neg and tpid * 2 < 0` with -n: the guarded term's arithmetic is inlined into the
    filter (it once used a local before its declaration, which clang refused)."""
    for negative_only in (False, True):
        e = engine("tests/specs/live/switch_arith.yaml", "-o", "json", *(["-n"] * negative_only))
        child = kill_twice()
        result = e.stop()
        assert result.code == 0, result.stderr
        tpids = [r["tpid"] for r in result.json_rows() if r["pid"] == child]
        assert tpids == ([-999997] if negative_only else [child, -999997])
