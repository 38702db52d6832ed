"""`tests/specs/live/arith.yaml`: arithmetic and bit operations computed in the kernel on
kill() arguments the test chooses and on the task's priority, compared with the same
operations modelled in Python under C's rules: the syscall fields have their C types (pid_t
and int: s32, though tracefs widens them to 8 unsigned bytes), tgid is u32, task.prio an int
(s32); s32 values shift right arithmetically, as Python's ints do."""

from __future__ import annotations

import pytest
from conftest import HeldChild

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "tests/specs/live/arith.yaml"
# (pid, sig): itself with 0 and SIGCONT (harmless), a process group and a pid that do not
# exist; SIGWINCH (28) is dropped by the alternative's `where: (args.sig >> 2) != 7`, the
# kill of 9999991 by the probe's `filter: tpid * 2 != 19999982`.
CHILD = """
import os, signal
me = os.getpid()
for pid, sig in ((me, 0), (me, signal.SIGCONT), (-99999, 0), (9999991, 0), (me, signal.SIGWINCH)):
    try:
        os.kill(pid, sig)
    except OSError:
        pass
print(me, os.getpriority(os.PRIO_PROCESS, 0))
"""


def expected(me: int, nice: int, pid: int, sig: int) -> dict[str, int]:
    prio = 120 + nice
    return {
        "pid": me,
        "tpid": pid,
        "sig3": sig * 3 + 1,
        "low": pid & 0xFF,
        "high": pid >> 8,  # s32: an arithmetic shift (-99999 >> 8 is -391)
        "neg": -sig,
        "inv": ~pid,
        "quot": me // 7,  # u32
        "rem": me % 7,
        "wrap": (me - 1) & 0xFFFFFFFF,  # u32 + (-1): C converts -1 to u32
        "mix": (pid ^ 0x5A5A) | (sig << 20),
        "big": sig * 3000000000,
        "sprio": prio - 200,  # s32
        "sshift": (prio - 200) >> 2,  # arithmetic: -80 >> 2 is -20
        "smask": (prio - 200) & 0xFF,
        "swide": (prio - 200) * 3000000000,  # C: int * long is a long (s64), no wrap
    }


def test_arithmetic_values_are_exact(engine) -> None:
    child = HeldChild(CHILD)  # -p: only its kills reach user space, whatever else kills
    e = engine(SPEC, "-o", "json", "-p", str(child.pid))
    me, nice = (int(x) for x in child.run().split())
    assert me == child.pid
    result = e.stop()
    assert result.code == 0, result.stderr
    rows = result.json_rows()
    assert all(r["pid"] == me for r in rows), rows
    assert rows == [
        expected(me, nice, me, 0),
        expected(me, nice, me, 18),
        expected(me, nice, -99999, 0),
    ]  # (me, 28) dropped by the `where`, (9999991, 0) by the filter's arithmetic
    assert rows[2]["tpid"] == -99999 and rows[2]["high"] == -391  # signed, as kill(2) has it
    if nice == 0:
        assert (rows[0]["sprio"], rows[0]["sshift"], rows[0]["smask"]) == (-80, -20, 176)
