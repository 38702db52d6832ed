"""Every process a test starts is stopped on every path: pass, fail, error, Ctrl-C, SIGTERM.

`spawn()` is `subprocess.Popen` in a new session, so the child and everything it starts (a
shell's pipeline, a bcc tool's compiler) share one process group, remembered here. The autouse
fixture `no_process_outlives_its_test` (tests/conftest.py takes it in) kills each remembered
group when its test ends, however it ends; `pytest_sessionfinish` and a SIGTERM handler do the
same for a run that is interrupted (Ctrl-C, a CI job's timeout). Only a SIGKILL of pytest
itself escapes: nothing in the process can run then.

A group is killed only while its leader is ours: not yet reaped, so its pid (the group's id)
cannot have been reused. Once a test reaped the leader, what is left of its session is found
by session id (see `_stragglers`).

The module is also a pytest plugin (`pytest -p procs`): tests/unit/test_procs.py runs a
deliberately failing test under it and checks that nothing it started survives.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest

REAP_TIMEOUT = 30.0  # a SIGKILLed process is gone at once; a loaded machine may take a moment

_live: list[subprocess.Popen[Any]] = []
_lock = threading.Lock()


def spawn(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """`subprocess.Popen(argv, **kwargs)` in its own session, stopped when the test ends."""
    kwargs["start_new_session"] = True
    proc: subprocess.Popen[Any] = subprocess.Popen(list(argv), **kwargs)
    with _lock:
        _live.append(proc)
    return proc


def _stragglers(sid: int) -> list[int]:
    """Pids still in the session `sid` whose leader is reaped (so `sid` names no process).

    While any process is in a session its id is not reused, so those are ours; if a process
    with pid `sid` exists, the number was reused by someone else's leader: none are ours.
    """
    if Path(f"/proc/{sid}").exists():
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "(comm)": state ppid pgrp session ...
        if int(fields[3]) == sid:
            found.append(int(entry.name))
    return found


def kill(proc: subprocess.Popen[Any], timeout: float = REAP_TIMEOUT) -> None:
    """SIGKILL the process group of `proc` (whatever is left of it) and reap the leader."""
    if proc.returncode is None:  # not reaped: the group id is still ours, even for a zombie
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    else:
        for pid in _stragglers(proc.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    streams = [s for s in (proc.stdin, proc.stdout, proc.stderr) if s is not None]
    if streams:
        # A close waits for a read another thread is blocked in, which ends only when every
        # writer is gone: one outside the group could hold it, so never wait long for it.
        closer = threading.Thread(target=_close, args=(streams,), daemon=True)
        closer.start()
        closer.join(5)


def _close(streams: list[Any]) -> None:
    for stream in streams:
        with contextlib.suppress(OSError, ValueError):
            stream.close()


def stop_all() -> None:
    """Kill every group spawned so far (the end of a test, or of an interrupted run)."""
    with _lock:
        procs = list(_live)
        _live.clear()
    for proc in procs:
        kill(proc)


@pytest.fixture(autouse=True)
def no_process_outlives_its_test() -> Iterator[None]:
    """Teardown of every test: whatever it spawned and did not stop is killed."""
    yield
    stop_all()


def _on_sigterm(signum: int, frame: object) -> None:
    stop_all()
    raise KeyboardInterrupt(f"signal {signum}")  # pytest ends the run as interrupted


def pytest_configure(config: pytest.Config) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stop_all()
