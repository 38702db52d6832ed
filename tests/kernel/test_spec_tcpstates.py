"""specs/tcpstates.yaml on the real kernel: a child process connects over loopback and closes.

The engine runs as `engine run ... -o json` in its own session; the test waits for its
"Tracing" line, makes the traffic from a child with a known pid, and stops it with SIGINT.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import procs
import pytest
from conftest import CHILD_TIMEOUT

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/tcpstates.yaml"
CHILD_COMM = os.path.basename(sys.executable)[:15]  # comm is the basename execve() was given


CONNECT = """
import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print(c.getsockname()[1], flush=True)
sys.stdin.readline()
c.close()
"""


def connect_from_child(port: int) -> tuple[int, int]:
    """A child connects to 127.0.0.1:port, then closes; returns (its pid, its local port)."""
    with procs.spawn(
        [sys.executable, "-c", CONNECT, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None and child.stdin is not None
        sport = int(child.stdout.readline())
        child.stdin.write("close\n")
        child.stdin.close()
        assert child.wait(CHILD_TIMEOUT) == 0
    return child.pid, sport


def test_loopback_connect_and_close(engine) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        e = engine(SPEC, "-o", "json", "-D", str(port))
        pid, sport = connect_from_child(port)
        server.accept()[0].close()
        e.wait_rows(lambda rows: any(r["newstate"] == "TCP_FIN_WAIT1" for r in rows))
        result = e.stop()
    assert result.code == 0, result.stderr
    rows = result.json_rows()
    base = {"ip": 4, "saddr": "127.0.0.1", "daddr": "127.0.0.1", "dport": port}
    changes = [
        {k: r[k] for k in ("pid", "comm", "sport", "oldstate", "newstate", *base)} for r in rows
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
    assert all(r["dport"] == port for r in rows)
    assert len({r["skaddr"] for r in rows}) == 1
    assert rows[0]["skaddr"].startswith("0xffff")


def test_local_port_filter_and_ipv6(engine) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError as exc:
        pytest.skip(f"no ::1 here: {exc}")
    with server:
        port = server.getsockname()[1]
        # -L: the local port is the server's, so only the listener and the accepted socket.
        e = engine(SPEC, "-o", "json", "-L", str(port), "-f", "10")
        client = socket.create_connection(("::1", port))
        conn, _ = server.accept()
        peer = client.getsockname()[1]
        client.close()
        conn.close()
        e.wait_rows(lambda rows: any(r["newstate"] == "TCP_CLOSE" for r in rows))
        result = e.stop()
    assert result.code == 0, result.stderr
    rows = result.json_rows()
    assert rows, result.stderr
    assert all(r["sport"] == port and r["ip"] == 6 for r in rows)
    syn_recv = next(r for r in rows if r["newstate"] == "TCP_SYN_RECV")
    assert {k: syn_recv[k] for k in ("saddr", "daddr", "dport", "oldstate")} == {
        "saddr": "::1",
        "daddr": "::1",
        "dport": peer,
        "oldstate": "TCP_LISTEN",
    }
