"""`engine run specs/icmp.yaml` against the running kernel: ping 127.0.0.1, exact rows.

On loopback the echo reply is sent in the pinging task's context, so the row of every answered
request carries ping's own tgid, pid and comm and the request's sequence (decoded, 1 not 256).
"""

from __future__ import annotations

import os
import re

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/icmp.yaml"
HAS_KPROBES = os.path.isdir("/sys/bus/event_source/devices/kprobe")
HEADER = "TGID    PID     COMM            SEQ"
TRACING = "Tracing echo ... Hit Ctrl-C to end."
PING = ("-c", "3", "-i", "0.2", "127.0.0.1")


def table_line(pid: int, seq: int) -> str:
    return f"{pid:<7} {pid:<7} {'ping':<15} {seq}"


def test_table(engine, ping):
    e = engine(SPEC)
    pid = ping(*PING)
    pid6 = ping("-6", "-c", "2", "-i", "0.2", "::1")  # IPv6: the spec traces IPv4 only
    result = e.stop()

    assert result.code == 0, result.stderr
    lines = result.out_lines
    assert lines[0] == HEADER
    mine = [ln for ln in lines[1:] if ln.split()[0] == str(pid)]
    assert mine == [table_line(pid, 1), table_line(pid, 2), table_line(pid, 3)]
    assert [ln.split() for ln in mine] == [[str(pid), str(pid), "ping", str(s)] for s in (1, 2, 3)]
    assert not [ln for ln in lines[1:] if ln.split()[0] == str(pid6)]
    assert "Traceback" not in result.stderr


def test_json(engine, ping):
    e = engine(SPEC, "-o", "json")
    pid = ping(*PING)
    result = e.stop()

    assert result.code == 0, result.stderr
    rows = result.json_rows()
    assert all(list(r) == ["tgid", "pid", "comm", "seq"] for r in rows), rows
    assert [r for r in rows if r["tgid"] == pid] == [
        {"tgid": pid, "pid": pid, "comm": "ping", "seq": seq} for seq in (1, 2, 3)
    ]


def test_timestamp(engine, ping):
    e = engine(SPEC, "-t", "-o", "json")
    pid = ping(*PING)
    result = e.stop()

    assert result.code == 0, result.stderr
    rows = result.json_rows()
    assert all(list(r) == ["time", "tgid", "pid", "comm", "seq"] for r in rows), rows
    assert rows[0]["time"] == 0.0  # elapsed since the first event
    mine = [r for r in rows if r["tgid"] == pid]
    times = [r.pop("time") for r in mine]
    assert mine == [{"tgid": pid, "pid": pid, "comm": "ping", "seq": s} for s in (1, 2, 3)]
    assert all(isinstance(t, float) and t >= 0.0 for t in times), times
    # ping -i 0.2: the replies are at least ~0.2 s apart.
    assert all(0.15 <= b - a < 5.0 for a, b in zip(times, times[1:])), times


def test_timestamp_table(engine, ping):
    e = engine(SPEC, "-t")
    pid = ping(*PING)
    result = e.stop()

    assert result.code == 0, result.stderr
    header, *rows = result.out_lines
    assert header == "TIME(s)   " + HEADER
    mine = [r for r in rows if r.split()[1] == str(pid)]
    assert len(mine) == 3, result.stdout
    for seq, row in enumerate(mine, 1):
        t = row.split()[0]
        assert re.fullmatch(r"\d+\.\d{3}", t), row
        assert row == f"{t:<9} {table_line(pid, seq)}"


def test_stderr_names_alternative(engine, ping):
    e = engine(SPEC, "-o", "json")
    ping("-c", "1", "127.0.0.1")
    result = e.stop()

    assert result.code == 0, result.stderr
    result.json_rows()  # stdout holds only data
    using, tracing = result.err_lines
    assert tracing == TRACING
    if HAS_KPROBES:
        assert using == "probe 'echo': using kprobe icmp_echo"
    else:
        assert re.fullmatch(
            r"probe 'echo': using tracepoint net/net_dev_queue "
            r"\(skipped 1\. kprobe icmp_echo: kprobe icmp_echo: .+\)",
            using,
        ), using
