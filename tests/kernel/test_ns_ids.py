"""`ns_pid` and `ns_tid`: a task's pid and thread id as its own pid namespace numbers them.

A child made with `unshare --pid --fork` is pid 1 in its namespace; it starts a thread, and
both call getppid() once, printing what getpid() and gettid() return there. The engine's rows
for the child's name must carry exactly those numbers as ns_pid and ns_tid, and host numbers
that differ from them (the host's pid of the child is never 1). A process of the host's own
namespace (this test's child without unshare) gets ns_pid == pid and ns_tid == tid.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "tests/specs/live/ns_ids.yaml"
CHILD = r"""
import ctypes, json, os, sys, threading
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)
sys.stdin.readline()
seen = [(os.getpid(), threading.get_native_id())]
os.getppid()
def other():
    seen.append((os.getpid(), threading.get_native_id()))
    os.getppid()
t = threading.Thread(target=other)
t.start()
t.join()
print(json.dumps(seen), flush=True)
"""


def run_child(prefix: list[str], comm: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*prefix, sys.executable, "-I", "-c", CHILD, comm],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_namespace_pids_are_what_the_task_sees(engine) -> None:
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is missing"
    inner = run_child([unshare, "--pid", "--fork", "--mount-proc"], "ns-inner")
    host = run_child([], "ns-host")
    try:
        runs = {c: engine(SPEC, "-o", "json", "-n", c) for c in ("ns-inner", "ns-host")}
        seen = {}
        for comm, child in (("ns-inner", inner), ("ns-host", host)):
            out, _ = child.communicate("go\n", timeout=60)
            assert child.returncode == 0
            seen[comm] = [tuple(x) for x in json.loads(out)]
        results = {c: e.stop() for c, e in runs.items()}
    finally:
        for child in (inner, host):
            child.kill()
            child.wait()
    for comm, result in results.items():
        assert result.code == 0, result.stderr
        rows = [r for r in result.json_rows() if r["comm"] == comm]
        assert sorted((r["ns_pid"], r["ns_tid"]) for r in rows) == sorted(seen[comm])
        if comm == "ns-inner":
            assert seen[comm][0][0] == 1  # pid 1 of its own namespace
            assert all(r["pid"] != r["ns_pid"] and r["tid"] != r["ns_tid"] for r in rows)
            assert len({r["pid"] for r in rows}) == 1 and len({r["tid"] for r in rows}) == 2
        else:
            assert all(r["pid"] == r["ns_pid"] and r["tid"] == r["ns_tid"] for r in rows)
