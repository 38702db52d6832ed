"""`engine run SPEC --cgroup PATH`: only events of tasks in a cgroup v2 directory or below it;
and the `cgroup` decoder, which names a cgroup id by its path.

The test makes its own directories in the machine's cgroup2 mount and moves its own children
into them (a write to cgroup.procs, as a container runtime does). Three connecting children:
one in the scoped directory, one in a directory made below it after the engine started (as a
container started later would be), one left where the test runs. `specs/tcpconnect.yaml
--cgroup DIR` prints exactly the first two's connects (the third connects in between, so a
scope that let it through would show it), and an unknown directory is a usage error naming
the one it probably meant. The decoder's test counts getppid() calls by cgroup and comm: a
child in a directory made after the engine started is named by that directory's path (found
by walking the hierarchy again), one left outside by the path its /proc/PID/cgroup gives.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from engine.kernel import cgroups

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/tcpconnect.yaml"


@pytest.fixture
def cgroup_dir() -> Iterator[Path]:
    """A fresh directory in the cgroup2 mount, removed with what was made below it (every
    process in it has exited by then: the children are waited for)."""
    mounts = cgroups.mounts()
    if not mounts:
        pytest.fail("no cgroup2 mount: --cgroup needs the unified hierarchy")
    top = Path(mounts[0]) / f"engine-test-{os.getpid()}"
    top.mkdir()
    try:
        yield top
    finally:
        for d in sorted(top.rglob("*"), key=lambda p: -len(p.parts)):
            if d.is_dir():
                with contextlib.suppress(OSError):
                    d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def move(pid: int, directory: Path) -> None:
    (directory / "cgroup.procs").write_text(f"{pid}\n")
    line = next(
        ln for ln in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if ln[:3] == "0::"
    )
    assert line.endswith("/" + directory.name), line


def test_only_tasks_under_the_directory_are_traced(engine, conn_child, cgroup_dir: Path) -> None:
    inside = conn_child(listen=["127.0.0.1"], connects=[(0, 2)], comm="cg-inside", wait=True)
    later = conn_child(listen=["::1"], connects=[(0, 3)], comm="cg-later", wait=True)
    outside = conn_child(listen=["127.0.0.1"], connects=[(0, 4)], comm="cg-outside", wait=True)
    move(inside.pid, cgroup_dir)
    e = engine(SPEC, "-o", "json", "--cgroup", str(cgroup_dir))
    below = cgroup_dir / "later"
    below.mkdir()  # made after the engine attached: the kernel checks ancestry per event
    move(later.pid, below)
    for child in (inside, outside, later):
        child.go()
        child.run()
    result = e.stop()
    assert result.code == 0, result.stderr
    ours = {inside.pid, later.pid, outside.pid}
    rows = [(r["pid"], r["comm"], r["dport"]) for r in result.json_rows() if r["pid"] in ours]
    assert sorted(rows) == sorted(
        [(inside.pid, "cg-inside", inside.ports[0])] * 2
        + [(later.pid, "cg-later", later.ports[0])] * 3
    )


def test_a_path_as_proc_pid_cgroup_prints_it(engine, conn_child, cgroup_dir: Path) -> None:
    """`0::/engine-test-N` in /proc/PID/cgroup is `--cgroup /engine-test-N`."""
    child = conn_child(listen=["127.0.0.1"], connects=[(0, 1)], comm="cg-relative", wait=True)
    move(child.pid, cgroup_dir)
    e = engine(SPEC, "-o", "json", "--cgroup", "/" + cgroup_dir.name)
    child.go()
    child.run()
    result = e.stop()
    assert result.code == 0, result.stderr
    assert [r["comm"] for r in result.json_rows() if r["pid"] == child.pid] == ["cg-relative"]


def test_an_unknown_directory_is_a_usage_error(cgroup_dir: Path) -> None:
    (cgroup_dir / "web").mkdir()
    wrong = f"/{cgroup_dir.name}/wbe"
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", SPEC, "--cgroup", wrong],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1].startswith(
        f"engine run: error: argument --cgroup: '{wrong}' is no cgroup v2 directory "
        f"(cgroup2 is mounted at {cgroups.mounts()[0]}); did you mean 'web'?"
    ), done.stderr
    assert "Traceback" not in done.stderr


CALLS = "import os, sys\nsys.stdin.readline()\nfor _ in range(N):\n    os.getppid()\n"


def own_cgroup(pid: int) -> str:
    return next(
        ln[3:] for ln in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if ln[:3] == "0::"
    )


def test_the_cgroup_decoder_names_the_directory(engine, cgroup_dir: Path) -> None:
    counts = {"cg-in": 11, "cg-out": 7}
    children = {}
    for comm, n in counts.items():
        code = f"import ctypes\nctypes.CDLL(None).prctl(15, {comm.encode()!r}, 0, 0, 0)\n"
        children[comm] = subprocess.Popen(
            [sys.executable, "-I", "-c", code + CALLS.replace("N", str(n))],
            stdin=subprocess.PIPE, text=True,
        )  # fmt: skip
    try:
        e = engine("tests/specs/live/cgroup_calls.yaml", "-o", "json")
        below = cgroup_dir / "made-later"
        below.mkdir()  # after the engine started: the decoder walks the hierarchy again
        move(children["cg-in"].pid, below)
        outside = own_cgroup(children["cg-out"].pid)
        for child in children.values():
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.close()
            assert child.wait(60) == 0
        result = e.stop()
    finally:
        for child in children.values():
            child.kill()
            child.wait()
    assert result.code == 0, result.stderr
    rows = {r["comm"]: r for r in result.json_rows() if r["comm"] in counts}
    assert rows == {
        "cg-in": {"cgroup": f"/{cgroup_dir.name}/made-later", "comm": "cg-in", "calls": 11},
        "cg-out": {"cgroup": outside, "comm": "cg-out", "calls": 7},
    }
