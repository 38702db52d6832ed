"""Lost events are reported, not hidden: with a deliberately tiny ring buffer (1 page, about 50
events) and a connect storm while the engine is frozen (SIGSTOP, so it cannot drain), the
engine prints fewer rows than connects and says on stderr how many it lost; printed + reported
lost is exactly every connect of the storm (the filter keeps other traffic out in the kernel)."""

from __future__ import annotations

import os
import re
import signal

import pytest
import traffic

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

N = 5000
PORT = 61091  # above the ephemeral range: no other connect uses it


def storm() -> dict:
    return traffic.storm(PORT, N)


@pytest.mark.parametrize("wakeup", ["1", "32"])
def test_tiny_buffer_reports_what_it_lost(engine, wakeup: str) -> None:
    # -P PORT: only the storm's connects reach the buffer (in the kernel), so other
    # traffic on the machine cannot fill it, and the accounting is exact.
    e = engine(
        "specs/tcpconnect.yaml", "-o", "json", "--buffer-pages", "1", "--wakeup", wakeup,
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
    assert 0 < seen < N
    assert seen + lost == N, (seen, lost)
    assert re.search(r"^lost \d+ events \(ring buffer full\)$", result.stderr, re.M)
