"""A long list option is a hash set map, not 20,000 comparisons in the C (which crashed bcc):
`-P` with 20,000 ports, one of them the port the test connects to, gives exactly the rows of
that port; a port outside the list gives none."""

from __future__ import annotations

import os
import socket

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/tcpconnect.yaml"
LISTED = 61097  # above the ephemeral range: only this test connects to these
UNLISTED = 61098


def connect(port: int, times: int) -> None:
    with socket.create_server(("127.0.0.1", port)) as server:
        for _ in range(times):
            with socket.create_connection(("127.0.0.1", port)):
                server.accept()[0].close()


def test_twenty_thousand_ports(engine, bpf):
    ports = [*range(1, 20000), LISTED]
    assert len(ports) == 20000 and UNLISTED not in ports
    e = engine(SPEC, "-o", "json", "-P", ",".join(map(str, ports)))
    connect(UNLISTED, 2)
    connect(LISTED, 3)
    e.wait_rows(lambda rows: sum(r["pid"] == os.getpid() for r in rows) >= 3)
    result = e.stop()

    assert result.code == 0, result.stderr
    mine = [r for r in result.json_rows() if r["pid"] == os.getpid()]
    assert (
        mine
        == [
            {
                "pid": os.getpid(),
                "comm": mine[0]["comm"],
                "ip": 4,
                "saddr": "127.0.0.1",
                "daddr": "127.0.0.1",
                "dport": LISTED,
            }
        ]
        * 3
    )
    assert all(r["dport"] in ports for r in result.json_rows())
    bpf.assert_released(e)
