"""The histogram bench measures what it claims: for each side (the engine's
bench/specs/connlat_hist.yaml, bpftrace's bench/peers/connlat_hist.bt) one real trial of
bench.hist with a small storm; the histogram's total is exactly the storm's connects (the
bench's check column), both of the tool's programs are found, and their run time is read."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench import hist

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

N = 2000


@pytest.mark.parametrize("name", sorted(hist.HIST_TOOLS))
def test_trial_counts_every_connect(name: str, tmp_path: Path) -> None:
    if shutil.which("bpftool") is None or shutil.which("bpftrace") is None:
        pytest.skip("needs bpftool and bpftrace (scripts/setup.sh installs them)")
    before = hist.STATS_SYSCTL.read_text()
    with hist.bpf_stats():
        t = hist.hist_trial(hist.HIST_TOOLS[name], 0, N, tmp_path, 60)
    assert hist.STATS_SYSCTL.read_text() == before
    assert t.error == ""
    assert (t.count, t.bucket_sum) == (N, N)
    assert t.ok
    assert t.progs == 2  # connect and established; bpftrace's END probe is no perf event
    # inet_sock_set_state fires several times per connect (both ends), each program each time
    assert t.bpf_runs_per_event >= 2 * 2
    assert t.bpf_ns_per_event > 0
    assert t.startup_s > 0
