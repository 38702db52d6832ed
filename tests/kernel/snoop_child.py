"""A held child for the opensnoop / statsnoop tests: it names itself (prctl), says "up", waits
for a line on stdin, then makes its calls on the paths it was given and says "done". It runs as
nobody (setpriv), so a root-only file fails with EACCES; its pid is known before the tracers
start, so both filter on it in the kernel.

And the files: a directory under /tmp that nobody can enter, with a readable file, a file only
root may read, and paths that fail with ENOENT and ENOTDIR."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import procs
import pytest
from conftest import CHILD_TIMEOUT, SETPRIV_NOBODY

PREAMBLE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(15, sys.argv[1].encode(), 0, 0, 0)
paths = sys.argv[2:]
print("up", flush=True)
sys.stdin.readline()
"""


@dataclass
class Files:
    """The paths a child works on; `cases` maps each to the errno an open gets (0: none),
    `stat_cases` the errno a stat gets (a root-only file can be stat'ed, not opened)."""

    root: Path
    cases: dict[str, int]
    stat_cases: dict[str, int]


def make_files() -> Files:
    """Short paths (bpftrace's str() keeps 64 bytes) a nobody child reaches."""
    root = Path(tempfile.mkdtemp(prefix="h19", dir="/tmp"))
    root.chmod(0o755)
    readable = root / "r.txt"
    readable.write_text("hello\n")
    readable.chmod(0o644)
    secret = root / "s.txt"
    secret.write_text("root only\n")
    secret.chmod(0o600)
    closed = root / "d"
    closed.mkdir(mode=0o700)  # nobody may search it
    cases = {
        str(readable): 0,
        str(root): 0,
        str(root / f"missing-{uuid.uuid4().hex[:8]}"): 2,  # ENOENT
        str(secret): 13,  # EACCES (for nobody)
        str(readable / "x"): 20,  # ENOTDIR
        str(closed / "x"): 13,  # EACCES: the directory
    }
    stat_cases = {**cases, str(secret): 0}
    return Files(root, cases, stat_cases)


def remove_files(files: Files) -> None:
    (files.root / "d").rmdir()
    for p in files.root.iterdir():
        p.unlink()
    files.root.rmdir()


class SnoopChild:
    """One held child running `code` (after PREAMBLE) as nobody, named `comm`."""

    def __init__(self, code: str, comm: str, paths: list[str]) -> None:
        argv = [*SETPRIV_NOBODY, sys.executable, "-I", "-S", "-c", PREAMBLE + code, comm, *paths]
        self.proc = procs.spawn(
            argv, cwd="/", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.pid = self.proc.pid  # setpriv execs python: the same process
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line != "up\n":
            procs.kill(self.proc)
            pytest.fail(f"child did not start: {line!r} {self.proc.stderr.read()}")  # type: ignore[union-attr]

    def run(self) -> None:
        try:
            out, err = self.proc.communicate("go\n", timeout=CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            procs.kill(self.proc)
            pytest.fail(f"the child did not finish within {CHILD_TIMEOUT:.0f} s")
        assert self.proc.returncode == 0, f"child exit {self.proc.returncode}: {err}"
        assert out == "done\n", out

    def kill(self) -> None:
        procs.kill(self.proc)


def comm_name(tag: str) -> str:
    """A task name no other process has (15 bytes at most)."""
    return f"{tag}{os.getpid() % 100000}"[:15]
