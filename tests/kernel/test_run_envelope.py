"""`engine run -o json --envelope`: each row carries {"engine": {time, host, spec, probe,
container, pod}} for log shippers, and the spec's fields stay at the top level exactly as
without it (the cgroup id the container and pod are named from is read but not printed). The
test's own child runs in no container: `host` for both (tests/kernel/test_containers.py has
rows from real containers)."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import datetime, timezone

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]


def test_envelope_on_json_rows(engine, conn_child):
    e = engine("specs/tcpconnect.yaml", "-o", "json", "--envelope")
    before = datetime.now(timezone.utc)
    child = conn_child(listen=["127.0.0.1"]).run()
    result = e.stop()
    assert result.code == 0, result.stderr

    (row,) = [r for r in result.json_rows() if r.get("pid") == child.pid]
    envelope = row.pop("engine")
    assert row == {
        "pid": child.pid,
        "comm": child.comm,
        "ip": 4,
        "saddr": "127.0.0.1",
        "daddr": "127.0.0.1",
        "dport": child.ports[0],
    }
    assert sorted(envelope) == ["container", "host", "pod", "probe", "spec", "time"]
    assert (envelope["container"], envelope["pod"]) == ("host", "host")
    assert (envelope["host"], envelope["spec"], envelope["probe"]) == (
        socket.gethostname(),
        "tcpconnect",
        "connect",
    )
    assert envelope["time"].endswith("Z")
    when = datetime.fromisoformat(envelope["time"].replace("Z", "+00:00"))
    assert before <= when <= datetime.now(timezone.utc)


def test_envelope_needs_json():
    r = subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", "specs/tcpconnect.yaml", "--envelope"],
        capture_output=True,
        text=True,
    )
    assert (r.returncode, r.stderr) == (2, "engine: error: --envelope goes with -o json\n")
