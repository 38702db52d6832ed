"""specs/drops.yaml on the real kernel: UDP to a closed loopback port, dropped with NO_SOCKET.

The engine runs as `engine run ... -o json` in its own session; the test waits for its
"Tracing" line, makes the traffic from a child with a known pid, and stops it with SIGINT.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from engine.btf import Btf

pytestmark = pytest.mark.kernel

REPO = Path(__file__).resolve().parents[2]
SPEC = str(REPO / "specs" / "drops.yaml")
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


CHILD_COMM = os.path.basename(sys.executable)[:15]  # comm is the basename execve() was given
SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[2])):
    s.sendto(b"hello", ("127.0.0.1", int(sys.argv[1])))
"""


def closed_udp_port() -> int:
    """A UDP port nothing listens on (it was free a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_udp_to_a_closed_port_is_dropped_with_no_socket() -> None:
    port = closed_udp_port()
    with Engine(SPEC, "-P", "0x800") as engine:
        with subprocess.Popen([sys.executable, "-c", SEND, str(port), "1"]) as child:
            assert child.wait(10) == 0
        engine.wait_for(lambda rows: any(r["pid"] == child.pid for r in rows))
        code = engine.stop()
    assert code == 0, "".join(engine.err)
    # On loopback the datagram is received in the sender's context; it is freed after the
    # UDP header was pulled: 8 bytes of header and 5 of payload remain.
    assert [r for r in engine.rows if r["pid"] == child.pid] == [
        {"pid": child.pid, "comm": CHILD_COMM, "dev": "lo", "protocol": "0x800", "len": 13,
         "reason": "SKB_DROP_REASON_NO_SOCKET"},
    ]  # fmt: skip
    assert all(r["protocol"] == "0x800" for r in engine.rows)


def test_count_by_reason_in_the_kernel() -> None:
    found = Btf.load().enum_constant("SKB_DROP_REASON_NO_SOCKET")
    assert found is not None
    port = closed_udp_port()
    args = ("-c", "-p", str(os.getpid()), "-r", str(found[1]))
    with Engine(SPEC, *args) as engine:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(3):
                s.sendto(b"hello", ("127.0.0.1", port))
        code = engine.stop()
    assert code == 0, "".join(engine.err)
    assert engine.rows == [{"reason": "SKB_DROP_REASON_NO_SOCKET", "drops": 3}]
