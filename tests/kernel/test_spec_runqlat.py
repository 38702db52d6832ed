"""`specs/runqlat.yaml` against a bpftrace script of the same logic, both tracing the same child
at the same time.

The child sleeps 1 ms 400 times: each wakeup is one latency for both tools. Latencies are
times, so the comparison has tolerances: the totals within 5% of each other (the two tools'
programs run one after the other on each event, and a wakeup at the edge of the window may be
seen by one only), and the histograms at most BUCKET_SHIFT buckets apart on average (below).
Exact: our per-process histogram (-P) is keyed by the child's pid."""

from __future__ import annotations

import subprocess
import sys

import procs
import pytest
from conftest import CHILD_TIMEOUT
from oracle import BpftraceJson, bucket_shift, by_index

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/runqlat.yaml"
CHILD = "import sys, time\nsys.stdin.readline()\nfor _ in range(400):\n    time.sleep(0.001)\n"
# Both tools time the same two tracepoint hits, so one latency differs between them only by
# how far apart their programs run at each hit, small next to the latency: a sample changes
# bucket only when it lies that close to a power-of-two edge, and then by one bucket. After a
# 1 ms sleep most wakeups take 4-16 us, so many lie near the 8 us edge. The shift counts those
# moves; measured on this 2-vCPU machine (shared with other test runs, load average 4.6-4.9),
# then with two more CPU-bound python loops, a `ping -i 0.01` and a bpftrace program on every
# syscall beside it (load average 5.2-8.7):
#
#   runs                   totals (ours, bpftrace)   old overlap   bucket shift
#   5, machine as it was   401-404, equal in each    0.938-0.985   0.020-0.067
#   15, loaded             397-405, within 4         0.841-0.993   0.010-0.171
#
# so the old "overlap >= 90%" failed 4 of the 15 loaded runs, none of them wrong. A histogram
# one bucket off is 1.0 or more (the engine's bucket index +1, tried: 1.047 and 1.030), so 0.4
# leaves room above the worst measured and fails a shifted engine; a lost half of the counts
# (tried: 205 and 194 of ~400) fails the totals. The text the oracle printed before, with
# `[1K, 2K)` labels past 512 us that the old parser skipped, lost up to 12% of its total under
# load (357 of 404): both sides are JSON now.
BUCKET_SHIFT = 0.4

SCRIPT = """
BEGIN { printf("READY\\n"); }
tracepoint:sched:sched_wakeup, tracepoint:sched:sched_wakeup_new /args->pid == CHILD/
{ @start[args->pid] = nsecs; }
tracepoint:sched:sched_switch /args->prev_pid == CHILD && (args->prev_state & 0xff) == 0/
{ @start[args->prev_pid] = nsecs; }
tracepoint:sched:sched_switch /args->next_pid == CHILD && @start[args->next_pid]/
{ @usecs = hist((nsecs - @start[args->next_pid]) / 1000); delete(@start[args->next_pid]); }
END { clear(@start); }
"""


def test_histogram_agrees_with_bpftrace(engine) -> None:
    """bcc's runqlat-bpfcc runs here but reads task_struct through Debian 6.1's headers, so
    its -p filter (p->tgid) never matches on this kernel; bpftrace reads the same scheduler
    tracepoints through their tracefs formats, so it is the oracle for one process.
    sched_switch's tracefs `prev_state` is TASK_REPORT_MAX (0x100) for a preempted task, which
    is still running (the kernel's __trace_sched_switch_state); bcc's runqlat and the spec
    read task->__state == 0, which counts that re-queue too, so the oracle masks the report
    bits. Both histograms are read as JSON: bpftrace's text labels larger buckets `[1K, 2K)`."""
    child = procs.spawn([sys.executable, "-I", "-c", CHILD], stdin=subprocess.PIPE, text=True)
    oracle = BpftraceJson(SCRIPT.replace("CHILD", str(child.pid)))
    try:
        e = engine(SPEC, "-p", str(child.pid), "-o", "json")
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.close()
        assert child.wait(CHILD_TIMEOUT) == 0
        result = e.stop()
        records = oracle.stop()
    finally:
        child.kill()
        oracle.kill()
    assert result.code == 0, result.stderr
    [hist] = result.json_rows()
    assert (hist["aggregation"], hist["unit"]) == ("latency", "usecs")
    ours = by_index(hist["buckets"])
    [their_rows] = [r["data"]["@usecs"] for r in records if r.get("type") == "hist"]
    theirs = by_index(their_rows)
    total_ours, total_theirs = sum(ours.values()), sum(theirs.values())
    assert total_ours == hist["count"]
    assert total_ours >= 380, ours  # nearly every 1 ms sleep is a wakeup (timer slack merges a few)
    assert abs(total_ours - total_theirs) <= 0.05 * total_theirs, (ours, theirs)
    assert bucket_shift(ours, theirs) <= BUCKET_SHIFT, (ours, theirs)


def test_bucket_shift_counts_the_moved_mass() -> None:
    """The measure itself: 0 for one shape, the moved share for a partial move, 1 per bucket
    for a whole shift; counts scaled alike are the same shape (the totals check is the one
    that sees them)."""
    a = {3: 90, 4: 10}
    assert bucket_shift(a, a) == 0
    assert bucket_shift(a, {3: 80, 4: 20}) == pytest.approx(0.1)
    assert bucket_shift(a, {4: 90, 5: 10}) == pytest.approx(1.0)
    assert bucket_shift(a, {5: 90, 6: 10}) == pytest.approx(2.0)
    assert bucket_shift({3: 45, 4: 5}, a) == 0
    assert bucket_shift({}, a) == float("inf")


def test_per_process_histogram_is_keyed_by_the_pid(engine) -> None:
    child = procs.spawn([sys.executable, "-I", "-c", CHILD], stdin=subprocess.PIPE, text=True)
    try:
        e = engine(SPEC, "-p", str(child.pid), "-P", "-m", "-o", "json")
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.close()
        assert child.wait(CHILD_TIMEOUT) == 0
        result = e.stop()
    finally:
        child.kill()
    assert result.code == 0, result.stderr
    rows = result.json_rows()
    assert [(r["aggregation"], r["pid"], r["unit"]) for r in rows] == [
        ("latency_ms", child.pid, "msecs")
    ]
    assert rows[0]["count"] >= 380
    assert sum(b["count"] for b in rows[0]["buckets"]) == rows[0]["count"]
