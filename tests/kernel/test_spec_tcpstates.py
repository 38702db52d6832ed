"""specs/tcpstates.yaml on the real kernel: a child process connects over loopback and closes.

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

pytestmark = pytest.mark.kernel

REPO = Path(__file__).resolve().parents[2]
SPEC = str(REPO / "specs" / "tcpstates.yaml")
CHILD_COMM = os.path.basename(sys.executable)[:15]  # comm is the basename execve() was given
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


CONNECT = """
import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print(c.getsockname()[1], flush=True)
sys.stdin.readline()
c.close()
"""


def connect_from_child(port: int) -> tuple[int, int]:
    """A child connects to 127.0.0.1:port, then closes; returns (its pid, its local port)."""
    with subprocess.Popen(
        [sys.executable, "-c", CONNECT, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None and child.stdin is not None
        sport = int(child.stdout.readline())
        child.stdin.write("close\n")
        child.stdin.close()
        assert child.wait(10) == 0
    return child.pid, sport


def test_loopback_connect_and_close() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with Engine(SPEC, "-D", str(port)) as engine:
            pid, sport = connect_from_child(port)
            server.accept()[0].close()
            engine.wait_for(lambda rows: any(r["newstate"] == "TCP_FIN_WAIT1" for r in rows))
            code = engine.stop()
    assert code == 0, "".join(engine.err)
    base = {"ip": 4, "saddr": "127.0.0.1", "daddr": "127.0.0.1", "dport": port}
    changes = [
        {k: r[k] for k in ("pid", "comm", "sport", "oldstate", "newstate", *base)}
        for r in engine.rows
    ]
    # The connect happens in the child; on loopback the SYN-ACK is handled when the child
    # releases the socket, and the FIN goes out from its close(): all in the child's context.
    assert changes[:3] == [
        {**base, "pid": pid, "comm": CHILD_COMM, "sport": 0,
         "oldstate": "TCP_CLOSE", "newstate": "TCP_SYN_SENT"},
        {**base, "pid": pid, "comm": CHILD_COMM, "sport": sport,
         "oldstate": "TCP_SYN_SENT", "newstate": "TCP_ESTABLISHED"},
        {**base, "pid": pid, "comm": CHILD_COMM, "sport": sport,
         "oldstate": "TCP_ESTABLISHED", "newstate": "TCP_FIN_WAIT1"},
    ]  # fmt: skip
    # -D keeps only the client socket (dport == port): never the listener or accepted socket.
    assert all(r["dport"] == port for r in engine.rows)
    assert len({r["skaddr"] for r in engine.rows}) == 1
    assert engine.rows[0]["skaddr"].startswith("0xffff")


def test_local_port_filter_and_ipv6() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError as exc:
        pytest.skip(f"no ::1 here: {exc}")
    with server:
        port = server.getsockname()[1]
        # -L: the local port is the server's, so only the listener and the accepted socket.
        with Engine(SPEC, "-L", str(port), "-f", "10") as engine:
            client = socket.create_connection(("::1", port))
            conn, _ = server.accept()
            peer = client.getsockname()[1]
            client.close()
            conn.close()
            engine.wait_for(lambda rows: any(r["newstate"] == "TCP_CLOSE" for r in rows))
            code = engine.stop()
    assert code == 0, "".join(engine.err)
    assert engine.rows, "".join(engine.err)
    assert all(r["sport"] == port and r["ip"] == 6 for r in engine.rows)
    syn_recv = next(r for r in engine.rows if r["newstate"] == "TCP_SYN_RECV")
    assert {k: syn_recv[k] for k in ("saddr", "daddr", "dport", "oldstate")} == {
        "saddr": "::1",
        "daddr": "::1",
        "dport": peer,
        "oldstate": "TCP_LISTEN",
    }
