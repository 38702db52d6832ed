"""`specs/bashreadline.yaml` vs bcc's bashreadline on the same interactive bash.

The test starts /bin/bash on a pseudo-terminal (python's pty: bash is interactive there and
reads its lines with readline), after both tools are attached, types LINES and `exit`, and
waits for bash to end. The engine and bashreadline-bpfcc (run with libbcc's uprobe binding
fixed: see bcc_uprobe_fix.py) must print exactly those lines, in order, for that bash's pid.
A bash run through a symlink named notbash (same file, another comm) is not printed: only
processes named bash are.
"""

from __future__ import annotations

import os
import pty
import select
import time
from pathlib import Path

import pytest
from conftest import CHILD_TIMEOUT
from oracle import Oracle

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/bashreadline.yaml"
FIX = str(Path(__file__).with_name("bcc_uprobe_fix.py"))
TOOL = "/usr/sbin/bashreadline-bpfcc"
LINES = ["echo first line", "true 'quoted  spaces'", ": $((6 * 7))", "exit"]


def run_bash(lines: list[str], exe: str = "/bin/bash") -> int:
    """An interactive bash on a pty: type `lines` one at a time (each after the prompt comes
    back), wait for it to exit; its pid. `exe` is the path exec'd (its name is the comm)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: bash, interactive on the pty, no rc files
        env = {"PS1": "PROMPT> ", "TERM": "dumb"}
        os.execve(exe, ["bash", "--norc", "--noprofile", "-i"], env)
    deadline = time.monotonic() + CHILD_TIMEOUT
    seen = b""

    def read_until(marker: bytes) -> None:
        nonlocal seen
        while marker not in seen:
            left = deadline - time.monotonic()
            assert left > 0, f"bash never printed {marker!r}: {seen!r}"
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # EIO: bash closed the pty
                    return
                if not chunk:
                    return
                seen += chunk

    for line in lines:
        read_until(b"PROMPT> ")
        seen = b""
        os.write(fd, line.encode() + b"\n")
    read_until(b"\0never")  # drain until bash closes the pty
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    return pid


class BashReadline(Oracle):
    """bashreadline-bpfcc, ready on its header (printed once the uretprobe is attached)."""

    name = "bashreadline-bpfcc"

    def __init__(self) -> None:
        env = {"PYTHONUNBUFFERED": "1", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
        argv = ["/usr/bin/python3", FIX, TOOL]
        super().__init__(argv, lambda line: line.split() == ["TIME", "PID", "COMMAND"], env)

    def lines_of(self, pid: int) -> list[str]:
        out = []
        for line in self.finish():
            parts = line.split(None, 2)
            if len(parts) >= 2 and parts[1] == str(pid):
                out.append(parts[2] if len(parts) == 3 else "")
        return out


def test_same_lines_as_bashreadline_bpfcc(engine) -> None:
    oracle = BashReadline()
    e = engine(SPEC, "-o", "json")
    pid = run_bash(LINES)
    e.wait_rows(lambda rows: sum(r["pid"] == pid for r in rows) >= len(LINES))
    result = e.stop()
    theirs = oracle.lines_of(pid)
    assert result.code == 0, result.stderr
    assert [r["command"] for r in result.json_rows() if r["pid"] == pid] == LINES
    assert theirs == LINES


def test_only_processes_named_bash(engine, tmp_path: Path) -> None:
    """A symlink named notbash runs the same file (so the uretprobe fires) with comm notbash."""
    (tmp_path / "notbash").symlink_to("/bin/bash")
    e = engine(SPEC, "-o", "json")
    other = run_bash(["echo renamed", "exit"], exe=str(tmp_path / "notbash"))
    plain = run_bash(["echo plain", "exit"])
    e.wait_rows(lambda rows: sum(r["pid"] == plain for r in rows) >= 2)
    result = e.stop()
    assert result.code == 0, result.stderr
    rows = [(r["pid"], r["command"]) for r in result.json_rows() if r["pid"] in (other, plain)]
    assert rows == [(plain, "echo plain"), (plain, "exit")]
