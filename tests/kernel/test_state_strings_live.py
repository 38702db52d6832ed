"""String state members on the running kernel (tests/specs/live/kernel_strings.yaml): a kernel
char array (`task.comm`, read with bpf_probe_read_kernel_str) and the task's comm copied into
`str` / `comm` members of a value built in the per-CPU scratch array at getppid()'s entry,
printed at its exit; one copied on into a second map and printed at getpgid()'s exit. The
child names itself, so every string is known exactly."""

from __future__ import annotations

import pytest
from conftest import HeldChild

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "tests/specs/live/kernel_strings.yaml"
NAME = "h19kstr"
CODE = f"""
import ctypes, os
ctypes.CDLL(None).prctl(15, b"{NAME}", 0, 0, 0)
for _ in range(3):
    os.getppid()
    os.getpgid(0)
"""


def test_kernel_strings_cross_probes_and_maps(engine) -> None:
    child = HeldChild(CODE)
    e = engine(SPEC, "-o", "json", "-p", str(child.pid))
    child.run()
    e.wait_rows(lambda rows: len(rows) >= 6)
    result = e.stop()
    assert result.code == 0, result.stderr
    rows = [(r["pid"], r["call"], r["name"], r["who"]) for r in result.json_rows()]
    assert rows == [
        (child.pid, call, NAME, NAME) for _ in range(3) for call in ("getppid", "getpgid")
    ]
