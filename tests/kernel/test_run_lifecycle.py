"""How `engine run` ends: --duration, SIGTERM, SIGINT, a closed stdout; nothing left attached.

After every way of ending, the BPF programs the engine held while tracing (read from its
/proc fdinfo) must be gone from `bpftool prog list`, and no tracepoint program named like ours
(p0_...) may be left without an owner. Other engines may run concurrently on the machine, so
the checks follow our process's own programs rather than global counts.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time

import pytest
from conftest import STOP_TIMEOUT

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/tcpconnect.yaml"
TABLE_HEADER = "PID    COMM         IP SADDR            DADDR            DPORT"
COUNT_HEADER = "LADDR                     RADDR                     RPORT                CONNECTS"
TRACING = "Tracing connect ... Hit Ctrl-C to end."
SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]


def count_line(port: int, connects: int) -> str:
    return f"{'127.0.0.1':<25} {'127.0.0.1':<25} {port:<20} {connects}"


def assert_quiet(result) -> None:
    """stderr holds the two status lines and nothing else: no traceback, no ignored exception."""
    assert "Traceback" not in result.stderr, result.stderr
    assert "Exception ignored" not in result.stderr, result.stderr
    assert len(result.err_lines) == 2 and result.err_lines[1] == TRACING, result.stderr
    assert result.err_lines[0].startswith("probe 'connect': using "), result.stderr


def test_duration_exits_by_itself(engine, bpf):
    e = engine(SPEC, "--duration", "2")
    result = e.wait()
    ended = time.monotonic()

    assert result.code == 0, result.stderr
    # From the spawn (before the engine's clock could start): at least the 2 s. From the
    # "Tracing" line the test saw (late, on a loaded machine): 2 s and a slow exit, not 20 s.
    assert ended - e.started_at >= 2.0, f"--duration 2 ended {ended - e.started_at:.2f} s in"
    assert ended - e.ready_at < 2.0 + 15.0, f"--duration 2 ended after {ended - e.ready_at:.2f} s"
    assert result.out_lines[0] == TABLE_HEADER
    assert_quiet(result)
    bpf.assert_released(e)


def test_duration_in_count_mode_prints_counts(engine, bpf, conn_child):
    # The child is up and listening first, so its connects come the moment tracing starts,
    # well inside the 2 s however slowly a loaded machine starts a process.
    child = conn_child(connects=[(0, 4)], wait=True)
    e = engine(SPEC, "-c", "--duration", "2", ready=False).wait_ready(then=child.go)
    child.finish()
    result = e.wait()

    assert result.code == 0, result.stderr
    assert result.out_lines[:2] == ["", COUNT_HEADER]
    assert count_line(child.ports[0], 4) in result.out_lines
    assert_quiet(result)
    bpf.assert_released(e)


@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_stops_event_mode(engine, bpf, conn_child, sig):
    e = engine(SPEC, "-o", "json")
    child = conn_child().run()
    result = e.stop(sig)

    assert result.code == 0, result.stderr
    mine = [r for r in result.json_rows() if r["pid"] == child.pid]
    assert mine == [
        {
            "pid": child.pid,
            "comm": "conn-test",
            "ip": 4,
            "saddr": "127.0.0.1",
            "daddr": "127.0.0.1",
            "dport": child.ports[0],
        }
    ]
    assert_quiet(result)
    bpf.assert_released(e)


@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_in_count_mode_prints_final_counts(engine, bpf, conn_child, sig):
    e = engine(SPEC, "-c")
    child = conn_child(connects=[(0, 2)]).run()
    assert e.out.lines == []  # nothing printed before the stop
    result = e.stop(sig)

    assert result.code == 0, result.stderr
    assert result.out_lines[:2] == ["", COUNT_HEADER]
    assert result.out_lines.count(COUNT_HEADER) == 1
    assert count_line(child.ports[0], 2) in result.out_lines[2:]
    assert_quiet(result)
    bpf.assert_released(e)


def test_closed_stdout_pipe_to_head(engine, bpf, conn_child):
    """`engine run SPEC | head -1` in a real shell: exit 0 once head is gone, no traceback."""
    e = engine(SPEC, pipeline="| head -1")
    deadline = time.monotonic() + STOP_TIMEOUT
    connects = 0
    # The engine notices the closed pipe at its next write, so keep connecting until it exits.
    while e.proc.poll() is None and time.monotonic() < deadline:
        conn_child().run()
        connects += 1
        with contextlib.suppress(subprocess.TimeoutExpired):
            e.proc.wait(timeout=0.2)
    result = e.wait()

    assert result.code == 0, f"pipeline (set -o pipefail) exit {result.code}: {result.stderr}"
    assert result.out_lines == [TABLE_HEADER]
    assert connects >= 1
    assert_quiet(result)
    assert "BrokenPipe" not in result.stderr
    bpf.assert_released(e)
