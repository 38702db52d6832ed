"""specs/execsnoop.yaml on the real kernel: execs from child processes, as root and as nobody.

The engine runs as `engine run ... -o json` in its own session; the test waits for its
"Tracing" line, makes the traffic from a child with a known pid, and stops it with SIGINT.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import procs
import pytest
from conftest import CHILD_TIMEOUT

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/execsnoop.yaml"
Row = dict[str, Any]


def execs(e: Any, pid: int) -> tuple[Any, list[Row]]:
    """Stop the engine once `pid` exec'd; its Result, and that pid's rows."""
    e.wait_rows(lambda rows: any(r["pid"] == pid for r in rows))
    result = e.stop()
    return result, [r for r in result.json_rows() if r["pid"] == pid]


def test_exec_of_bin_true(engine) -> None:
    e = engine(SPEC, "-o", "json", "-U", "-u", str(os.getuid()))
    with procs.spawn(["/bin/true"]) as child:
        assert child.wait(CHILD_TIMEOUT) == 0
    result, rows = execs(e, child.pid)
    assert result.code == 0, result.stderr
    # comm is already the new program's; filename is the path as given to execve().
    assert rows == [
        {"uid": os.getuid(), "comm": "true", "pid": child.pid, "ppid": os.getpid(),
         "old_pid": child.pid, "filename": "/bin/true"},
    ]  # fmt: skip


def test_exec_of_a_script(engine, tmp_path: Path) -> None:
    script = tmp_path / "hello-from-engine-test.sh"  # longer than comm's 15 characters
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    e = engine(SPEC, "-o", "json")
    with procs.spawn([str(script)]) as child:
        assert child.wait(CHILD_TIMEOUT) == 0
    _, rows = execs(e, child.pid)
    # The tracepoint fires once, for the script's path; comm is its name, cut to 15 bytes.
    assert rows == [
        {"comm": "hello-from-engi", "pid": child.pid, "ppid": os.getpid(),
         "old_pid": child.pid, "filename": str(script)},
    ]  # fmt: skip


def test_uid_filter(engine) -> None:
    nobody = 65534
    e = engine(SPEC, "-o", "json", "-U", "-u", str(nobody))
    with procs.spawn(["/bin/true"]) as as_root:
        assert as_root.wait(CHILD_TIMEOUT) == 0
    with procs.spawn(["/bin/true"], user=nobody, group=nobody, extra_groups=[]) as as_nobody:
        assert as_nobody.wait(CHILD_TIMEOUT) == 0
    result, rows = execs(e, as_nobody.pid)
    assert rows == [
        {"uid": nobody, "comm": "true", "pid": as_nobody.pid, "ppid": os.getpid(),
         "old_pid": as_nobody.pid, "filename": "/bin/true"},
    ]  # fmt: skip
    assert all(r["uid"] == nobody for r in result.json_rows())
    assert not any(r["pid"] == as_root.pid for r in result.json_rows())


def test_name_filter_compares_comm_exactly(engine) -> None:
    """-n/--name: a string option compared with comm in the kernel, byte by byte."""
    e = engine(SPEC, "-o", "json", "-n", "true")
    with procs.spawn(["/bin/echo", "-n"]) as other:
        assert other.wait(CHILD_TIMEOUT) == 0
    with procs.spawn(["/bin/true"]) as child:
        assert child.wait(CHILD_TIMEOUT) == 0
    result, rows = execs(e, child.pid)
    assert [(r["comm"], r["filename"]) for r in rows] == [("true", "/bin/true")]
    assert {r["comm"] for r in result.json_rows()} == {"true"}
    assert not any(r["pid"] == other.pid for r in result.json_rows())
