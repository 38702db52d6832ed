"""Stops that used to go wrong: a closed stdout with no event coming, SIGHUP in count mode, and
a stop signal before tracing began (while planning, compiling or attaching).

Every stop is a normal one: exit 0, no traceback, nothing left loaded. A stop before tracing
prints no "Tracing" line (the engine never traced). Each wait ends on a readiness signal; its
bound (conftest's timeouts, minutes) catches a hang, not a slow machine.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from conftest import READY_TIMEOUT, RELEASE_TIMEOUT, orphan_tracepoint_progs

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/tcpconnect.yaml"
TABLE_HEADER = "PID    COMM         IP SADDR            DADDR            DPORT"
COUNT_HEADER = "LADDR                     RADDR                     RPORT                CONNECTS"
UNUSED_PORT = 61093  # above the ephemeral range: nothing connects to it
STOPS = [
    pytest.param(signal.SIGINT, id="SIGINT"),
    pytest.param(signal.SIGTERM, id="SIGTERM"),
    pytest.param(signal.SIGHUP, id="SIGHUP"),
]


def assert_no_orphans(bpf) -> None:
    """No tracepoint program without an owner appeared (the engine's own are gone with it)."""
    deadline = time.monotonic() + RELEASE_TIMEOUT
    while orphan_tracepoint_progs() - bpf.before_orphans:
        if time.monotonic() > deadline:
            pytest.fail(f"unheld tracepoint programs left: {sorted(orphan_tracepoint_progs())}")
        time.sleep(0.1)


def assert_clean_stop_before_tracing(result) -> None:
    assert result.code == 0, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr, result.stderr
    assert "KeyboardInterrupt" not in result.stderr, result.stderr
    assert not any(line.startswith("Tracing") for line in result.err_lines), result.stderr


def handles_stop_signals(pid: int) -> bool:
    """The engine's handlers are in: SIGHUP (which Python leaves alone) is caught."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(int(ln.split()[1], 16) for ln in status.splitlines() if ln.startswith("SigCgt"))
    return bool(caught & (1 << (signal.SIGHUP - 1)))


def wait_for_handlers(e) -> None:
    """Until the engine's stop handlers are in. Nothing announces that moment (the engine
    prints nothing before planning, and a stop there must print nothing), so the kernel's
    own record of it, SigCgt, is watched every few ms, as long as the engine starts: python
    and its imports take seconds on a loaded machine, so the bound is READY_TIMEOUT's."""
    started = time.monotonic()
    while not handles_stop_signals(e.engine_pid):
        assert e.proc.poll() is None, f"the engine exited before its handlers: {e.err.text()}"
        waited = time.monotonic() - started
        assert waited < READY_TIMEOUT, f"no stop handlers after {waited:.0f} s: {e.err.text()}"
        time.sleep(0.005)


def test_closed_pipe_noticed_without_any_event(engine, bpf):
    """`engine run SPEC -P PORT | head -1`: head leaves after the header and no event ever
    comes, so no write fails; the engine must notice the closed pipe by itself."""
    e = engine(SPEC, "-P", str(UNUSED_PORT), pipeline="| head -1")
    result = e.wait()

    assert result.code == 0, f"pipeline (set -o pipefail) exit {result.code}: {result.stderr}"
    assert result.out_lines == [TABLE_HEADER]
    assert "Traceback" not in result.stderr, result.stderr
    bpf.assert_released(e)


def test_sighup_in_count_mode_prints_counts(engine, bpf, conn_child):
    e = engine(SPEC, "-c")
    child = conn_child(connects=[(0, 3)]).run()
    result = e.stop(signal.SIGHUP)

    assert result.code == 0, result.stderr
    assert result.out_lines[:2] == ["", COUNT_HEADER]
    line = f"{'127.0.0.1':<25} {'127.0.0.1':<25} {child.ports[0]:<20} 3"
    assert line in result.out_lines[2:]
    assert "Traceback" not in result.stderr, result.stderr
    bpf.assert_released(e)


@pytest.mark.parametrize("sig", STOPS)
def test_stop_as_soon_as_the_engine_runs(engine, bpf, sig):
    """The signal lands the moment the engine's handlers are in (before planning, bcc and the
    compiler): a clean stop, not a KeyboardInterrupt traceback from wherever Python was."""
    e = engine(SPEC, ready=False)
    wait_for_handlers(e)
    e.proc.send_signal(sig)
    result = e.wait()

    assert_clean_stop_before_tracing(result)
    assert_no_orphans(bpf)


@pytest.mark.parametrize("sig", STOPS)
def test_stop_during_compile(engine, bpf, sig):
    """The signal lands after the alternative is chosen, while clang compiles: the engine stops
    there, attaches nothing further, never says "Tracing"."""
    e = engine(SPEC, ready=False)
    using = e.err.wait_for(
        lambda ls: any(x.startswith("probe 'connect': using") for x in ls), READY_TIMEOUT
    )
    assert using, f"no 'using' line within {READY_TIMEOUT:.0f} s: {e.err.text()}"
    e.proc.send_signal(sig)
    result = e.wait()

    assert_clean_stop_before_tracing(result)
    assert result.err_lines[0].startswith("probe 'connect': using "), result.stderr
    assert len(result.err_lines) == 1, result.stderr
    assert_no_orphans(bpf)
