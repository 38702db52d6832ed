"""The `func` builtin on this kernel: the target that fired, by name, in every output.

Two probes on two syscall tracepoints both give `f: func`; in the C each function's `func` is
its own constant, in user space the plan's table names it. A child (its comm set to COMM, the
probes' filter) waits until every tracer is attached, then calls getppid() N_PPID times and
getpgid(0) N_PGID times. `count by f` must be exactly that in JSON (`engine run -o json`), CSV
(`-o csv`) and Prometheus labels (`engine serve`), and equal bpftrace's `@[probe] = count()`
on the same calls.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import procs
import pytest
from conftest import CHILD_TIMEOUT, READY_TIMEOUT, REPO, STOP_TIMEOUT
from oracle import BpftraceJson

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

COMM = "wild-func"
N_PPID, N_PGID = 31, 17
PPID, PGID = "syscalls/sys_enter_getppid", "syscalls/sys_enter_getpgid"
EXPECTED = {PPID: N_PPID, PGID: N_PGID}
SPEC = f"""\
name: funcs
probes:
  - name: ppid
    attach:
      - tracepoint: {PPID}
    fields:
      f: func
      comm: comm
    filter: comm == "{COMM}"
  - name: pgid
    attach:
      - tracepoint: {PGID}
    fields:
      f: func
      comm: comm
    filter: comm == "{COMM}"
output:
  aggregations:
    - {{name: calls, count: true, header: COUNT, by: [f]}}
"""
CHILD = f"""
import ctypes, os, sys
libc = ctypes.CDLL(None)
libc.prctl(15, b"{COMM}", 0, 0, 0)
sys.stdin.readline()
for _ in range({N_PPID}):
    os.getppid()
for _ in range({N_PGID}):
    os.getpgid(0)
"""
SERVING = re.compile(r"serving http://127\.0\.0\.1:(\d+)/metrics")


class Serve:
    """`engine serve SPEC --listen 127.0.0.1:0`, its port read from stderr."""

    def __init__(self, spec: str) -> None:
        argv = [sys.executable, "-m", "engine.cli", "serve", spec, "--listen", "127.0.0.1:0"]
        self.proc = procs.spawn(
            argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self.port = 0
        ready = threading.Event()

        def pump() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.lines.append(line)
                m = SERVING.search(line)
                if m:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(READY_TIMEOUT) or not self.port:
            procs.kill(self.proc)
            pytest.fail("engine serve did not start:\n" + "".join(self.lines))

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=30) as r:
            return r.read().decode()


def test_func_names_the_target_in_every_output(engine, tmp_path: Path) -> None:
    spec = tmp_path / "funcs.yaml"
    spec.write_text(SPEC)
    child = procs.spawn(
        [sys.executable, "-I", "-c", CHILD], stdin=subprocess.PIPE, text=True, cwd="/"
    )
    serve = Serve(str(spec))
    as_json = engine(str(spec), "-o", "json")
    as_csv = engine(str(spec), "-o", "csv")
    oracle = BpftraceJson(
        'BEGIN { printf("READY\\n"); }\n'
        "tracepoint:syscalls:sys_enter_getppid,tracepoint:syscalls:sys_enter_getpgid "
        f'/comm == "{COMM}"/ {{ @[probe] = count(); }}'
    )
    assert child.stdin is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.wait(CHILD_TIMEOUT) == 0
    theirs = {
        k.removeprefix("tracepoint:").replace(":", "/", 1): v
        for record in oracle.stop()
        if record.get("type") == "map"
        for k, v in record["data"]["@"].items()
    }
    exposition = serve.metrics()
    procs.kill(serve.proc)
    got_json = as_json.stop(timeout=STOP_TIMEOUT)
    got_csv = as_csv.stop(timeout=STOP_TIMEOUT)
    assert got_json.code == 0 and got_csv.code == 0, got_json.stderr + got_csv.stderr

    assert theirs == EXPECTED
    assert {r["f"]: r["count"] for r in got_json.json_rows()} == EXPECTED
    rows = list(csv.DictReader(io.StringIO(got_csv.stdout)))
    assert {r["F"]: int(r["COUNT"]) for r in rows} == EXPECTED, got_csv.stdout
    labelled = {
        m[1]: int(float(m[2]))
        for m in re.finditer(r'^\w+\{[^}]*\bf="([^"]+)"[^}]*\} (\S+)$', exposition, re.M)
    }
    assert labelled == EXPECTED, exposition
