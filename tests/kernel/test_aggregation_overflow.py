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
    said = r"aggregation '(\w+)': events past \d+ keys, folded into 'other': (\d+)"
    folded = dict(re.findall(said, result.stderr))
    assert folded == {"connects": "9", "ones": "9", "spread": "9", "narrow": "15", "steps": "15"}
    # a histogram's size counts keys (one entry holds all its buckets and its sum): with 3,
    # 3 ports are kept whole and the other 5 fold into `other`, each event counted once
    for name, size in (("spread", 5), ("narrow", 3), ("steps", 3)):
        hists = [r for r in rows if r.get("aggregation") == name]
        named = [h for h in hists if h["dport"] != "other"]
        other = [h for h in hists if h["dport"] == "other"]
        assert len(named) == size, name
        assert all((h["count"], h["sum"]) == (3, 3) for h in named), name
        assert [(h["count"], h["sum"]) for h in other] == [(24 - 3 * size,) * 2], name
        assert int(folded[name]) == other[0]["count"], name
