"""The sampling attach family on the running kernel: `perf_event: software:page-faults:1` runs
once per page fault of the child (counted exactly against what the child touched), `profile:`
on a list of CPUs samples only there, a CPU that is not online fails the run with nothing left
attached, and a hardware event is refused where the machine has no CPU PMU.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import procs
import pytest
import spinprog
from conftest import CHILD_TIMEOUT, STOP_TIMEOUT, EngineProc, prog_ids_held_by_anyone

from engine.attach.perf import PMU_CPU

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

PAGES = 300
# touches PAGES fresh anonymous pages (each a minor fault) once told to, then waits to exit
TOUCH = f"""
import mmap, sys
print("ready", flush=True)
sys.stdin.readline()
m = mmap.mmap(-1, {PAGES} * mmap.PAGESIZE)
for i in range({PAGES}):
    m[i * mmap.PAGESIZE] = 1
print("done", flush=True)
sys.stdin.readline()
"""
SPEC = """\
name: sampling
options:
  pid: {flag: -p/--pid, type: u32}
probes:
  - name: sample
    attach:
      - ATTACH
        where: tgid == $pid
    fields:
      cpu: cpu
output:
  aggregations:
    - {name: samples, count: true, by: [cpu]}
"""


def spec(tmp_path: Path, attach: str) -> str:
    path = tmp_path / "sampling.yaml"
    path.write_text(SPEC.replace("ATTACH", attach))
    return str(path)


def counts(result) -> dict[int, int]:
    assert result.code == 0, result.stderr
    return {row["cpu"]: row["count"] for row in result.json_rows()}


def test_every_page_fault_of_the_child(engine, tmp_path: Path) -> None:
    child = procs.spawn(
        [sys.executable, "-c", TOUCH], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline() == "ready\n"
    ours = engine(
        spec(tmp_path, "perf_event: software:page-faults:1"), "-p", str(child.pid), "-o", "json"
    )
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline() == "done\n"
    faults = sum(counts(ours.stop(timeout=STOP_TIMEOUT)).values())
    child.stdin.write("exit\n")
    child.stdin.flush()
    assert child.wait(CHILD_TIMEOUT) == 0
    # each touched page faults once; the interpreter's own work between "go" and "done" adds a
    # few (its allocations), never fewer
    assert PAGES <= faults <= PAGES + 200, faults


def test_profile_on_a_list_of_cpus_samples_only_there(engine, tmp_path: Path) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    prog = spinprog.build(tmp_path)
    child = procs.spawn([str(prog)], stdout=subprocess.PIPE, text=True)  # free to run anywhere
    assert int(child.stdout.readline()) == child.pid
    target = f"profile: hz:99 cpus:{cpus[0]}"
    ours = engine(spec(tmp_path, target), "-p", str(child.pid), "-o", "json")
    deadline = time.monotonic() + 3.0  # a sampling window
    while time.monotonic() < deadline:
        os.sched_setaffinity(child.pid, {cpus[0]})
        time.sleep(0.2)
    found = counts(ours.stop(timeout=STOP_TIMEOUT))
    procs.kill(child)
    assert set(found) == {cpus[0]} and found[cpus[0]] > 30, found


def test_a_cpu_that_is_not_online_fails_with_nothing_attached(tmp_path: Path) -> None:
    before = prog_ids_held_by_anyone()
    proc = EngineProc(spec(tmp_path, "profile: hz:49 cpus:4095"), ())
    result = proc.wait(STOP_TIMEOUT)
    assert result.code == 1, result.stderr
    assert "CPU 4095 is not online" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert prog_ids_held_by_anyone() <= before


@pytest.mark.skipif(os.path.isdir(PMU_CPU), reason="this machine has a CPU PMU")
def test_a_hardware_event_is_refused_without_a_pmu(tmp_path: Path) -> None:
    proc = EngineProc(spec(tmp_path, "perf_event: hardware:cycles:100000"), ())
    result = proc.wait(STOP_TIMEOUT)
    assert result.code == 1, result.stderr
    assert "a hardware event needs a CPU PMU, which this machine lacks" in result.stderr, (
        result.stderr
    )
