"""`specs/statsnoop.yaml` (bcc's PID COMM RET ERR PATH; the path copied at the entry into a
`str[256]` state member with bpf_probe_read_user_str, printed at the exit) against a bpftrace
script on the same run. A child running as nobody calls, on each of a file, a directory, a
missing path (ENOENT), a path through a file (ENOTDIR) and one through a directory it may not
search (EACCES): os.stat and os.lstat (newfstatat), os.statvfs (statfs), and the raw stat(2),
lstat(2) (newstat, newlstat) and statx(2). The rows equal bpftrace's, failures included; a
second engine with `-x -t` on the same run prints the failures only, with times."""

from __future__ import annotations

import pytest
from oracle import Bpftrace
from snoop_child import SnoopChild, comm_name, make_files, remove_files

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/statsnoop.yaml"
CALLS_PER_PATH = 6
STATS = """
buf = ctypes.create_string_buffer(512)
for p in paths:
    b = p.encode()
    for call in (os.stat, os.lstat, os.statvfs):  # newfstatat, newfstatat, statfs
        try:
            call(p)
        except OSError:
            pass
    libc.syscall(4, b, buf)  # stat(2): newstat
    libc.syscall(6, b, buf)  # lstat(2): newlstat
    libc.syscall(332, -100, b, 0, 0xFFF, buf)  # statx(AT_FDCWD, path, 0, STATX_BASIC_STATS)
print("done", flush=True)
"""
ENTER = "tracepoint:syscalls:sys_enter_{} /PIDS/ {{ @fname[tid] = (uint64)args->{}; }}\n"
EXIT = "tracepoint:syscalls:sys_exit_{} "
SYSCALLS = {"newstat": "filename", "newlstat": "filename", "newfstatat": "filename",
            "statx": "filename", "statfs": "pathname"}  # fmt: skip
STAT_SCRIPT = (
    "".join(ENTER.format(e, a) for e, a in SYSCALLS.items())
    + ",\n".join(EXIT.format(e) for e in SYSCALLS)
    + """/(PIDS) && @fname[tid] != 0/ {
  printf("ROW|%d|%s|%d|%s\\n", pid, comm, args->ret, str(@fname[tid]));
  delete(@fname[tid]);
}
END { clear(@fname); }
"""
)


def oracle_rows(lines: list[str]) -> list[tuple]:
    """bpftrace's rows as (pid, comm, ret, err, path), RET and ERR as bcc prints them."""
    rows = []
    for line in lines:
        if line.startswith("ROW|"):
            _, pid, comm, ret, path = line.split("|", 4)
            r = int(ret)
            rows.append((int(pid), comm, r if r >= 0 else -1, -r if r < 0 else 0, path))
    return rows


def engine_rows(rows: list[dict]) -> list[tuple]:
    return [(r["pid"], r["comm"], r["ret"], r["err"], r["path"]) for r in rows]


def test_rows_equal_bpftrace_with_pid_and_failed_filters(engine) -> None:
    files = make_files()
    paths = list(files.stat_cases)
    traced = SnoopChild(STATS, comm_name("h19s"), paths)
    other = SnoopChild(STATS, comm_name("h19t"), paths)
    try:
        pids = f"pid == {traced.pid} || pid == {other.pid}"
        oracle = Bpftrace(STAT_SCRIPT.replace("PIDS", pids))
        every = engine(SPEC, "-o", "json", "-p", str(traced.pid))
        failed = engine(SPEC, "-o", "json", "-p", str(traced.pid), "-x", "-t")
        traced.run()
        other.run()
        for e in (every, failed):  # the last path fails (EACCES): in both
            e.wait_rows(lambda rows: sum(r["path"] == paths[-1] for r in rows) >= CALLS_PER_PATH)
        done = oracle.out.wait_for(
            lambda ls: sum(x.endswith("|" + paths[-1]) for x in ls) >= 2 * CALLS_PER_PATH, 60
        )
        assert done, oracle.out.text()
        theirs = oracle_rows(oracle.stop())
        result, only_failed = every.stop(), failed.stop()
    finally:
        traced.kill()
        other.kill()
        remove_files(files)
    assert result.code == 0, result.stderr
    assert only_failed.code == 0, only_failed.stderr
    ours = engine_rows(result.json_rows())
    assert ours == [r for r in theirs if r[0] == traced.pid]
    assert [(path, err) for *_, err, path in ours] == [
        (p, e) for p, e in files.stat_cases.items() for _ in range(CALLS_PER_PATH)
    ]
    assert all((ret == 0) == (err == 0) and (ret == -1) == (err != 0) for *_, ret, err, _ in ours)
    assert {(pid, comm) for pid, comm, *_ in ours} == {(traced.pid, comm_name("h19s"))}
    # -p kept the other child out: bpftrace saw it make the same calls
    assert [r[2:] for r in theirs if r[0] == other.pid] == [r[2:] for r in ours]
    # -x: the failures only; -t: seconds since the first event, in order
    rows = only_failed.json_rows()
    assert engine_rows(rows) == [r for r in ours if r[3] != 0]
    times = [r["time"] for r in rows]
    assert times == sorted(times) and times[0] >= 0
