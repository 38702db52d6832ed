"""`specs/sigsnoop.yaml` (signal/signal_generate) against a bpftrace script on the same
tracepoint at the same time. A target child ignores SIGUSR2 and handles SIGUSR1 and SIGHUP;
a sender child, named, sends it a known sequence (one ignored: result 1). Exact: every row's
sender pid and comm, signal, target and result, in order, equal to bpftrace's; `-s` keeps one
signal, `-x` only the signals not delivered (the sender's SIGCHLD to this test, ignored,
is one of them)."""

from __future__ import annotations

import signal
import subprocess
import sys

import procs
import pytest
from conftest import CHILD_TIMEOUT
from oracle import BpftraceJson

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/sigsnoop.yaml"
TARGET = (
    "import signal, sys\n"
    "signal.signal(signal.SIGUSR2, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGUSR1, lambda *a: None)\n"
    "signal.signal(signal.SIGHUP, lambda *a: None)\n"
    "print('up', flush=True)\n"
    "sys.stdin.readline()\n"
)
SENT = [signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2]
SENDER = (
    "import ctypes, os, sys, time\n"
    "ctypes.CDLL(None).prctl(15, b'h21sender', 0, 0, 0)\n"
    "print(os.getpid(), flush=True)\n"
    "sys.stdin.readline()\n"
    "for s in sys.argv[2:]:\n"
    "    os.kill(int(sys.argv[1]), int(s))\n"
    "    time.sleep(0.05)\n"
    "print('done', flush=True)\n"
)
SCRIPT = """
BEGIN { printf("READY\\n"); }
tracepoint:signal:signal_generate /pid == %d/ {
  printf("SIG %%d %%s %%d %%d %%d\\n", pid, comm, args->sig, args->pid, args->result);
}
"""


def test_rows_match_bpftrace(engine) -> None:
    target = procs.spawn([sys.executable, "-I", "-c", TARGET], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert target.stdout.readline() == "up\n"
    sender = procs.spawn(
        [sys.executable, "-I", "-c", SENDER, str(target.pid), *(str(int(s)) for s in SENT)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    spid = int(sender.stdout.readline())
    oracle = BpftraceJson(SCRIPT % spid)
    try:
        ours = engine(SPEC, "-p", str(spid), "-o", "json")
        one = engine(SPEC, "-p", str(spid), "-s", str(int(signal.SIGHUP)), "-o", "json")
        failed = engine(SPEC, "-p", str(spid), "-x", "-o", "json")
        sender.stdin.write("go\n")
        sender.stdin.flush()
        assert sender.stdout.readline() == "done\n"
        assert sender.wait(CHILD_TIMEOUT) == 0
        ours.wait_rows(lambda rows: len(rows) >= len(SENT))
        result, only, errors = ours.stop(), one.stop(), failed.stop()
        theirs = [
            r["data"].split()[1:]
            for r in oracle.stop()
            if r.get("type") == "printf" and r["data"].startswith("SIG ")
        ]
    finally:
        oracle.kill()
        target.kill()
    for r in (result, only, errors):
        assert r.code == 0, r.stderr
    # the sender's exit also sends SIGCHLD to this test (ignored): rows to the target only
    rows = [
        (r["pid"], r["comm"], r["sig"], r["tpid"], r["result"])
        for r in result.json_rows()
        if r["tpid"] == target.pid
    ]
    assert rows == [
        (int(p), c, int(s), int(t), int(x)) for p, c, s, t, x in theirs if int(t) == target.pid
    ]
    ignored = {int(signal.SIGUSR2)}
    assert rows == [
        (spid, "h21sender", int(s), target.pid, 1 if int(s) in ignored else 0) for s in SENT
    ]
    assert [r["sig"] for r in only.json_rows()] == [int(signal.SIGHUP)]
    assert [r["sig"] for r in errors.json_rows() if r["tpid"] == target.pid] == [
        int(s) for s in SENT if int(s) in ignored
    ]
    assert all(r["result"] != 0 for r in errors.json_rows())
