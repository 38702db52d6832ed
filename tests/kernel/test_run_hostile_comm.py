"""A process names itself: a child sets its comm with prctl(PR_SET_NAME) to bytes with ESC,
BEL, a newline and a backslash, then connects. `engine run specs/tcpconnect.yaml -p PID`
prints that comm escaped (\\xNN, \\\\) in its table and CSV row, one line each, and exactly in
JSON. The three engines run side by side on the same connect."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/tcpconnect.yaml"
COMM = "a\x1b[31m\x07b\nc\\d"  # 11 bytes: fits the kernel's 16-byte comm
SHOWN = "a\\x1b[31m\\x07b\\x0ac\\\\d"


def test_hostile_comm_is_escaped_in_table_and_csv_exact_in_json(engine, conn_child):
    child = conn_child(listen=["127.0.0.1"], comm=COMM, wait=True)
    pid = str(child.pid)
    table = engine(SPEC, "-p", pid, ready=False)
    csv = engine(SPEC, "-p", pid, "-o", "csv", ready=False)
    js = engine(SPEC, "-p", pid, "-o", "json", ready=False)
    for e in (table, csv, js):
        e.wait_ready(timeout=180)
    child.go()
    child.run()
    port = child.ports[0]
    table.wait_stdout(lambda lines: len(lines) >= 2)
    csv.wait_stdout(lambda lines: len(lines) >= 2)
    js.wait_stdout(lambda lines: len(lines) >= 1)
    results = [e.stop() for e in (table, csv, js)]
    assert [r.code for r in results] == [0, 0, 0], [r.stderr for r in results]
    t, c, j = results

    assert t.out_lines == [
        "PID    COMM         IP SADDR            DADDR            DPORT",
        f"{pid:<6} {SHOWN:<12} 4  127.0.0.1        127.0.0.1        {port}",
    ]
    assert c.out_lines == [
        "PID,COMM,IP,SADDR,DADDR,DPORT",
        f"{pid},{SHOWN},4,127.0.0.1,127.0.0.1,{port}",
    ]
    assert j.json_rows() == [
        {"pid": child.pid, "comm": COMM, "ip": 4, "saddr": "127.0.0.1",
         "daddr": "127.0.0.1", "dport": port}
    ]  # fmt: skip
    for r in (t, c):
        assert "\x1b" not in r.stdout and "\x07" not in r.stdout
