"""Perf-buffer losses counted once, with their cause: with a 1-page per-CPU perf buffer and a
connect storm while the engine is frozen (SIGSTOP), printed rows + the reported loss are
exactly the connects of the storm, and the loss is named a perf buffer's (the BPF side's failed
perf_submit and the kernel's lost-record callback report the same events: counting both
doubled the loss, and one was labelled "ring buffer full")."""

from __future__ import annotations

import os
import re
import signal

import pytest
import traffic

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

N = 5000
PORT = 61095  # above the ephemeral range: no other connect uses it


def storm() -> dict:
    return traffic.storm(PORT, N)


def test_perf_buffer_loss_counted_once(engine) -> None:
    # -P: only the storm's connects reach the buffer, so the accounting can be exact even
    # while other processes connect (a concurrent storm would fill the one page otherwise).
    e = engine(
        "specs/tcpconnect.yaml", "-o", "json", "--perf-buffer", "--buffer-pages", "1",
        "-P", str(PORT),
    )  # fmt: skip
    os.kill(e.engine_pid, signal.SIGSTOP)
    try:
        storm()
    finally:
        os.kill(e.engine_pid, signal.SIGCONT)
    result = e.stop()
    assert result.code == 0, result.stderr
    seen = sum(1 for r in result.json_rows() if r["dport"] == PORT)
    total = re.search(r"^(\d+) events lost in all$", result.stderr, re.M)
    assert total, result.stderr
    lost = int(total.group(1))
    steps = [
        int(n) for n in re.findall(r"^lost (\d+) events \(perf buffer full\)$", result.stderr, re.M)
    ]

    assert 0 < seen < N
    assert seen + lost == N, (seen, lost)
    assert sum(steps) == lost, result.stderr  # every "lost" line is part of the total, once
    assert "ring buffer" not in result.stderr, result.stderr
