"""`specs/funclatency.yaml` (uprobe + uretprobe on libc's usleep, entry time kept by thread id,
log2 histogram of microseconds) against bpftrace on the same calls.

The program of tests/kernel/uprog.py calls usleep(SLEEP_US) N_SLEEPS times once both tracers
are attached (the engine with `-p` its pid, bpftrace filtered by it). Counts are exact: both
see N_SLEEPS calls. Buckets: each tool times each call with its own probes, microseconds
apart, so a call within a few microseconds of a power of two may land in neighbouring buckets
in the two; SLEEP_US = 3000 lasts 3.0-3.3 ms here (timer slack, wake-up), far from 2048 and
4096, so both put every call in [2048, 4096). Stated tolerance: totals equal, and each
bucket's counts differ by at most 2.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import procs
import pytest
import uprog
from conftest import CHILD_TIMEOUT, STOP_TIMEOUT
from oracle import BpftraceJson

from engine.kernel import elf

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/funclatency.yaml"
SLEEP_US, N_SLEEPS = 3000, 40
TOLERANCE = 2  # calls per bucket the two tools may place differently (see the docstring)


def start(prog: Path):
    child = procs.spawn(
        [str(prog), "0", "0", "0", str(SLEEP_US), str(N_SLEEPS)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    child.stdout.readline()
    return child


def go(child) -> None:
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline().startswith("done")
    child.stdin.write("exit\n")
    child.stdin.flush()
    assert child.wait(CHILD_TIMEOUT) == 0


def test_latency_histogram_agrees_with_bpftrace(engine, tmp_path: Path) -> None:
    prog = uprog.build(tmp_path)
    child = start(prog)
    libc = elf.resolve_library("c")
    ours = engine(SPEC, "-p", str(child.pid), "-o", "json")
    oracle = BpftraceJson(
        'BEGIN { printf("READY\\n"); }\n'
        f"uprobe:{libc}:usleep /pid == {child.pid}/ {{ @s[tid] = nsecs; }}\n"
        f"uretprobe:{libc}:usleep /pid == {child.pid} && @s[tid]/ "
        "{ @us = hist((nsecs - @s[tid]) / 1000); delete(@s[tid]); }\n"
        f"uprobe:{prog}:other /pid == {child.pid}/ {{ print(@us); }}\n"
        "END { clear(@s); }"
    )
    go(child)
    records = uprog.printed(oracle, "hist")
    result = ours.stop(timeout=STOP_TIMEOUT)
    assert result.code == 0, result.stderr
    (row,) = result.json_rows()
    assert (row["aggregation"], row["unit"], row["count"]) == ("latency", "usecs", N_SLEEPS)
    mine = {b["min"]: b["count"] for b in row["buckets"] if b["count"]}
    hist = next(r["data"]["@us"] for r in records if r.get("type") == "hist")
    theirs = {b["min"]: b["count"] for b in hist if b["count"]}
    print(f"funclatency usecs: engine {mine} (sum {row['sum']}), bpftrace {theirs}")
    assert sum(theirs.values()) == N_SLEEPS
    for low in set(mine) | set(theirs):
        assert abs(mine.get(low, 0) - theirs.get(low, 0)) <= TOLERANCE, (mine, theirs)
    assert mine.get(2048, 0) >= N_SLEEPS - TOLERANCE, mine


def test_milliseconds(engine, tmp_path: Path) -> None:
    child = start(uprog.build(tmp_path))
    ours = engine(SPEC, "-p", str(child.pid), "-m", "-o", "json")
    go(child)
    result = ours.stop(timeout=STOP_TIMEOUT)
    assert result.code == 0, result.stderr
    (row,) = result.json_rows()
    assert (row["aggregation"], row["unit"], row["count"]) == ("latency_ms", "msecs", N_SLEEPS)
    mine = {b["min"]: b["count"] for b in row["buckets"] if b["count"]}
    assert mine.get(2, 0) >= N_SLEEPS - TOLERANCE, mine  # 3 ms: the [2, 4) bucket
