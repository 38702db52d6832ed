"""tests/procs.py: a test that fails, raises, or whose pytest is interrupted midway leaves no
process it started behind, grandchildren included.

Each case runs a deliberately failing test under `pytest -p procs` in a subprocess; its
children carry a unique marker argument, and once that pytest has exited no process with
the marker may be left. The control runs the same test with plain subprocess.Popen and must
find its child still running (so the check can fail); the test then kills it itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import procs
import pytest

TESTS = Path(__file__).resolve().parents[1]
TIMEOUT = 180.0  # a pytest start and a few python children: seconds, even on a busy machine
VANISH_TIMEOUT = 60.0  # a SIGKILLed process is gone in milliseconds

INNER = """
import os, subprocess, sys, time
import procs
import pytest

MARK = os.environ["PROCS_MARK"]
SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)", MARK]
# starts a grandchild (the sleeper), says "up", then sleeps unless told to exit at once
PARENT = (
    "import subprocess, sys, time\\n"
    "subprocess.Popen(sys.argv[2:])\\n"
    "print('up', flush=True)\\n"
    "time.sleep(0 if sys.argv[1] == 'exit' else 600)\\n"
)


def start(then: str) -> subprocess.Popen:
    argv = [sys.executable, "-c", PARENT, then, *SLEEPER]
    if os.environ.get("PROCS_PLAIN"):  # the control: no procs.spawn
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    else:
        p = procs.spawn(argv, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "up\\n"
    return p


def test_fails_midway():
    start("sleep")
    assert False, "deliberate"


def test_raises_midway():
    start("sleep")
    raise RuntimeError("deliberate")


def test_reaped_leader_leaves_its_child():
    p = start("exit")
    assert p.wait(60) == 0  # the leader is gone and reaped; its child sleeps on
    pytest.fail("deliberate")


def test_blocks_until_interrupted():
    start("sleep")
    open(os.environ["PROCS_READY"], "w").close()
    time.sleep(600)
"""


def marked(mark: str) -> list[int]:
    """Pids of the live processes with `mark` among their arguments (zombies have none)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if mark.encode() in argv:
            found.append(int(entry.name))
    return found


def gone(mark: str) -> bool:
    """True once no process carries `mark` (SIGKILLed ones take a moment to exit)."""
    deadline = time.monotonic() + VANISH_TIMEOUT
    while marked(mark):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def inner_pytest(tmp_path: Path, case: str, mark: str, plain: bool = False) -> subprocess.Popen:
    path = tmp_path / "test_inner.py"
    path.write_text(INNER)
    env = {**os.environ, "PYTHONPATH": str(TESTS), "PROCS_MARK": mark}
    env["PROCS_READY"] = str(tmp_path / "ready")
    if plain:
        env["PROCS_PLAIN"] = "1"
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "procs"]
    return procs.spawn(
        [*argv, f"{path}::{case}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def finish(inner: subprocess.Popen) -> str:
    out, _ = inner.communicate(timeout=TIMEOUT)
    return str(out)


@pytest.mark.parametrize(
    "case", ["test_fails_midway", "test_raises_midway", "test_reaped_leader_leaves_its_child"]
)
def test_a_failing_test_leaves_no_process(tmp_path: Path, case: str) -> None:
    mark = f"procs-{uuid.uuid4()}"
    inner = inner_pytest(tmp_path, case, mark)
    out = finish(inner)
    assert inner.returncode == 1 and "1 failed" in out, out  # it did fail midway
    assert gone(mark), f"left running: {marked(mark)}\n{out}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_interrupted_run_leaves_no_process(tmp_path: Path, sig: int) -> None:
    """A CI job's timeout (SIGTERM) or Ctrl-C (SIGINT) while the test is blocked."""
    mark = f"procs-{uuid.uuid4()}"
    inner = inner_pytest(tmp_path, "test_blocks_until_interrupted", mark)
    ready = tmp_path / "ready"
    deadline = time.monotonic() + TIMEOUT
    while not ready.exists():  # the inner test's children are up once it appears
        assert inner.poll() is None, finish(inner)
        assert time.monotonic() < deadline, "the inner test never got going"
        time.sleep(0.05)
    assert marked(mark), "the inner test's children are not running"
    inner.send_signal(sig)
    out = finish(inner)
    assert inner.returncode != 0, out
    assert gone(mark), f"left running: {marked(mark)}\n{out}"


def test_control_plain_popen_does_leave_a_process(tmp_path: Path) -> None:
    """Without procs.spawn the same failing test leaves its children: the check can fail."""
    mark = f"procs-{uuid.uuid4()}"
    inner = inner_pytest(tmp_path, "test_fails_midway", mark, plain=True)
    out = finish(inner)
    left = marked(mark)
    for pid in left:  # ours: started by the inner pytest for this test, with our marker
        os.kill(pid, signal.SIGKILL)
    assert inner.returncode == 1, out
    assert len(left) == 2, f"expected the child and grandchild alive, found {left}\n{out}"
