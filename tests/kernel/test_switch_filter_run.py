"""A bool option in a filter on the real kernel: killsnoop's `-x` (`$failed and result < 0`)
keeps only failed kill() calls, and without `-x` that condition drops out.

A child makes one successful kill(self, 0) and one failing kill(-999997, 0) (no such process
group: ESRCH, nothing signalled); both runs see the same child's calls, so the rows are exact.
"""

from __future__ import annotations

import pytest
from conftest import HeldChild

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


def rows_of(engine, *args: str) -> tuple[int, list[tuple[int, int, int, str]]]:
    child = HeldChild(CHILD)  # -p: only its kills reach user space, whatever else kills
    e = engine(SPEC, "-o", "json", "-p", str(child.pid), *args)
    assert int(child.run()) == child.pid
    result = e.stop()
    assert result.code == 0, result.stderr
    rows = [(r["pid"], r["tpid"], r["sig"], r["result"]) for r in result.json_rows()]
    assert all(r[0] == child.pid for r in rows), rows
    return child.pid, rows


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
        child = HeldChild(CHILD)
        args = ["-o", "json", "-p", str(child.pid), *(["-n"] * negative_only)]
        e = engine("tests/specs/live/switch_arith.yaml", *args)
        assert int(child.run()) == child.pid
        result = e.stop()
        assert result.code == 0, result.stderr
        tpids = [r["tpid"] for r in result.json_rows() if r["pid"] == child.pid]
        assert tpids == ([-999997] if negative_only else [child.pid, -999997])
