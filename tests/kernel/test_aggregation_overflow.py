"""Cardinality bounded in the kernel: keys past an aggregation's `size` go to one `other`
series (a per-CPU array beside the hash), so the sum over all series is every event, and the
overflow is counted and reported on stderr."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import procs
import pytest
from conftest import CHILD_TIMEOUT

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "tests/specs/live/overflow.yaml"
CHILD = """
import socket, sys
ports = [int(p) for p in sys.argv[1:]]
sys.stdin.readline()
for port in ports:
    for _ in range(3):
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            pass
        s.close()
"""


def closed_ports(n: int) -> list[int]:
    """Ports nothing listens on: bound then closed, so connects are refused at once."""
    ports = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        ports.append(s.getsockname()[1])
        s.close()
    return ports


def test_keys_past_the_size_fold_into_other(engine) -> None:
    ports = closed_ports(8)
    child = procs.spawn(
        [sys.executable, "-I", "-c", CHILD, *map(str, ports)], stdin=subprocess.PIPE, text=True
    )
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
    rows = result.json_rows()
    table = [r for r in rows if "connects" in r]
    named = [r for r in table if r["dport"] != "other"]
    other = [r for r in table if r["dport"] == "other"]
    assert len(named) == 5 and all(r["connects"] == 3 and r["ones"] == 3 for r in named)
    assert other == [{"dport": "other", "connects": 9, "ones": 9}]
    assert sum(r["connects"] for r in table) == 24  # every connect, in a series
    hists = [r for r in rows if r.get("aggregation") == "spread"]
    assert sum(h["count"] for h in hists) == 24
    assert next(h for h in hists if h["dport"] == "other")["count"] >= 9
    folded = re.findall(r"aggregation '(\w+)': events past 5 keys, folded into 'other': (\d+)",
                        result.stderr)  # fmt: skip
    assert ("connects", "9") in folded and ("ones", "9") in folded
