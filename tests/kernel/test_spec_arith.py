"""`tests/specs/live/arith.yaml`: arithmetic and bit operations computed in the kernel on
kill() arguments the test chooses and on the task's priority, compared with the same
operations modelled in Python under C's rules: the syscall fields are u64 (tracefs says 8
bytes, unsigned), tgid is u32, task.prio an int (s32, shifted right arithmetically)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "tests/specs/live/arith.yaml"
# (pid, sig): itself with 0 and SIGCONT (harmless), a process group and a pid that do not
# exist; SIGWINCH (28) is dropped by the alternative's `where: (args.sig >> 2) != 7`, the
# kill of 9999991 by the probe's `filter: tpid / 1000000 != 9`.
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


U64 = (1 << 64) - 1


def expected(me: int, nice: int, pid: int, sig: int) -> dict[str, int]:
    pid &= 0xFFFFFFFF  # the raw register: the int zero-extended into the 8-byte u64 field
    prio = 120 + nice
    return {
        "pid": me,
        "tpid": pid,
        "sig3": sig * 3 + 1,
        "low": pid & 0xFF,
        "high": pid >> 8,  # u64: a logical shift
        "neg": -sig & U64,
        "inv": ~pid & U64,
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
    e = engine(SPEC, "-o", "json")
    done = subprocess.run(
        [sys.executable, "-I", "-c", CHILD], capture_output=True, text=True, timeout=30, check=True
    )
    me, nice = (int(x) for x in done.stdout.split())
    result = e.stop()
    assert result.code == 0, result.stderr
    rows = [r for r in result.json_rows() if r["pid"] == me]
    assert rows == [
        expected(me, nice, me, 0),
        expected(me, nice, me, 18),
        expected(me, nice, -99999, 0),
    ]  # (me, 28) dropped by the `where`, (9999991, 0) by the filter's arithmetic
    assert rows[2]["tpid"] == 2**32 - 99999 and rows[2]["high"] == (2**32 - 99999) >> 8
    if nice == 0:
        assert (rows[0]["sprio"], rows[0]["sshift"], rows[0]["smask"]) == (-80, -20, 176)
