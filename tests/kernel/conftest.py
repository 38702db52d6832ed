"""Shared machinery of the real-kernel `engine run` tests (tests/kernel/test_run_*.py).

* `kernel_env`: skip (or, with CI=true, fail) when the machine cannot load BPF programs.
  Test modules opt in with
  ``pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]``; the fixture is
  not autouse, so the other kernel tests in this folder keep their own requirements.
  Spec paths are relative to the repository root, the engine's working directory.
* `engine`: starts ``python -m engine.cli run SPEC ...`` in its own session, waits for the
  "Tracing" line on stderr, and stops it (SIGINT by default); every process it started is
  killed at teardown, so no probe outlives a test.
* `conn_child`: a child process with a known pid, uid and comm (set with prctl) that binds
  listeners on 127.0.0.1 / ::1 (port 0) and connects to them, reporting its ports as JSON.
* `bpf`: what bpftool and /proc say about loaded programs, to prove nothing of ours is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator, NoReturn, Sequence

import procs
import pytest

REPO = Path(__file__).resolve().parents[2]

# Timeouts bound a hang, never a speed: each is ~3x what a slow machine with both CPUs busy
# needs (tests/kernel waits for readiness signals, so a quiet machine never waits them out).
READY_TIMEOUT = 240.0  # python start + plan + bcc's clang compile: ~1 s quiet, a minute loaded
STOP_TIMEOUT = 60.0  # detach and final output after a stop signal
CHILD_TIMEOUT = 60.0  # a traffic child's few connects
EVENT_TIMEOUT = 60.0  # an event already in the kernel's buffer reaching the engine's stdout
RELEASE_TIMEOUT = 30.0  # the kernel frees programs after an RCU grace period

IN_CI = os.environ.get("CI", "").strip().lower() == "true"
NOBODY = 65534
SETPRIV_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
PROGRAM_PREFIX = "p0_"  # the generated C names its functions p<probe index>_...


# --- requirements ------------------------------------------------------------------------


def kernel_requirements() -> str | None:
    """Why `engine run` cannot work here, or None."""
    if os.geteuid() != 0:
        return "needs root: loads BPF programs"
    try:
        import bcc  # noqa: F401
    except ImportError as exc:
        return f"needs bcc (python3-bpfcc) importable by {sys.executable}: {exc}"
    build = Path("/lib/modules") / platform.release() / "build"
    if not build.exists():
        return f"needs a kernel header tree at {build} for bcc (run scripts/setup.sh)"
    return None


@pytest.fixture(scope="session")
def kernel_env() -> None:
    """Skip without root/bcc/headers; under CI=true fail instead: CI must not pass by skipping."""
    reason = kernel_requirements()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true but the kernel tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


# --- reading a pipe without blocking the test --------------------------------------------


class LineReader:
    """Collects the lines of a text stream on a thread; tests wait for lines with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self.closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                with self._cond:
                    self.lines.append(line.rstrip("\n"))
                    self._cond.notify_all()
        except (OSError, ValueError):
            pass
        finally:
            with self._cond:
                self.closed = True
                self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float) -> bool:
        """True once predicate(lines) holds; False at the deadline or at end of stream."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.lines):
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    return predicate(self.lines)
                self._cond.wait(left)
            return True

    def join(self, timeout: float) -> bool:
        """True when the stream reached its end (so it can be closed)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def text(self) -> str:
        with self._cond:
            return "".join(line + "\n" for line in self.lines)


# --- BPF programs: ours, and whether any is left behind -------------------------------------


def bpftool_progs() -> list[dict]:
    out = subprocess.run(
        ["bpftool", "prog", "list", "-j"], capture_output=True, text=True, timeout=90, check=True
    )
    return json.loads(out.stdout or "[]")


def prog_ids_held_by(pid: int) -> set[int]:
    """Ids of the BPF programs a process holds file descriptors on (from /proc fdinfo)."""
    ids: set[int] = set()
    fdinfo = Path(f"/proc/{pid}/fdinfo")
    try:
        entries = list(fdinfo.iterdir())
    except OSError:
        return ids
    for entry in entries:
        try:
            text = entry.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("prog_id:"):
                ids.add(int(line.split(":", 1)[1]))
    return ids


def prog_ids_held_by_anyone() -> set[int]:
    ids: set[int] = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            ids |= prog_ids_held_by(int(proc.name))
    return ids


def orphan_tracepoint_progs() -> set[int]:
    """Tracepoint programs that no process holds a descriptor on: leaked attachments.

    Other engines (and other tools) may run concurrently on this machine, so a plain count of
    tracepoint programs can grow for reasons not ours; a program of a live process is held by
    that process's file descriptor, so the count of unheld ones must not grow.
    """
    listed = {p["id"] for p in bpftool_progs() if p.get("type") == "tracepoint"}
    held = prog_ids_held_by_anyone()
    again = {p["id"] for p in bpftool_progs()}  # skip programs freed while we looked
    return (listed & again) - held


class Bpf:
    """Before/after view of the loaded programs for the leak checks."""

    def __init__(self) -> None:
        self.before_orphans = orphan_tracepoint_progs()

    def assert_released(self, engine: EngineProc) -> None:
        """The programs the engine held are gone, and no unheld tracepoint program appeared."""
        ids = engine.prog_ids
        assert any(n.startswith(PROGRAM_PREFIX) for n in engine.prog_names.values()), (
            f"the engine held no program named {PROGRAM_PREFIX}* while tracing: {engine.prog_names}"
        )
        deadline = time.monotonic() + RELEASE_TIMEOUT
        while True:  # the kernel frees a closed program after an RCU grace period
            progs = bpftool_progs()
            left = sorted(p["id"] for p in progs if p["id"] in ids)
            orphans = orphan_tracepoint_progs() - self.before_orphans
            if not left and not orphans:
                return
            if time.monotonic() > deadline:
                names = {p["id"]: p.get("name") for p in progs}
                ours = [(i, names.get(i)) for i in left]
                orphaned = [(i, names.get(i)) for i in sorted(orphans)]
                pytest.fail(
                    f"BPF programs left after the engine exited: ours {ours}, "
                    f"unheld tracepoint programs {orphaned}"
                )
            time.sleep(0.1)


@pytest.fixture
def bpf(kernel_env: None) -> Bpf:
    return Bpf()


# --- the engine under test ------------------------------------------------------------------


@dataclass
class Result:
    code: int | None
    stdout: str
    stderr: str

    @property
    def out_lines(self) -> list[str]:
        return self.stdout.splitlines()

    @property
    def err_lines(self) -> list[str]:
        return self.stderr.splitlines()

    def json_rows(self) -> list[dict]:
        """Every stdout line as JSON (a line that is not JSON fails the test)."""
        rows = []
        for line in self.out_lines:
            try:
                rows.append(json.loads(line))
            except ValueError:
                pytest.fail(f"stdout line is not JSON: {line!r}\nstderr:\n{self.stderr}")
        return rows


def engine_argv(spec: str, args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "engine.cli", "run", spec, *args]


class EngineProc:
    """One `engine run` (or a shell pipeline around one) in its own session."""

    def __init__(self, spec: str, args: Sequence[str] = (), pipeline: str = "") -> None:
        self.argv = engine_argv(spec, args)
        if pipeline:
            # The engine as the first command of a real shell pipeline, e.g. "| head -1".
            cmd = f"set -o pipefail; {shlex.join(self.argv)} {pipeline}"
            popen_argv = ["bash", "-c", cmd]
        else:
            popen_argv = self.argv
        self.started_at = time.monotonic()  # before the engine exists: a lower bound of its times
        self.proc = procs.spawn(
            popen_argv,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.pipeline = bool(pipeline)
        self.out = LineReader(self.proc.stdout)
        self.err = LineReader(self.proc.stderr)
        self.prog_ids: set[int] = set()  # the BPF programs it holds while tracing
        self.prog_names: dict[int, str] = {}
        self.ready_at = 0.0
        self.result: Result | None = None

    @property
    def engine_pid(self) -> int:
        if not self.pipeline:
            return self.proc.pid
        # The shell's child that runs python -m engine.cli.
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                stat = (proc / "stat").read_text()
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid and b"engine.cli" in cmdline:
                return int(proc.name)
        raise AssertionError("the engine process of the pipeline is not running")

    def wait_ready(
        self, timeout: float = READY_TIMEOUT, then: Callable[[], object] | None = None
    ) -> EngineProc:
        """Wait for "Tracing" on stderr; `then` runs the moment it appears, before anything else."""
        ok = self.err.wait_for(lambda ls: any(x.startswith("Tracing") for x in ls), timeout)
        self.ready_at = time.monotonic()
        if ok and then is not None:
            then()
        if not ok:
            self.kill()
            pytest.fail(
                f"no 'Tracing' line within {timeout:.0f} s from {shlex.join(self.argv)}\n"
                f"exit: {self.proc.poll()}\nstderr:\n{self.err.text()}\nstdout:\n{self.out.text()}"
            )
        self.prog_ids = prog_ids_held_by(self.engine_pid)
        names = {p["id"]: str(p.get("name", "")) for p in bpftool_progs()}
        self.prog_names = {i: names.get(i, "") for i in self.prog_ids}
        return self

    def wait_stdout(
        self, predicate: Callable[[list[str]], bool], timeout: float = EVENT_TIMEOUT
    ) -> None:
        if not self.out.wait_for(predicate, timeout):
            pytest.fail(
                f"stdout never matched within {timeout} s\nstdout:\n{self.out.text()}\n"
                f"stderr:\n{self.err.text()}"
            )

    def wait_rows(
        self, found: Callable[[list[dict]], bool], timeout: float = EVENT_TIMEOUT
    ) -> None:
        """wait_stdout, with `found` given the stdout lines so far as JSON rows (-o json)."""
        self.wait_stdout(lambda lines: found([json.loads(line) for line in lines]), timeout)

    def stop(self, sig: int = signal.SIGINT, timeout: float = STOP_TIMEOUT) -> Result:
        if self.proc.poll() is None:
            os.kill(self.engine_pid, sig)
        return self.wait(timeout)

    def wait(self, timeout: float = STOP_TIMEOUT) -> Result:
        try:
            code: int | None = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(
                f"engine did not exit within {timeout} s\nstdout:\n{self.out.text()}\n"
                f"stderr:\n{self.err.text()}"
            )
        self.close_pipes()
        self.result = Result(code, self.out.text(), self.err.text())
        return self.result

    def close_pipes(self) -> None:
        for reader, stream in ((self.out, self.proc.stdout), (self.err, self.proc.stderr)):
            if reader.join(5) and stream is not None:
                stream.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(procs.REAP_TIMEOUT)
        self.close_pipes()


@pytest.fixture
def engine(kernel_env: None) -> Iterator[Callable[..., EngineProc]]:
    """engine(spec, *args, ready=True, pipeline="") -> a running EngineProc."""
    started: list[EngineProc] = []

    def start(spec: str, *args: str, ready: bool = True, pipeline: str = "") -> EngineProc:
        p = EngineProc(spec, args, pipeline=pipeline)
        started.append(p)
        return p.wait_ready() if ready else p

    yield start
    for p in started:
        p.kill()


# --- traffic ----------------------------------------------------------------------------------

# Runs in the child: sets its comm, binds listeners, reports {pid, uid, comm, ports}, optionally
# waits for a line on stdin, connects as asked ([listener index, times] pairs), prints "done".
CONNECT_CODE = r"""
import ctypes, json, os, socket, sys
spec = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(15, spec["comm"].encode(), 0, 0, 0) != 0:  # PR_SET_NAME
    sys.exit("prctl: errno %d" % ctypes.get_errno())
listeners = []
for host in spec["listen"]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((host, 0))
    s.listen(128)
    listeners.append(s)
with open("/proc/self/comm") as f:
    comm = f.read().strip()
info = {"pid": os.getpid(), "uid": os.getuid(), "comm": comm,
        "ports": [s.getsockname()[1] for s in listeners]}
print(json.dumps(info), flush=True)
if spec["wait"] and sys.stdin.readline() != "go\n":
    sys.exit("not told to go")
for index, times in spec["connects"]:
    host, port = listeners[index].getsockname()[:2]
    for _ in range(times):
        c = socket.create_connection((host, port), timeout=10)
        c.close()
print("done", flush=True)
"""


class ConnChild:
    """A connecting child: `pid`, `uid`, `comm`, `ports` (one per listener) known up front."""

    def __init__(
        self,
        listen: Sequence[str] = ("127.0.0.1",),
        connects: Sequence[tuple[int, int]] = ((0, 1),),
        comm: str = "conn-test",
        wait: bool = False,
        as_nobody: bool = False,
        prefix: Sequence[str] = (),
    ) -> None:
        spec = {
            "listen": list(listen),
            "connects": [list(c) for c in connects],
            "comm": comm,
            "wait": wait,
        }
        argv = [sys.executable, "-I", "-c", CONNECT_CODE, json.dumps(spec)]
        if as_nobody:
            argv = [*SETPRIV_NOBODY, *argv]
        argv = [*prefix, *argv]  # e.g. unshare -m: the child in a new mount namespace
        self.listen = list(listen)
        self.proc = procs.spawn(
            argv,
            cwd="/",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out = LineReader(self.proc.stdout)
        if not self.out.wait_for(lambda ls: len(ls) >= 1, CHILD_TIMEOUT):
            self.abort("connect child reported nothing")
        info = json.loads(self.out.lines[0])
        self.pid: int = info["pid"]
        self.uid: int = info["uid"]
        self.comm: str = info["comm"]
        self.ports: list[int] = info["ports"]
        assert self.comm == comm, f"prctl did not name the child: {self.comm!r}"

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self) -> None:
        """Wait until every connect is done (the events are in the kernel's buffer by then)."""
        try:
            self.proc.wait(CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.abort("connect child did not finish")
        self.out.join(5)
        stderr = self.proc.stderr.read() if self.proc.stderr else ""
        assert self.proc.returncode == 0 and self.out.lines[-1:] == ["done"], (
            f"connect child failed ({self.proc.returncode}): {stderr}"
        )

    def run(self) -> ConnChild:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        self.finish()
        return self

    def abort(self, why: str) -> NoReturn:
        """Kill it, then fail with what it said on stderr (readable once it is gone)."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(procs.REAP_TIMEOUT)
        stderr = self.proc.stderr.read() if self.proc.stderr else ""
        self.kill()
        pytest.fail(f"{why} within {CHILD_TIMEOUT:.0f} s: {stderr}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(procs.REAP_TIMEOUT)
        streams = [self.proc.stdin, self.proc.stderr]
        if self.out.join(5):
            streams.append(self.proc.stdout)
        for stream in streams:
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


@pytest.fixture
def conn_child() -> Iterator[Callable[..., ConnChild]]:
    """conn_child(listen=..., connects=[(listener, times)], comm=..., wait=..., as_nobody=...,
    prefix=[argv before the interpreter])"""
    children: list[ConnChild] = []

    def make(**kwargs: Any) -> ConnChild:
        child = ConnChild(**kwargs)
        children.append(child)
        return child

    yield make
    for child in children:
        child.kill()


class HeldChild:
    """A python child that runs `code` only once told to: its pid is known before the engine
    starts, so the engine can keep only its events, in the kernel (`-p PID`). Events of the
    same kind from the rest of a busy machine (another process calling kill() in a loop)
    then cannot fill the buffer and cost the test its own."""

    def __init__(self, code: str) -> None:
        self.proc = procs.spawn(
            [sys.executable, "-I", "-c", "import sys\nsys.stdin.readline()\n" + code],
            cwd="/", stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.pid = self.proc.pid

    def run(self) -> str:
        """Let it run to its end; its stdout."""
        try:
            out, err = self.proc.communicate("go\n", timeout=CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            procs.kill(self.proc)
            pytest.fail(f"the child did not finish within {CHILD_TIMEOUT:.0f} s")
        assert self.proc.returncode == 0, f"child exit {self.proc.returncode}: {err}"
        return out


def run_ping(*args: str) -> int:
    """Run ping to completion; return its pid (which is the pid of the task that pinged)."""
    proc = procs.spawn(
        ["ping", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"ping {' '.join(args)} did not finish")
    assert proc.returncode == 0, f"ping {' '.join(args)} failed: {out}{err}"
    return proc.pid


@pytest.fixture
def ping() -> Callable[..., int]:
    return run_ping
