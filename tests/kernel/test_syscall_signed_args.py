"""Signed syscall arguments: tracefs says `pid_t pid; size:8; signed:0` for sys_enter_kill
(every argument sits in an 8-byte unsigned slot), yet the value is a signed 4-byte pid_t.

This test process calls kill(-999997, 0) itself (no such process group: ESRCH, so nothing is
signalled) while tests/specs/live/kill_targets.yaml runs; the row must say -999997, not
4293967299, and the filter `tpid == $tpid` must match `--target=-999997`.
"""

from __future__ import annotations

import errno
import os

import pytest

from engine.plan import planner
from engine.spec.loader import load_document

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "tests/specs/live/kill_targets.yaml"
TARGET = -999997  # no process group 999997: kill() fails with ESRCH and signals nobody


def kill_nobody() -> None:
    with pytest.raises(ProcessLookupError) as err:
        os.kill(TARGET, 0)
    assert err.value.errno == errno.ESRCH


def test_plan_reads_the_low_signed_half() -> None:
    plan = planner.plan(load_document(SPEC))
    assert [(f.name, f.ctype) for f in plan.fields] == [
        ("pid", "u32"),
        ("comm", "char"),
        ("tpid", "s32"),
        ("sig", "s32"),
    ]


def test_negative_target_prints_negative(engine) -> None:
    e = engine(SPEC, "-o", "json", "-p", str(os.getpid()))
    kill_nobody()
    result = e.stop()
    assert result.code == 0, result.stderr
    with open("/proc/thread-self/comm") as f:
        comm = f.read().strip()  # the thread that called kill()
    rows = [r for r in result.json_rows() if r["tpid"] in (TARGET, 2**32 + TARGET)]
    assert rows == [{"pid": os.getpid(), "comm": comm, "tpid": TARGET, "sig": 0}]


def test_filter_matches_a_negative_option(engine) -> None:
    e = engine(SPEC, "-o", "json", f"--target={TARGET}")
    kill_nobody()
    result = e.stop()
    assert result.code == 0, result.stderr
    rows = result.json_rows()
    assert [(r["pid"], r["tpid"], r["sig"]) for r in rows] == [(os.getpid(), TARGET, 0)]
