"""specs/execsnoop.yaml on the real kernel: execs from child processes, as root and as nobody.

The engine runs as `engine run ... -o json` in its own session; the test waits for its
"Tracing" line, makes the traffic from a child with a known pid, and stops it with SIGINT.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

pytestmark = pytest.mark.kernel

REPO = Path(__file__).resolve().parents[2]
SPEC = str(REPO / "specs" / "execsnoop.yaml")
Row = dict[str, Any]


@pytest.fixture(autouse=True)
def _root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("kernel tests must run as root in CI")
        pytest.skip("needs root: loads and attaches BPF programs")


class Engine:
    """`engine run SPEC -o json ARGS` in its own session; rows are collected as they come."""

    def __init__(self, spec: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "run", spec, "-o", "json", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.rows: list[Row] = []
        self.err: list[str] = []
        self.tracing = threading.Event()
        self.threads = [
            threading.Thread(target=self._read_out, daemon=True),
            threading.Thread(target=self._read_err, daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.rows.append(json.loads(line))

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line)
            if line.startswith("Tracing"):
                self.tracing.set()

    def __enter__(self) -> Engine:
        if not self.tracing.wait(60):
            self.stop()
            pytest.fail(f"engine never said 'Tracing': {''.join(self.err)}")
        return self

    def wait_for(self, found: Callable[[list[Row]], bool], timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not found(list(self.rows)) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        for t in self.threads:
            t.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return code

    def __exit__(self, *exc: object) -> None:
        self.stop()


def execs(engine: Engine, pid: int) -> list[Row]:
    engine.wait_for(lambda rows: any(r["pid"] == pid for r in rows))
    engine.stop()
    return [r for r in engine.rows if r["pid"] == pid]


def test_exec_of_bin_true() -> None:
    with Engine(SPEC, "-U", "-u", str(os.getuid())) as engine:
        with subprocess.Popen(["/bin/true"]) as child:
            assert child.wait(10) == 0
        rows = execs(engine, child.pid)
    assert engine.proc.returncode == 0, "".join(engine.err)
    # comm is already the new program's; filename is the path as given to execve().
    assert rows == [
        {"uid": os.getuid(), "comm": "true", "pid": child.pid, "old_pid": child.pid,
         "filename": "/bin/true"},
    ]  # fmt: skip


def test_exec_of_a_script(tmp_path: Path) -> None:
    script = tmp_path / "hello-from-engine-test.sh"  # longer than comm's 15 characters
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    with Engine(SPEC) as engine:
        with subprocess.Popen([str(script)]) as child:
            assert child.wait(10) == 0
        rows = execs(engine, child.pid)
    # The tracepoint fires once, for the script's path; comm is its name, cut to 15 bytes.
    assert rows == [
        {"comm": "hello-from-engi", "pid": child.pid, "old_pid": child.pid,
         "filename": str(script)},
    ]  # fmt: skip


def test_uid_filter() -> None:
    nobody = 65534
    with Engine(SPEC, "-U", "-u", str(nobody)) as engine:
        with subprocess.Popen(["/bin/true"]) as as_root:
            assert as_root.wait(10) == 0
        with subprocess.Popen(
            ["/bin/true"], user=nobody, group=nobody, extra_groups=[]
        ) as as_nobody:
            assert as_nobody.wait(10) == 0
        rows = execs(engine, as_nobody.pid)
    assert rows == [
        {"uid": nobody, "comm": "true", "pid": as_nobody.pid, "old_pid": as_nobody.pid,
         "filename": "/bin/true"},
    ]  # fmt: skip
    assert all(r["uid"] == nobody for r in engine.rows)
    assert not any(r["pid"] == as_root.pid for r in engine.rows)
