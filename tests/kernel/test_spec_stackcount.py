"""`specs/stackcount.yaml` (kernel and user stacks at sched/sched_process_fork, counted in the
kernel) against bpftrace's `@[kstack, ustack] = count()` on the same forks.

The child (spinprog.build_forker) forks N times from spawn_one(), once both tools are
attached. Both count exactly N forks, on the same kernel stacks frame for frame (bpftrace
prints `+offset`; the engine, like bcc, names only). User stacks: libc is built without frame
pointers, so both unwind from fork into libc and stop there: one frame each, the same count;
its name is libc's (an alias of the same address may differ between the two symbolizers)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import procs
import pytest
import spinprog
from conftest import CHILD_TIMEOUT, STOP_TIMEOUT
from oracle import Bpftrace, bpftrace_stacks, dump_probe

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/stackcount.yaml"
FORKS = 25


def start(tmp_path: Path):
    child = procs.spawn(
        [str(spinprog.build_forker(tmp_path)), str(FORKS)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert int(child.stdout.readline()) == child.pid
    return child


def say(child, line: str) -> None:
    child.stdin.write(line + "\n")
    child.stdin.flush()


def test_stacks_and_counts_agree_with_bpftrace(engine, tmp_path: Path) -> None:
    child = start(tmp_path)
    ours = engine(SPEC, "-p", str(child.pid), "-o", "json")
    probe = f"tracepoint:sched:sched_process_fork /pid == {child.pid}/"
    oracle = Bpftrace(probe + " { @[kstack, ustack] = count(); }\n" + dump_probe("@"))
    say(child, "go")
    assert child.stdout.readline() == "done\n"
    theirs = bpftrace_stacks(oracle.dump())
    result = ours.stop(timeout=STOP_TIMEOUT)
    say(child, "exit")
    assert child.wait(CHILD_TIMEOUT) == 0
    assert result.code == 0, result.stderr
    mine = {(tuple(r["kstack"]), tuple(r["ustack"])): r["count"] for r in result.json_rows()}
    print(f"engine {mine}\nbpftrace {theirs}")
    assert sum(mine.values()) == sum(theirs.values()) == FORKS
    by_kernel_mine = {k: n for (k, _), n in mine.items()}
    by_kernel_theirs = {k: n for (k, _), n in theirs.items()}
    assert by_kernel_mine == by_kernel_theirs
    assert any("kernel_clone" in k for k in by_kernel_mine), mine
    assert sorted(len(u) for (u,) in ((u,) for (_, u) in mine)) == sorted(
        len(u) for (_, u) in theirs
    )


def test_per_pid_kernel_only_and_folded(engine, tmp_path: Path) -> None:
    child = start(tmp_path)
    runs = {
        "-P": engine(SPEC, "-p", str(child.pid), "-P", "-K", "-o", "json"),
        "-f": engine(SPEC, "-p", str(child.pid), "-f"),
    }
    say(child, "go")
    assert child.stdout.readline() == "done\n"
    out = {flag: p.stop(timeout=STOP_TIMEOUT) for flag, p in runs.items()}
    say(child, "exit")
    assert child.wait(CHILD_TIMEOUT) == 0
    rows = out["-P"].json_rows()
    assert {(r["comm"], r["pid"]) for r in rows} == {("forker", child.pid)}
    assert all("ustack" not in r for r in rows) and sum(r["count"] for r in rows) == FORKS
    lines = out["-f"].out_lines
    assert sum(int(line.rsplit(" ", 1)[1]) for line in lines) == FORKS
    # without -P a line has no command (bcc's stackcount -f): user frames, then the kernel's
    assert all(
        line.endswith(f"kernel_clone;__traceiter_sched_process_fork {FORKS}") for line in lines
    ), lines
