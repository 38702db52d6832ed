"""Aggregations without `by`: one row over all events, exact (the key is one zero slot)."""

from __future__ import annotations

import subprocess
import sys

import procs
import pytest
from conftest import CHILD_TIMEOUT

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "tests/specs/live/unkeyed.yaml"
CHILD = """
import os, sys
sys.stdin.readline()
for sig in (0, 17, 23, 28):  # SIGCHLD, SIGURG, SIGWINCH: ignored by default
    os.kill(os.getpid(), sig)
"""


def test_one_row_of_every_kind(engine) -> None:
    child = procs.spawn([sys.executable, "-I", "-c", CHILD], stdin=subprocess.PIPE, text=True)
    try:
        e = engine(SPEC, "-p", str(child.pid), "-o", "json")
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.close()
        assert child.wait(CHILD_TIMEOUT) == 0
        result = e.stop()
    finally:
        child.kill()
    assert result.code == 0, result.stderr
    assert result.json_rows() == [{"calls": 4, "total": 68, "least": 0, "most": 28, "mean": 17}]
