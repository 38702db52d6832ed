"""`specs/tcprtt.yaml` (bcc's tcprtt on tcp:tcp_probe) against a bpftrace script on the same
tracepoint, on the same connections, at the same time.

bcc's tcprtt needs kprobes (absent here); it reads `srtt_us >> 3` in tcp_rcv_established, where
tcp_probe fires with the same value. A child listens on 127.0.0.3 and ::1 (ports the kernel
picks), and once every tool is attached makes ROUNDS one-byte round trips on a connection to
each. Each run filters by this child's ports, so other traffic on the machine is not counted;
the oracle keeps a histogram per (filter) and sums for the averages. Every bucket is exact (the
same samples of the same value), as are the averages (integer division, both sides), and the
filters that should match nothing (another remote address, the other family) match nothing.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import CHILD_TIMEOUT
from oracle import BpftraceJson, by_index

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/tcprtt.yaml"
ROUNDS = 40

CHILD = f"""
import socket, sys, threading
def serve(s):
    c, _ = s.accept()
    while (d := c.recv(64)):
        c.sendall(d)
    c.close()
listeners = []
for family, host in ((socket.AF_INET, "127.0.0.3"), (socket.AF_INET6, "::1")):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((host, 0))
    s.listen(4)
    listeners.append(s)
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print(*(s.getsockname()[1] for s in listeners), flush=True)
sys.stdin.readline()
for s in listeners:
    c = socket.create_connection(s.getsockname()[:2])
    for _ in range({ROUNDS}):
        c.sendall(b"x")
        assert c.recv(64) == b"x"
    c.close()
print("done", flush=True)
"""

SCRIPT = """
BEGIN { printf("READY\\n"); }
tracepoint:tcp:tcp_probe /args->dport == P4/ {
  @v4 = hist(args->srtt); @v4ms = hist(args->srtt / 1000);
  @v4_sum = sum(args->srtt); @v4_n = count();
}
tracepoint:tcp:tcp_probe /args->sport == P6/ { @srv6 = hist(args->srtt); }
tracepoint:tcp:tcp_probe /args->dport == P6/ {
  @cli6 = hist(args->srtt); @cli6_sum = sum(args->srtt); @cli6_n = count();
}
"""


def records(lines: list[dict]) -> dict[str, object]:
    found: dict[str, object] = {}
    for r in lines:
        if r.get("type") in ("map", "hist"):
            found.update(r["data"])
    return found


def hist_rows(result, name: str) -> list[dict]:  # type: ignore[no-untyped-def]
    assert result.code == 0, result.stderr
    return [r for r in result.json_rows() if r.get("aggregation") == name]


def test_histograms_and_averages_equal_bpftrace(engine) -> None:
    with subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", CHILD], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    ) as child:  # fmt: skip
        assert child.stdout is not None and child.stdin is not None
        p4, p6 = child.stdout.readline().split()
        oracle = BpftraceJson(SCRIPT.replace("P4", p4).replace("P6", p6))
        runs = {
            "v4": engine(SPEC, "-o", "json", "-P", p4, ready=False),
            "v4ms": engine(
                SPEC, "-o", "json", "-P", p4, "-m", "-e", "-A", "127.0.0.3", ready=False
            ),
            "srv6": engine(SPEC, "-o", "json", "-p", p6, "-a", "::1", "-b", "-6", ready=False),
            "cli6": engine(SPEC, "-o", "json", "-P", p6, "-B", "-e", ready=False),
            "none_addr": engine(SPEC, "-o", "json", "-P", p4, "-A", "127.0.0.9", ready=False),
            "none_family": engine(SPEC, "-o", "json", "-P", p6, "-4", ready=False),
        }
        for e in runs.values():
            e.wait_ready()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "done\n"
        assert child.wait(CHILD_TIMEOUT) == 0
        results = {key: e.stop() for key, e in runs.items()}
        theirs = records(oracle.stop())
    # every round trip was sampled on both ends: the histograms hold something to compare
    assert sum(b["count"] for b in theirs["@v4"]) >= ROUNDS

    (v4,) = hist_rows(results["v4"], "all")
    assert v4["unit"] == "usecs" and by_index(v4["buckets"]) == by_index(theirs["@v4"])
    (v4ms,) = hist_rows(results["v4ms"], "all_ms")
    assert v4ms["unit"] == "msecs" and by_index(v4ms["buckets"]) == by_index(theirs["@v4ms"])
    assert v4ms["count"] == theirs["@v4_n"]
    avg = [r for r in results["v4ms"].json_rows() if "avg(ms)" in r]
    # -m -e: the average of the microseconds, printed in ms with 3 decimals (bcc: of each
    # sample divided to ms first, as an integer)
    assert avg == [{"avg(ms)": (theirs["@v4_sum"] // theirs["@v4_n"]) / 1000}]

    (srv6,) = hist_rows(results["srv6"], "local")
    assert srv6["laddr"] == "::1" and by_index(srv6["buckets"]) == by_index(theirs["@srv6"])
    (cli6,) = hist_rows(results["cli6"], "remote")
    assert cli6["raddr"] == "::1" and by_index(cli6["buckets"]) == by_index(theirs["@cli6"])
    avg = [r for r in results["cli6"].json_rows() if "avg(us)" in r]
    assert avg == [{"raddr": "::1", "avg(us)": theirs["@cli6_sum"] // theirs["@cli6_n"]}]

    for key in ("none_addr", "none_family"):
        (empty,) = hist_rows(results[key], "all")
        assert empty["count"] == 0 and empty["buckets"] == [], (key, empty)
