"""`engine run tests/specs/live/opensnoop.yaml`: a syscall tracepoint (a tracefs record; BTF
has none), a user-space string read with the *_user helper, and the parent's pid through the
`task` builtin.
A child of this test opens a path nobody else opens; its row must be exact."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "tests/specs/live/opensnoop.yaml"
SETPRIV_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
OPEN = "import os, sys\ntry:\n    open(sys.argv[1])\nexcept OSError:\n    pass\nprint(os.getpid())"


def open_in_child(path: str, as_nobody: bool = False) -> int:
    argv = [sys.executable, "-I", "-c", OPEN, path]
    if as_nobody:
        argv = [*SETPRIV_NOBODY, *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True, cwd="/")
    return int(done.stdout)


def test_open_row_is_exact(engine) -> None:
    path = f"/nonexistent-{uuid.uuid4().hex}"
    e = engine(SPEC, "-o", "json")
    pid = open_in_child(path)
    result = e.stop()
    assert result.code == 0, result.stderr
    rows = [r for r in result.json_rows() if r["path"] == path]
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["pid"] == pid
    assert row["ppid"] == os.getpid()  # subprocess.run forks from this very process
    assert row["uid"] == 0
    assert row["comm"] == os.path.basename(sys.executable)[:15]
    assert int(row["flags"], 16) & os.O_ACCMODE == os.O_RDONLY


def test_uid_filter_keeps_only_that_user(engine) -> None:
    mine, theirs = (f"/nonexistent-{uuid.uuid4().hex}" for _ in range(2))
    e = engine(SPEC, "-o", "json", "-u", "65534")
    open_in_child(mine)
    nobody = open_in_child(theirs, as_nobody=True)
    result = e.stop()
    assert result.code == 0, result.stderr
    paths = {r["path"]: r for r in result.json_rows()}
    assert mine not in paths
    assert paths[theirs]["uid"] == 65534
    assert paths[theirs]["pid"] == nobody
