"""specs/drops.yaml on the real kernel: UDP to a closed loopback port, dropped with NO_SOCKET.

The engine runs as `engine run ... -o json` in its own session; the test waits for its
"Tracing" line, makes the traffic from a child with a known pid, and stops it with SIGINT.
"""

from __future__ import annotations

import os
import socket
import sys

import procs
import pytest
from conftest import CHILD_TIMEOUT

from engine.kernel.btf import Btf

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/drops.yaml"
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


def test_udp_to_a_closed_port_is_dropped_with_no_socket(engine) -> None:
    port = closed_udp_port()
    e = engine(SPEC, "-o", "json", "-P", "0x800")
    with procs.spawn([sys.executable, "-c", SEND, str(port), "1"]) as child:
        assert child.wait(CHILD_TIMEOUT) == 0
    e.wait_rows(lambda rows: any(r["pid"] == child.pid for r in rows))
    result = e.stop()
    assert result.code == 0, result.stderr
    rows = result.json_rows()
    # On loopback the datagram is received in the sender's context; it is freed after the
    # UDP header was pulled: 8 bytes of header and 5 of payload remain.
    assert [r for r in rows if r["pid"] == child.pid] == [
        {"pid": child.pid, "comm": CHILD_COMM, "dev": "lo", "protocol": "0x800", "len": 13,
         "reason": "SKB_DROP_REASON_NO_SOCKET"},
    ]  # fmt: skip
    assert all(r["protocol"] == "0x800" for r in rows)


def test_count_by_reason_in_the_kernel(engine) -> None:
    found = Btf.load().enum_constant("SKB_DROP_REASON_NO_SOCKET")
    assert found is not None
    port = closed_udp_port()
    args = ("-c", "-p", str(os.getpid()), "-r", str(found[1]))
    e = engine(SPEC, "-o", "json", *args)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(3):
            s.sendto(b"hello", ("127.0.0.1", port))
    result = e.stop()
    assert result.code == 0, result.stderr
    assert result.json_rows() == [{"reason": "SKB_DROP_REASON_NO_SOCKET", "drops": 3}]
