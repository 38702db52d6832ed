"""`engine run tests/specs/live/opensnoop.yaml`: a syscall tracepoint (a tracefs record; BTF
has none), a user-space string read with the *_user helper, and the parent's pid through the
`task` builtin.
A child of this test opens a path nobody else opens; its row must be exact.

`specs/opensnoop.yaml` (bcc's PID COMM FD ERR PATH, the path's user pointer kept in state from
the entry and read at the exit) against a bpftrace script on the same run: a child running as
nobody opens, with open(2), openat(2) and openat2(2) each, a file, a directory, a missing path
(ENOENT), a root-only file (EACCES) and a path through a file (ENOTDIR); the rows are equal,
failures included, and `-p`, `-x`, `-n` and `-T` each change them as bcc's do."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from oracle import Bpftrace
from snoop_child import SnoopChild, comm_name, make_files, remove_files

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "tests/specs/live/opensnoop.yaml"
SETPRIV_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
OPEN = "import os, sys\ntry:\n    open(sys.argv[1])\nexcept OSError:\n    pass\nprint(os.getpid())"


def open_in_child(path: str, as_nobody: bool = False) -> int:
    argv = [sys.executable, "-I", "-c", OPEN, path]
    if as_nobody:
        argv = [*SETPRIV_NOBODY, *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True, cwd="/")
    return int(done.stdout)


def test_open_row_is_exact(engine) -> None:
    path = f"/nonexistent-{uuid.uuid4().hex}"
    e = engine(SPEC, "-o", "json")
    pid = open_in_child(path)
    result = e.stop()
    assert result.code == 0, result.stderr
    rows = [r for r in result.json_rows() if r["path"] == path]
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["pid"] == pid
    assert row["ppid"] == os.getpid()  # subprocess.run forks from this very process
    assert row["uid"] == 0
    assert row["comm"] == os.path.basename(sys.executable)[:15]
    assert int(row["flags"], 16) & os.O_ACCMODE == os.O_RDONLY


def test_uid_filter_keeps_only_that_user(engine) -> None:
    mine, theirs = (f"/nonexistent-{uuid.uuid4().hex}" for _ in range(2))
    e = engine(SPEC, "-o", "json", "-u", "65534")
    open_in_child(mine)
    nobody = open_in_child(theirs, as_nobody=True)
    result = e.stop()
    assert result.code == 0, result.stderr
    paths = {r["path"]: r for r in result.json_rows()}
    assert mine not in paths
    assert paths[theirs]["uid"] == 65534
    assert paths[theirs]["pid"] == nobody


SNOOP = "specs/opensnoop.yaml"
OPENS = """
how = (ctypes.c_uint64 * 3)(0, 0, 0)  # struct open_how: flags, mode, resolve
for p in paths:
    b = p.encode()
    try:
        os.close(os.open(p, os.O_RDONLY))  # openat(2)
    except OSError:
        pass
    for fd in (libc.syscall(2, b, 0), libc.syscall(437, -100, b, ctypes.byref(how), 24)):
        if fd >= 0:  # open(2), openat2(2)
            os.close(fd)
print("done", flush=True)
"""
# the oracle: the same three syscalls, the path's pointer kept from the entry as bcc does
OPEN_SCRIPT = """
tracepoint:syscalls:sys_enter_open, tracepoint:syscalls:sys_enter_openat,
tracepoint:syscalls:sys_enter_openat2 /PIDS/ { @fname[tid] = (uint64)args->filename; }
tracepoint:syscalls:sys_exit_open, tracepoint:syscalls:sys_exit_openat,
tracepoint:syscalls:sys_exit_openat2 /(PIDS) && @fname[tid] != 0/ {
  printf("ROW|%d|%s|%d|%s\\n", pid, comm, args->ret, str(@fname[tid]));
  delete(@fname[tid]);
}
END { clear(@fname); }
"""


def oracle_rows(lines: list[str]) -> list[tuple]:
    """bpftrace's rows as (pid, comm, fd, err, path): bcc's FD and ERR from the return value."""
    rows = []
    for line in lines:
        if line.startswith("ROW|"):
            _, pid, comm, ret, path = line.split("|", 4)
            r = int(ret)
            rows.append((int(pid), comm, r if r >= 0 else -1, -r if r < 0 else 0, path))
    return rows


def wait_oracle(oracle: Bpftrace, path: str, count: int) -> None:
    """Until bpftrace printed `count` rows of `path` (the children's last calls)."""
    ok = oracle.out.wait_for(lambda ls: sum(x.endswith("|" + path) for x in ls) >= count, 60)
    assert ok, oracle.out.text()


def engine_rows(rows: list[dict]) -> list[tuple]:
    return [(r["pid"], r["comm"], r["fd"], r["err"], r["path"]) for r in rows]


def expected_errors(cases: dict[str, int]) -> list[tuple[str, int]]:
    """(path, errno) of each call the child makes, in order: openat, open, openat2 per path."""
    return [(path, err) for path, err in cases.items() for _ in range(3)]


def test_rows_equal_bpftrace_and_pid_filter(engine) -> None:
    files = make_files()
    paths = list(files.cases)
    traced = SnoopChild(OPENS, comm_name("h19o"), paths)
    other = SnoopChild(OPENS, comm_name("h19p"), paths)
    try:
        pids = f"pid == {traced.pid} || pid == {other.pid}"
        oracle = Bpftrace(OPEN_SCRIPT.replace("PIDS", pids))
        e = engine(SNOOP, "-o", "json", "-p", str(traced.pid))
        traced.run()
        other.run()
        e.wait_rows(lambda rows: len([r for r in rows if r["path"] == paths[-1]]) >= 3)
        wait_oracle(oracle, paths[-1], 6)
        theirs = oracle_rows(oracle.stop())
        result = e.stop()
    finally:
        traced.kill()
        other.kill()
        remove_files(files)
    assert result.code == 0, result.stderr
    ours = engine_rows(result.json_rows())
    assert ours == [r for r in theirs if r[0] == traced.pid]
    # every call, failures included, with bcc's FD (-1 on failure) and ERR (the errno)
    assert [(path, err) for _, _, _, err, path in ours] == expected_errors(files.cases)
    assert all((fd >= 3) == (err == 0) and (fd == -1) == (err != 0) for _, _, fd, err, _ in ours)
    assert {(pid, comm) for pid, comm, *_ in ours} == {(traced.pid, comm_name("h19o"))}
    # -p kept the other child out: bpftrace saw it make the same calls
    assert [r[2:] for r in theirs if r[0] == other.pid] == [r[2:] for r in ours]


def test_failed_only_by_name_with_timestamps(engine) -> None:
    files = make_files()
    paths = list(files.cases)
    name = comm_name("h19x")
    traced = SnoopChild(OPENS, name, paths)
    other = SnoopChild(OPENS, comm_name("h19y"), paths)
    try:
        oracle = Bpftrace(OPEN_SCRIPT.replace("PIDS", f"pid == {traced.pid}"))
        # -n takes a substring of the task name, as bcc's (the other child's differs in it)
        e = engine(SNOOP, "-o", "json", "-x", "-n", name[1:], "-T")
        traced.run()
        other.run()
        last_failure = [p for p, err in files.cases.items() if err][-1]
        e.wait_rows(lambda rows: len([r for r in rows if r["path"] == last_failure]) >= 3)
        wait_oracle(oracle, paths[-1], 3)
        theirs = oracle_rows(oracle.stop())
        result = e.stop()
    finally:
        traced.kill()
        other.kill()
        remove_files(files)
    assert result.code == 0, result.stderr
    rows = result.json_rows()
    ours = engine_rows(rows)
    # -n: this name only (no other process has it); -x: the failures only
    assert ours == [r for r in theirs if r[3] != 0]
    assert [(path, err) for _, _, _, err, path in ours] == [
        (p, e) for p, e in expected_errors(files.cases) if e
    ]
    # -T: seconds since the first event, in order
    times = [r["time"] for r in rows]
    assert times == sorted(times) and times[0] >= 0
