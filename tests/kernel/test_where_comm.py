"""`comm` in an alternative's `where` and in a field's value (it is read into a local char[16]
there; a filter compares the event's comm field): children named h21wx, h21wy, h21wz and
h21other each call getppid once; `where: startswith(comm, "h21w") and comm != "h21wx"` keeps
exactly h21wy's and h21wz's calls, and `named: comm == "h21wy"` is 1 for h21wy's only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = """\
name: wherecomm
probes:
  - name: p
    attach:
      - tracepoint: syscalls/sys_enter_getppid
        where: startswith(comm, "h21w") and comm != "h21wx"
    fields:
      pid: tgid
      named: comm == "h21wy"
output:
  columns: [pid, named]
"""
CHILD = "import ctypes, os, sys\nctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)\n"
CHILD += "os.getppid()\nprint(os.getpid())\n"


def test_comm_in_where_and_values(engine, tmp_path: Path) -> None:
    spec = tmp_path / "wherecomm.yaml"
    spec.write_text(SPEC)
    e = engine(str(spec), "-o", "json")
    pids = {}
    for name in ("h21wx", "h21wy", "h21wz", "h21other"):
        done = subprocess.run([sys.executable, "-I", "-c", CHILD, name], capture_output=True,
                              text=True, timeout=60, check=True)  # fmt: skip
        pids[name] = int(done.stdout)
    e.wait_rows(lambda rows: any(r["pid"] == pids["h21wz"] for r in rows))
    result = e.stop()
    assert result.code == 0, result.stderr
    mine = {r["pid"]: r["named"] for r in result.json_rows() if r["pid"] in pids.values()}
    assert mine == {pids["h21wy"]: 1, pids["h21wz"]: 0}
