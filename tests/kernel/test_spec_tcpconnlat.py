"""`specs/tcpconnlat.yaml`: connect -> established latency, state keyed by the socket.

bcc's tcpconnlat needs kprobes (absent here), so a bpftrace script on the same tracepoint
watches the same connects at the same time. Exact: one row per connect, with the connecting
child's pid and comm (kept in the state map from connect time, since the SYN-ACK arrives in
softirq context), its addresses and ports. A latency is a time: each must be positive, below
the test's own wall time, and within 2 ms of bpftrace's for the same socket."""

from __future__ import annotations

import time

import pytest
from oracle import Bpftrace

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/tcpconnlat.yaml"
TP = "tracepoint:sock:inet_sock_set_state"
SCRIPT = (
    f"{TP} /args->protocol == 6 && args->oldstate == 7 && args->newstate == 2 && pid == CHILD/\n"
    "{ @start[args->skaddr] = nsecs; @who[args->skaddr] = pid; }\n"
    f"{TP} /args->protocol == 6 && args->oldstate == 2 && args->newstate == 1"
    " && @start[args->skaddr]/\n"
    '{ printf("%d %d %d\\n", @who[args->skaddr], args->dport,'
    " (nsecs - @start[args->skaddr]) / 1000);\n"
    "  delete(@start[args->skaddr]); delete(@who[args->skaddr]); }\n"
)


def test_rows_are_exact_and_latencies_agree_with_bpftrace(engine, conn_child) -> None:
    child = conn_child(
        listen=("127.0.0.1", "::1"), connects=((0, 3), (1, 2)), comm="connlat-test", wait=True
    )
    oracle = Bpftrace(SCRIPT.replace("CHILD", str(child.pid)))
    e = engine(SPEC, "-o", "json", "-L")
    began = time.monotonic()
    child.go()
    child.run()
    wall_us = (time.monotonic() - began) * 1e6
    result = e.stop()
    theirs = [tuple(int(x) for x in ln.split()) for ln in oracle.stop() if ln.strip()]
    assert result.code == 0, result.stderr
    rows = [r for r in result.json_rows() if r["pid"] == child.pid]
    assert sorted((r["ip"], r["daddr"], r["dport"]) for r in rows) == sorted(
        [(4, "127.0.0.1", child.ports[0])] * 3 + [(6, "::1", child.ports[1])] * 2
    )
    assert all(r["comm"] == "connlat-test" for r in rows)
    assert all(r["saddr"] == r["daddr"] and r["lport"] > 0 for r in rows)
    mine = sorted((r["dport"], r["lat"] * 1000) for r in rows)
    oracle_rows = sorted((d, us) for p, d, us in theirs if p == child.pid)
    assert [d for d, _ in mine] == [d for d, _ in oracle_rows]
    for (_, ours_us), (_, their_us) in zip(mine, oracle_rows):
        assert 0 < ours_us < wall_us
        assert abs(ours_us - their_us) < 2000


def test_min_latency_filter_drops_fast_connects(engine, conn_child) -> None:
    child = conn_child(listen=("127.0.0.1",), connects=((0, 2),), comm="connlat-test", wait=True)
    e = engine(SPEC, "-o", "json", "-m", "10000000")  # 10 s: no loopback connect is that slow
    child.go()
    child.run()
    result = e.stop()
    assert result.code == 0, result.stderr
    assert [r for r in result.json_rows() if r["pid"] == child.pid] == []
