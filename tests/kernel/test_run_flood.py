"""A flood of events faster than the engine prints them must not keep it from stopping.

Two children call kill(4300000, 0) in a loop (no such process can exist: pid_max is at most
4194304, so nothing is signalled). Each call is one event of tests/specs/live/killsnoop.yaml,
far more than the Python reader prints, so the ring buffer never empties. SIGINT and
--duration must still end the run within STOP_TIMEOUT (a bound on a hang: a stop takes well
under a second), exit 0, and report the events the flood cost on stderr.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import procs
import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "tests/specs/live/killsnoop.yaml"
FLOOD = """
import os
print("up", flush=True)
while True:
    try:
        os.kill(4300000, 0)
    except OSError:
        pass
"""


def flood() -> None:
    """Two flooding children, running once this returns (stopped by procs at teardown)."""
    children = [
        procs.spawn([sys.executable, "-I", "-c", FLOOD], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline() == "up\n", "the flood child did not start"
    assert all(child.poll() is None for child in children)


def assert_flood_reported(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert re.search(r"^\d+ events lost in all$", stderr, re.M), stderr  # it was a flood


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_ends_a_flooded_run(engine, sig) -> None:
    flood()
    e = engine(SPEC, "-o", "json", pipeline="| wc -l")  # wc: no test thread keeps up either
    result = e.stop(sig)
    assert result.code == 0, result.stderr
    assert int(result.stdout) >= 1
    assert_flood_reported(result.stderr)


def test_duration_ends_a_flooded_run(engine) -> None:
    flood()
    e = engine(SPEC, "-o", "json", "--duration", "2", pipeline="| wc -l")
    result = e.wait()
    assert result.code == 0, result.stderr
    assert int(result.stdout) >= 1
    assert_flood_reported(result.stderr)
