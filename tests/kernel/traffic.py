"""Traffic the kernel tests make: a connect storm to one loopback port (bench/storm.py, in a
fresh network namespace), its summary returned."""

from __future__ import annotations

import json
import subprocess
import sys

import procs
import pytest
from conftest import REPO

STORM_TIMEOUT = 60  # the storm stops itself after this and reports what it made
WAIT_TIMEOUT = 240.0  # its start and exit on a loaded machine, on top of STORM_TIMEOUT


def storm(port: int, n: int) -> dict:
    """`n` connect()+close() to `port`; bench.storm's JSON summary (connects, rate, ...).

    In its own process group (storm forks an acceptor), killed whole on any failure."""
    proc = procs.spawn(
        [sys.executable, "-m", "bench.storm", "--port", str(port), "--n", str(n),
         "--timeout", str(STORM_TIMEOUT)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=STORM_TIMEOUT + WAIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        procs.kill(proc)
        pytest.fail(f"bench.storm did not exit within {STORM_TIMEOUT + WAIT_TIMEOUT:.0f} s")
    assert proc.returncode == 0, f"bench.storm exit {proc.returncode}: {err}"
    return json.loads(out.strip().splitlines()[-1])
