"""`engine run specs/tcpconnect.yaml` against the running kernel, with its own TCP traffic.

Each test starts the engine, waits for "Tracing" on stderr, makes connects from a child whose
pid, uid, comm (set with prctl) and ports are known, stops the engine and asserts exact rows.
Other processes on the machine may connect meanwhile, so rows are picked by pid (or the test
filters in the kernel and then asserts that nothing else came through).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/tcpconnect.yaml"
HAS_KPROBES = os.path.isdir("/sys/bus/event_source/devices/kprobe")
NOBODY = 65534

COLUMNS = ["pid", "comm", "ip", "saddr", "daddr", "dport"]
TABLE_HEADER = "PID    COMM         IP SADDR            DADDR            DPORT"
TABLE_HEADER_TU = "TIME(s)   UID    PID    COMM         IP SADDR            DADDR            DPORT"
CSV_HEADER = "PID,COMM,IP,SADDR,DADDR,DPORT"
COUNT_HEADER = "LADDR                     RADDR                     RPORT                CONNECTS"
TRACING = "Tracing connect ... Hit Ctrl-C to end."
LOOPBACK = {"127.0.0.1": 4, "::1": 6}


def expected(child, listener: int = 0, **extra: object) -> dict:
    """The JSON row of one connect of `child` to its `listener`-th listener."""
    addr = child.listen[listener]
    row = {
        "pid": child.pid,
        "comm": child.comm,
        "ip": LOOPBACK[addr],
        "saddr": addr,
        "daddr": addr,
        "dport": child.ports[listener],
    }
    return {**extra, **row}


def rows_of(rows: list[dict], pid: int) -> list[dict]:
    return [r for r in rows if r.get("pid") == pid]


def table_line(child, listener: int = 0) -> str:
    """A table row exactly as the seed prints it: %-6s %-12s %-2s %-16s %-16s %s."""
    addr = child.listen[listener]
    return (
        f"{child.pid:<6} {child.comm:<12} {LOOPBACK[addr]:<2} {addr:<16} {addr:<16} "
        f"{child.ports[listener]}"
    )


def count_line(addr: str, port: int, connects: int) -> str:
    return f"{addr:<25} {addr:<25} {port:<20} {connects}"


def assert_clean_stderr(result) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.err_lines[-1:] == [TRACING] or TRACING in result.err_lines, result.stderr


# --- output formats ---------------------------------------------------------------------------


def test_json_ipv4_and_ipv6(engine, conn_child):
    e = engine(SPEC, "-o", "json")
    v4 = conn_child(listen=["127.0.0.1"]).run()
    v6 = conn_child(listen=["::1"]).run()
    result = e.stop()

    assert result.code == 0, result.stderr
    rows = result.json_rows()
    assert all(list(r) == COLUMNS for r in rows), rows
    assert rows_of(rows, v4.pid) == [expected(v4)]
    assert rows_of(rows, v6.pid) == [expected(v6)]
    assert rows_of(rows, v4.pid)[0] == {
        "pid": v4.pid,
        "comm": "conn-test",
        "ip": 4,
        "saddr": "127.0.0.1",
        "daddr": "127.0.0.1",
        "dport": v4.ports[0],
    }
    assert_clean_stderr(result)


def test_csv(engine, conn_child):
    e = engine(SPEC, "-o", "csv")
    v4 = conn_child(listen=["127.0.0.1"]).run()
    v6 = conn_child(listen=["::1"]).run()
    result = e.stop()

    assert result.code == 0, result.stderr
    lines = result.out_lines
    assert lines[0] == CSV_HEADER
    assert lines.count(CSV_HEADER) == 1
    assert [ln for ln in lines if ln.startswith(f"{v4.pid},")] == [
        f"{v4.pid},conn-test,4,127.0.0.1,127.0.0.1,{v4.ports[0]}"
    ]
    assert [ln for ln in lines if ln.startswith(f"{v6.pid},")] == [
        f"{v6.pid},conn-test,6,::1,::1,{v6.ports[0]}"
    ]
    assert all(len(ln.split(",")) == 6 for ln in lines), lines


def test_table(engine, conn_child):
    e = engine(SPEC)
    v4 = conn_child(listen=["127.0.0.1"]).run()
    v6 = conn_child(listen=["::1"]).run()
    result = e.stop()

    assert result.code == 0, result.stderr
    lines = result.out_lines
    assert lines[0] == TABLE_HEADER
    mine4 = [ln for ln in lines if ln.split()[0] == str(v4.pid)]
    mine6 = [ln for ln in lines if ln.split()[0] == str(v6.pid)]
    assert mine4 == [table_line(v4)]
    assert mine6 == [table_line(v6)]
    assert mine4[0].split() == [
        str(v4.pid),
        "conn-test",
        "4",
        "127.0.0.1",
        "127.0.0.1",
        str(v4.ports[0]),
    ]
    assert mine6[0].split() == [str(v6.pid), "conn-test", "6", "::1", "::1", str(v6.ports[0])]


# --- -t and -U ---------------------------------------------------------------------------------


def test_timestamp_and_uid_json(engine, conn_child):
    child = conn_child(listen=["127.0.0.1", "::1"], connects=[(0, 1), (1, 1)], wait=True)
    e = engine(SPEC, "-o", "json", "-t", "-U", "-p", str(child.pid))
    child.go()
    child.finish()
    result = e.stop()

    assert result.code == 0, result.stderr
    rows = result.json_rows()
    assert [list(r) for r in rows] == [["time", "uid", *COLUMNS]] * 2, rows
    times = [r.pop("time") for r in rows]
    assert all(isinstance(t, float) for t in times), times
    assert times[0] == 0.0  # elapsed since the first event, and -p makes ours the first
    assert times[1] >= 0.0
    assert rows == [expected(child, 0, uid=0), expected(child, 1, uid=0)]


def test_timestamp_and_uid_table(engine, conn_child):
    child = conn_child(listen=["127.0.0.1", "::1"], connects=[(0, 1), (1, 1)], wait=True)
    e = engine(SPEC, "-t", "-U", "-p", str(child.pid))
    child.go()
    child.finish()
    result = e.stop()

    assert result.code == 0, result.stderr
    header, *rows = result.out_lines
    assert header == TABLE_HEADER_TU
    assert header.startswith("TIME(s)")
    assert len(rows) == 2, result.stdout
    times = [row.split()[0] for row in rows]
    assert times[0] == "0.000"
    assert re.fullmatch(r"\d+\.\d{3}", times[1]), times
    for i, (row, t) in enumerate(zip(rows, times)):
        assert row == f"{t:<9} {0:<6} {table_line(child, i)}"


# --- filters --------------------------------------------------------------------------------


def test_pid_filter(engine, conn_child):
    chosen = conn_child(comm="conn-chosen", connects=[(0, 2)], wait=True)
    other = conn_child(comm="conn-other", connects=[(0, 2)], wait=True)
    e = engine(SPEC, "-o", "json", "-p", str(chosen.pid))
    chosen.go()
    other.go()
    chosen.finish()
    other.finish()
    result = e.stop()

    assert result.code == 0, result.stderr
    rows = result.json_rows()
    assert rows == [expected(chosen)] * 2  # and nothing from any other process


@pytest.mark.parametrize("picked", [(0, 2), (1,)], ids=["two-ports", "one-port"])
def test_port_filter(engine, conn_child, picked):
    child = conn_child(
        listen=["127.0.0.1", "127.0.0.1", "::1"], connects=[(0, 1), (1, 1), (2, 1)], wait=True
    )
    ports = ",".join(str(child.ports[i]) for i in picked)
    e = engine(SPEC, "-o", "json", "-P", ports)
    child.go()
    child.finish()
    result = e.stop()

    assert result.code == 0, result.stderr
    rows = result.json_rows()
    assert {r["dport"] for r in rows} <= {child.ports[i] for i in picked}, rows
    assert rows_of(rows, child.pid) == [expected(child, i) for i in picked]


def test_uid_filter(engine, conn_child):
    e = engine(SPEC, "-o", "json", "-u", str(NOBODY), "-U")
    nobody = conn_child(comm="conn-nobody", as_nobody=True).run()
    root = conn_child(comm="conn-root").run()
    result = e.stop()

    assert nobody.uid == NOBODY and root.uid == 0
    assert result.code == 0, result.stderr
    rows = result.json_rows()
    assert all(r["uid"] == NOBODY for r in rows), rows
    assert rows_of(rows, nobody.pid) == [expected(nobody, uid=NOBODY)]
    assert rows_of(rows, root.pid) == []


# --- -c: counts in the kernel -------------------------------------------------------------------


def test_count_table(engine, conn_child):
    e = engine(SPEC, "-c")
    child = conn_child(listen=["127.0.0.1", "::1"], connects=[(0, 7), (1, 3)]).run()
    result = e.stop()

    assert result.code == 0, result.stderr
    lines = result.out_lines
    assert lines[:2] == ["", COUNT_HEADER]
    assert lines.count(COUNT_HEADER) == 1
    rows = lines[2:]
    v4 = count_line("127.0.0.1", child.ports[0], 7)
    v6 = count_line("::1", child.ports[1], 3)
    assert v4 in rows and v6 in rows, result.stdout
    assert rows.index(v4) < rows.index(v6)  # sorted by count, descending
    counts = [int(r.split()[-1]) for r in rows]
    assert counts == sorted(counts, reverse=True)
    assert v4.split() == ["127.0.0.1", "127.0.0.1", str(child.ports[0]), "7"]
    assert_clean_stderr(result)


def test_count_json(engine, conn_child):
    e = engine(SPEC, "-c", "-o", "json")
    child = conn_child(listen=["127.0.0.1", "::1"], connects=[(0, 7), (1, 3)]).run()
    result = e.stop()

    assert result.code == 0, result.stderr
    rows = result.json_rows()  # no header, no blank line: every line is JSON
    assert all(list(r) == ["saddr", "daddr", "dport", "connects"] for r in rows), rows
    mine = [r for r in rows if r["dport"] in child.ports]
    assert mine == [
        {"saddr": "127.0.0.1", "daddr": "127.0.0.1", "dport": child.ports[0], "connects": 7},
        {"saddr": "::1", "daddr": "::1", "dport": child.ports[1], "connects": 3},
    ]


def test_count_interval(engine, conn_child):
    e = engine(SPEC, "-c", "--interval", "1")
    child = conn_child(connects=[(0, 3)]).run()
    mine = count_line("127.0.0.1", child.ports[0], 3)
    started = time.monotonic()
    # Two tables printed while running, the later one already holding our 3 connects.
    e.wait_stdout(lambda ls: ls.count(COUNT_HEADER) >= 2 and mine in ls, timeout=10)
    waited = time.monotonic() - started
    result = e.stop(signal.SIGINT)

    assert result.code == 0, result.stderr
    assert waited < 4.5, f"two 1 s tables took {waited:.1f} s"
    lines = result.out_lines
    assert lines.count(COUNT_HEADER) >= 3  # two intervals and the final one
    # Every table starts with a blank line, then the header.
    for i, line in enumerate(lines):
        if line == COUNT_HEADER:
            assert i >= 1 and lines[i - 1] == ""
    last = len(lines) - 1 - lines[::-1].index(COUNT_HEADER)
    assert mine in lines[last + 1 :]  # counts are cumulative


# --- what stderr says ----------------------------------------------------------------------------


def test_stderr_names_alternative_and_stdout_is_data(engine, conn_child):
    e = engine(SPEC, "-o", "json")
    child = conn_child().run()
    result = e.stop()

    assert result.code == 0, result.stderr
    rows = result.json_rows()  # stdout: JSON rows only
    assert rows_of(rows, child.pid) == [expected(child)]
    using, tracing = result.err_lines  # exactly two status lines, nothing else
    assert tracing == TRACING
    if HAS_KPROBES:
        assert using == "probe 'connect': using kretprobe tcp_v4_connect, tcp_v6_connect"
    else:
        m = re.fullmatch(
            r"probe 'connect': using tracepoint sock/inet_sock_set_state "
            r"\(skipped 1\. kretprobe tcp_v4_connect, tcp_v6_connect: "
            r"kprobe tcp_v4_connect: (?P<why>.+)\)",
            using,
        )
        assert m, using
        assert "CONFIG_KPROBES" in m["why"] or "kprobe" in m["why"], using


# --- transports: ready means ready, and nothing is left in the buffer at exit -----------------


@pytest.mark.parametrize("transport", [[], ["--perf-buffer"]], ids=["ringbuf", "perf-buffer"])
def test_connect_right_after_tracing_is_seen(engine, transport):
    """ "Tracing" promises the probe is live: a connect made the moment it appears is reported.

    The connect is made by this test process itself, with no child start-up in between.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    me = os.getpid()

    def connect() -> None:
        socket.create_connection(("127.0.0.1", port), timeout=10).close()

    try:
        e = engine(SPEC, "-o", "json", "-p", str(me), *transport, ready=False)
        e.wait_ready(then=connect)
        with open(f"/proc/self/task/{threading.get_native_id()}/comm") as f:
            comm = f.read().strip()
        result = e.stop()
    finally:
        listener.close()

    assert result.code == 0, result.stderr
    assert result.json_rows() == [
        {
            "pid": me,
            "comm": comm,
            "ip": 4,
            "saddr": "127.0.0.1",
            "daddr": "127.0.0.1",
            "dport": port,
        }
    ]


def test_wakeup_batch_drains_at_exit(engine, conn_child):
    """--wakeup 5 with 3 events: no wakeup is sent, but the final drain must still print them."""
    e = engine(SPEC, "-o", "json", "--wakeup", "5")
    child = conn_child(connects=[(0, 3)]).run()
    result = e.stop()

    assert result.code == 0, result.stderr
    assert rows_of(result.json_rows(), child.pid) == [expected(child)] * 3


# --- edge values ------------------------------------------------------------------------------


def test_uid_zero_is_a_filter_not_unset(engine, conn_child):
    e = engine(SPEC, "-o", "json", "-u", "0", "-U")
    nobody = conn_child(comm="conn-nobody", as_nobody=True).run()
    root = conn_child(comm="conn-root").run()
    result = e.stop()

    assert result.code == 0, result.stderr
    rows = result.json_rows()
    assert all(r["uid"] == 0 for r in rows), rows
    assert rows_of(rows, root.pid) == [expected(root, uid=0)]
    assert rows_of(rows, nobody.pid) == []


def test_fifteen_char_comm_is_whole(engine, conn_child):
    e = engine(SPEC, "-o", "json")
    child = conn_child(comm="abcdefghijklmno").run()  # TASK_COMM_LEN - 1
    result = e.stop()

    assert result.code == 0, result.stderr
    assert rows_of(result.json_rows(), child.pid) == [expected(child)]
    assert child.comm == "abcdefghijklmno"


def test_count_with_pid_filter(engine, conn_child):
    chosen = conn_child(comm="conn-chosen", connects=[(0, 3)], wait=True)
    other = conn_child(comm="conn-other", connects=[(0, 2)], wait=True)
    e = engine(SPEC, "-c", "-o", "json", "-p", str(chosen.pid))
    chosen.go()
    other.go()
    chosen.finish()
    other.finish()
    result = e.stop()

    assert result.code == 0, result.stderr
    assert result.json_rows() == [
        {"saddr": "127.0.0.1", "daddr": "127.0.0.1", "dport": chosen.ports[0], "connects": 3}
    ]


def test_count_csv(engine, conn_child):
    e = engine(SPEC, "-c", "-o", "csv")
    child = conn_child(listen=["::1"], connects=[(0, 3)]).run()
    result = e.stop()

    assert result.code == 0, result.stderr
    assert result.out_lines[0] == "LADDR,RADDR,RPORT,CONNECTS"
    assert result.out_lines.count("LADDR,RADDR,RPORT,CONNECTS") == 1
    assert f"::1,::1,{child.ports[0]},3" in result.out_lines
