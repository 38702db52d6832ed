"""`specs/offcputime.yaml` (sched_switch: the time each thread spends off CPU, summed in the
kernel by the stacks where it blocked) against a bpftrace script doing the same on the same
child, at the same time.

The child (spinprog.build_sleeper) sleeps NAPS x NAP_MS in nanosleep, then blocks in a read of
its stdin until the test writes, PIPE_MS later. Both tools key the time by the kernel stack the
thread blocked in (compared frame for frame; bpftrace's `+offset` dropped) and sum whole
microseconds per block. Stated tolerance: each kernel stack's total differs by at most 2 ms
between the tools (each block is timed by each tool's own program, microseconds apart), plus
the time the hypervisor took from this VM's CPUs meanwhile (/proc/stat's steal: a vCPU paused
between the two programs' clock reads puts the pause in one tool's block only; 2.2 ms on one
block was seen so), and the nanosleep stack holds at least NAPS x NAP_MS, the read's at least
PIPE_MS.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import procs
import pytest
import spinprog
from conftest import CHILD_TIMEOUT, STOP_TIMEOUT
from oracle import Bpftrace, bpftrace_stacks, dump_probe

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/offcputime.yaml"
NAPS, NAP_MS, PIPE_MS = 20, 10, 200
TOLERANCE_US = 2000


def script(pid: int) -> str:
    return (
        f"tracepoint:sched:sched_switch /pid == {pid} && args->prev_pid != 0/ {{\n"
        "  @start[args->prev_pid] = nsecs; @ks[args->prev_pid] = kstack;\n"
        "}\n"
        "tracepoint:sched:sched_switch /@start[args->next_pid]/ {\n"
        "  @us[@ks[args->next_pid]] = sum((nsecs - @start[args->next_pid]) / 1000);\n"
        "  delete(@start[args->next_pid]); delete(@ks[args->next_pid]);\n"
        "}\n"
        "END { clear(@start); clear(@ks); }\n" + dump_probe("@us")
    )


def start_sleeper(tmp_path: Path) -> subprocess.Popen[str]:
    child = procs.spawn(
        [str(spinprog.build_sleeper(tmp_path)), str(NAPS), str(NAP_MS)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert int(child.stdout.readline()) == child.pid
    return child


def sleep_and_wake(child: subprocess.Popen[str]) -> None:
    """The naps, then PIPE_MS blocked in read() until the test writes a byte."""
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline() == "napped\n"
    time.sleep(PIPE_MS / 1000)  # how long the child stays blocked in read()
    child.stdin.write("x")
    child.stdin.flush()
    assert child.stdout.readline() == "done\n"


def steal_us() -> float:
    """Time the hypervisor ran something else on this VM's CPUs, all CPUs, since boot."""
    with open("/proc/stat") as f:
        fields = f.readline().split()  # cpu user nice system idle iowait irq softirq steal
    return int(fields[8]) * 1e6 / os.sysconf("SC_CLK_TCK")


def test_blocked_time_by_stack_agrees_with_bpftrace(engine, tmp_path: Path) -> None:
    child = start_sleeper(tmp_path)
    ours = engine(SPEC, "-p", str(child.pid), "-K", "-o", "json")
    oracle = Bpftrace(script(child.pid))
    stolen = steal_us()
    sleep_and_wake(child)
    stolen = steal_us() - stolen
    theirs = {k[0]: n for k, n in bpftrace_stacks(oracle.dump()).items()}
    result = ours.stop(timeout=STOP_TIMEOUT)
    child.stdin.write("\nexit\n")
    child.stdin.flush()
    assert child.wait(CHILD_TIMEOUT) == 0
    assert result.code == 0, result.stderr
    rows = result.json_rows()
    assert {(r["comm"], r["pid"]) for r in rows} == {("sleeper", child.pid)}
    mine = {tuple(r["kstack"]): r["us"] for r in rows}
    for k in sorted(set(mine) | set(theirs), key=lambda k: -mine.get(k, 0)):
        print(f"{mine.get(k, 0):>9} {theirs.get(k, 0):>9}  {';'.join(reversed(k))[-110:]}")
    for k in set(mine) | set(theirs):
        assert abs(mine.get(k, 0) - theirs.get(k, 0)) <= TOLERANCE_US + stolen, (k, stolen)
    sleeps = [n for k, n in mine.items() if "do_nanosleep" in k]
    reads = [n for k, n in mine.items() if any("pipe_read" in f or "vfs_read" in f for f in k)]
    assert sleeps and sum(sleeps) >= NAPS * NAP_MS * 1000, mine
    assert reads and sum(reads) >= PIPE_MS * 1000, mine


def test_user_stacks_and_min_block(engine, tmp_path: Path) -> None:
    """-U: only user stacks (through main: libc has no frame pointers, so the libc function
    and then main's frame); -m keeps only blocks of at least MIN_US."""
    child = start_sleeper(tmp_path)
    users = engine(SPEC, "-p", str(child.pid), "-U", "-o", "json")
    long_only = engine(SPEC, "-p", str(child.pid), "-K", "-m", str(PIPE_MS * 500), "-o", "json")
    sleep_and_wake(child)
    u, m = users.stop(timeout=STOP_TIMEOUT), long_only.stop(timeout=STOP_TIMEOUT)
    child.stdin.write("\nexit\n")
    child.stdin.flush()
    assert child.wait(CHILD_TIMEOUT) == 0
    rows = u.json_rows()
    assert all("kstack" not in r for r in rows)
    assert sum(r["us"] for r in rows if "main" in r["ustack"]) >= NAPS * NAP_MS * 1000, rows
    long_rows = m.json_rows()
    # only the pipe read blocked that long: the 10 ms naps are all under PIPE_MS / 2
    assert len(long_rows) == 1 and long_rows[0]["us"] >= PIPE_MS * 1000, long_rows
