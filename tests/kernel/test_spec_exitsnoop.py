"""`specs/exitsnoop.yaml` against bpftrace, on children that exit with known codes and signals.

bcc's exitsnoop-bpfcc runs here but prints garbage (PID 4294936706, PPID 0: it reads
task_struct through the headers of another kernel), so the oracle is a bpftrace script on the
same tracepoint at the same time. Each child names itself (prctl), says it is up, and waits;
after HOLD seconds the test ends it: with exit codes 0, 3 and 255, or SIGKILL, SIGTERM and
SIGUSR1. Exact: comm, pid, ppid, tid, exit code and signal, in both tools and as wait(2) saw
them. AGE is a time: within [HOLD, the test's wall time], and within 50 ms of bpftrace's."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import procs
import pytest
from conftest import CHILD_TIMEOUT
from oracle import BpftraceJson

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/exitsnoop.yaml"
HOLD = 0.3
CHILD = """
import ctypes, sys
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)
print("up", flush=True)
sys.stdin.readline()
sys.exit(int(sys.argv[2]))
"""
# comm -> (exit code it exits with, signal it is killed by)
CASES = {
    "h8code0": (0, 0),
    "h8code3": (3, 0),
    "h8code255": (255, 0),
    "h8kill": (0, signal.SIGKILL),
    "h8term": (0, signal.SIGTERM),
    "h8usr1": (0, signal.SIGUSR1),
}
SCRIPT = """
BEGIN { printf("READY\\n"); }
tracepoint:sched:sched_process_exit /pid == tid && curtask->real_parent->tgid == %d/ {
  printf("EXIT %%s %%d %%d %%d %%d %%llu\\n", comm, pid, curtask->real_parent->tgid, tid,
         curtask->exit_code, nsecs - curtask->start_time);
}
"""


def spawn(comm: str, code: int) -> subprocess.Popen[str]:
    child = procs.spawn(
        [sys.executable, "-I", "-c", CHILD, comm, str(code)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd="/",
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "up\n"
    return child


def end(child: subprocess.Popen[str], sig: int) -> int:
    """Release the child (it exits with its code) or kill it; its wait(2) return code."""
    assert child.stdin is not None and child.stdout is not None
    if sig:
        child.send_signal(sig)
    else:
        child.stdin.write("go\n")
        child.stdin.flush()
    code = child.wait(CHILD_TIMEOUT)
    child.stdin.close()
    child.stdout.close()
    return code


def test_codes_signals_and_ages_match_bpftrace(engine) -> None:
    oracle = BpftraceJson(SCRIPT % os.getpid())
    children: dict[str, subprocess.Popen[str]] = {}
    try:
        started = time.monotonic()
        children = {comm: spawn(comm, code) for comm, (code, _) in CASES.items()}
        ours = engine(SPEC, "-o", "json")
        one = engine(SPEC, "-p", str(children["h8code3"].pid))  # a table, one process
        failed = engine(SPEC, "-x", "-o", "json")  # error exits only: bcc's -x
        time.sleep(HOLD)
        waited = {comm: end(children[comm], sig) for comm, (_, sig) in CASES.items()}
        wall = time.monotonic() - started
        result, only, errors = ours.stop(), one.stop(), failed.stop()
        theirs = [
            r["data"].split()[1:]
            for r in oracle.stop()
            if r.get("type") == "printf" and r["data"].startswith("EXIT ")
        ]
    finally:
        oracle.kill()
        for child in children.values():
            child.kill()
    assert result.code == 0, result.stderr
    assert only.code == 0, only.stderr
    assert errors.code == 0, errors.stderr
    assert waited == {c: (-sig if sig else code) for c, (code, sig) in CASES.items()}
    pids = {child.pid: comm for comm, child in children.items()}
    rows = {r["pid"]: r for r in result.json_rows() if r["pid"] in pids}
    assert {
        pid: (r["pcomm"], r["ppid"], r["tid"], r["code"], r["signal"]) for pid, r in rows.items()
    } == {pid: (comm, os.getpid(), pid, *CASES[comm]) for pid, comm in pids.items()}
    # other children of this process exit too (the engine fixture runs bpftool): compare ours
    their_rows = {int(t[1]): t for t in theirs if int(t[1]) in pids}
    assert set(their_rows) == set(rows) == set(pids)
    for pid, (comm, _, t_ppid, t_tid, status, age_ns) in their_rows.items():
        assert (comm, int(t_ppid), int(t_tid)) == (pids[pid], os.getpid(), pid)
        assert ((int(status) >> 8) & 0xFF, int(status) & 0x7F) == (
            rows[pid]["code"],
            rows[pid]["signal"],
        )
        assert HOLD <= rows[pid]["age"] <= wall
        assert abs(rows[pid]["age"] - int(age_ns) / 1e9) < 0.05
    # -x: every child but the one that exited 0 (bcc's "error exits": a code or a signal)
    failed_comms = {r["pcomm"] for r in errors.json_rows() if r["pid"] in pids}
    assert failed_comms == {c for c, (code, sig) in CASES.items() if code or sig}
    # -p: the one process, in a table whose AGE(s) has 3 decimals
    lines = only.out_lines
    assert lines[0].split() == ["PCOMM", "PID", "PPID", "TID", "AGE(s)", "EXIT_CODE", "SIGNAL"]
    pid3 = children["h8code3"].pid
    assert [ln.split() for ln in lines[1:]] == [
        ["h8code3", str(pid3), str(os.getpid()), str(pid3), lines[1].split()[4], "3", "0"]
    ]
    assert re.fullmatch(r"\d+\.\d{3}", lines[1].split()[4])
    assert HOLD <= float(lines[1].split()[4]) <= wall
