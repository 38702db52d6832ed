"""`specs/gethostlatency.yaml` vs bcc's gethostlatency on the same lookups.

A child process calls libc's getaddrinfo, gethostbyname and gethostbyname2 (through ctypes,
so each call is exactly the libc function; Python's socket.gethostbyname is getaddrinfo) on
names from /etc/hosts, a known number of times each, after both tools are attached. The
engine and gethostlatency-bpfcc (run with libbcc's uprobe binding fixed: see
bcc_uprobe_fix.py) must report the same rows for the child's pid: same count, hosts in the same
order, same comm; each latency is positive, below the child's own wall time for the call, and
within LAT_TOLERANCE_MS of bcc's for the same call (both time the same call from the same
instruction; the difference is the other tool's handler and scheduling on a loaded machine).
`-p` attaches in one process only: a second child doing the same lookups is not seen.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import procs
import pytest
from conftest import CHILD_TIMEOUT, LineReader
from oracle import Oracle

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/gethostlatency.yaml"
FIX = str(Path(__file__).with_name("bcc_uprobe_fix.py"))
TOOL = "/usr/sbin/gethostlatency-bpfcc"
# measured: within 0.015 ms of each other on this machine with other tests running (bcc
# prints 2 decimals); 0.5 ms leaves room for a preempted handler on a loaded one
LAT_TOLERANCE_MS = 0.5
COMM = "gethost-test"
AF_INET, AF_INET6 = 2, 10
# (function, host, times): hosts are in /etc/hosts, so no lookup leaves the machine
CALLS = [("getaddrinfo", "localhost", 3), ("gethostbyname", "localhost", 2),
         ("gethostbyname2", "localhost", 1), ("getaddrinfo", "vm", 1),
         ("gethostbyname", "runsc", 1)]  # fmt: skip

CHILD = r"""
import ctypes, json, os, sys, time
libc = ctypes.CDLL("libc.so.6")
libc.gethostbyname.restype = ctypes.c_void_p
libc.gethostbyname2.restype = ctypes.c_void_p
if libc.prctl(15, sys.argv[2].encode(), 0, 0, 0) != 0:  # PR_SET_NAME
    sys.exit("prctl failed")
res = ctypes.c_void_p()
print(json.dumps({"pid": os.getpid()}), flush=True)
if sys.stdin.readline() != "go\n":
    sys.exit("not told to go")
walls = []
for fn, host, times in json.loads(sys.argv[1]):
    for _ in range(times):
        t = time.monotonic()
        if fn == "getaddrinfo":
            assert libc.getaddrinfo(host.encode(), None, None, ctypes.byref(res)) == 0
            libc.freeaddrinfo(res)
        elif fn == "gethostbyname":
            assert libc.gethostbyname(host.encode())
        else:
            assert libc.gethostbyname2(host.encode(), 2)
        walls.append((time.monotonic() - t) * 1000)
print(json.dumps({"walls": walls}), flush=True)
"""


class Child:
    """A looker-up with a known pid that waits for "go", then makes CALLS."""

    def __init__(self) -> None:
        self.proc = procs.spawn(
            [sys.executable, "-c", CHILD, json.dumps(CALLS), COMM],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.out = LineReader(self.proc.stdout)
        assert self.out.wait_for(lambda ls: len(ls) >= 1, CHILD_TIMEOUT), "child never started"
        self.pid = json.loads(self.out.lines[0])["pid"]

    def run(self) -> list[float]:
        """Go; the wall time (ms) of each call, in order."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        assert self.proc.wait(CHILD_TIMEOUT) == 0
        assert self.out.wait_for(lambda ls: len(ls) >= 2, CHILD_TIMEOUT)
        walls: list[float] = json.loads(self.out.lines[1])["walls"]
        return walls


class GetHostLatency(Oracle):
    """gethostlatency-bpfcc, ready on its header (printed once every uprobe is attached)."""

    name = "gethostlatency-bpfcc"

    def __init__(self, *args: str) -> None:
        env = {"PYTHONUNBUFFERED": "1", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
        argv = ["/usr/bin/python3", FIX, TOOL, *args]
        super().__init__(argv, lambda line: line.split()[:2] == ["TIME", "PID"], env)

    def rows(self, pid: int) -> list[tuple[str, float, str]]:
        """(comm, LATms, host) of each line of `pid`, in order."""
        out = []
        for line in self.finish():
            parts = line.split(None, 4)
            if len(parts) == 5 and parts[1] == str(pid):
                out.append((parts[2], float(parts[3]), parts[4]))
        return out


def expected_hosts() -> list[str]:
    return [host for _, host, times in CALLS for _ in range(times)]


def test_same_lookups_as_gethostlatency_bpfcc(engine) -> None:
    child = Child()
    oracle = GetHostLatency()
    e = engine(SPEC, "-o", "json")
    walls = child.run()
    e.wait_rows(lambda rows: sum(r["pid"] == child.pid for r in rows) >= len(walls))
    result = e.stop()
    theirs = oracle.rows(child.pid)
    assert result.code == 0, result.stderr
    rows = [r for r in result.json_rows() if r["pid"] == child.pid]
    assert [r["host"] for r in rows] == expected_hosts()
    assert [h for _, _, h in theirs] == expected_hosts()
    assert {r["comm"] for r in rows} == {c for c, _, _ in theirs} == {COMM}
    for row, (_, their_ms, _), wall in zip(rows, theirs, walls):
        assert 0 < row["lat"] <= wall, (row, wall)
        assert abs(row["lat"] - their_ms) <= LAT_TOLERANCE_MS, (row, their_ms)


def test_pid_option_attaches_in_that_process_only(engine) -> None:
    seen, unseen = Child(), Child()
    e = engine(SPEC, "-o", "json", "-p", str(seen.pid))
    unseen.run()
    walls = seen.run()
    e.wait_rows(lambda rows: sum(r["pid"] == seen.pid for r in rows) >= len(walls))
    result = e.stop()
    assert result.code == 0, result.stderr
    rows = result.json_rows()
    assert [r["host"] for r in rows if r["pid"] == seen.pid] == expected_hosts()
    assert {r["pid"] for r in rows} == {seen.pid}  # attached in that process: nothing else
