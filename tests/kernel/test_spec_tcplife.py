"""`specs/tcplife.yaml`: one row per TCP session at close, from two state maps keyed by the
socket (birth time; owning pid and comm) and the socket's own byte counters.

The shipped tcplife-bpfcc reads struct tcp_sock through another kernel's headers and prints
garbage bytes here; bpftrace reads BTF, so it is the oracle for the bytes: a child sends
100,000 bytes and receives 50,000 over loopback; bpftrace must see exactly those counters
(plus the sequence numbers SYN and FIN take) and the engine TX_KB/RX_KB as bcc computes them
from the same counters (bytes // 1024)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import procs
import pytest
from conftest import CHILD_TIMEOUT
from oracle import Bpftrace

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/tcplife.yaml"
SENT, RECEIVED = 100_000, 50_000
CHILD = f"""
import os, socket, sys, threading
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
port = s.getsockname()[1]
def serve():
    c, _ = s.accept(); got = b""
    while len(got) < {SENT}:
        got += c.recv(65536)
    c.sendall(b"y" * {RECEIVED}); c.shutdown(socket.SHUT_WR)
    while c.recv(65536):
        pass
    c.close()
t = threading.Thread(target=serve); t.start()
print(os.getpid(), port, flush=True)
sys.stdin.readline()
c = socket.create_connection(("127.0.0.1", port)); c.sendall(b"x" * {SENT})
got = b""
while len(got) < {RECEIVED}:
    got += c.recv(65536)
c.close(); t.join()
"""
TP = "tracepoint:sock:inet_sock_set_state"
SCRIPT = (  # only the test's own sessions (other tests may storm the machine meanwhile)
    f"{TP} /args->protocol == 6 && args->newstate == 7 && args->dport == PORT/ {{\n"
    "  $tp = (struct tcp_sock *)args->skaddr;\n"
    '  printf("%d %d %d %d\\n", args->sport, args->dport, $tp->bytes_acked, $tp->bytes_received);\n'
    "}\n"
)


def test_bytes_and_owner_are_exact(engine) -> None:
    child = procs.spawn(
        [sys.executable, "-I", "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        pid, port = (int(x) for x in child.stdout.readline().split())
        oracle = Bpftrace(SCRIPT.replace("PORT", str(port)))
        e = engine(SPEC, "-o", "json", "-D", str(port))
        began = time.monotonic()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.wait(CHILD_TIMEOUT) == 0
        wall_ms = (time.monotonic() - began) * 1000
        # the last FIN/ACK closes the sockets just after the child exits: wait for both rows
        e.wait_rows(lambda rows: any(r["rport"] == port for r in rows))
        oracle.wait_line(lambda ln: ln.split()[1:2] == [str(port)])
        result = e.stop()
        theirs = [tuple(int(x) for x in ln.split()) for ln in oracle.stop() if ln.strip()]
    finally:
        child.kill()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
    assert result.code == 0, result.stderr
    rows = result.json_rows()
    assert len(rows) == 1, rows  # the connecting side (-D: remote port = the listener)
    row = rows[0]
    comm = os.path.basename(sys.executable)[:15]
    assert (row["pid"], row["comm"], row["rport"]) == (pid, comm, port)
    assert (row["laddr"], row["raddr"]) == ("127.0.0.1", "127.0.0.1")
    assert (row["tx_kb"], row["rx_kb"]) == (SENT // 1024, RECEIVED // 1024)
    oracle_row = [t for t in theirs if t[0] == row["lport"] and t[1] == port]
    assert len(oracle_row) == 1, theirs
    # the kernel's counters include the sequence numbers SYN and FIN take
    acked, received = oracle_row[0][2:]
    assert (acked, received) == (SENT + 2, RECEIVED + 1)
    assert (row["tx_kb"], row["rx_kb"]) == (acked // 1024, received // 1024)
    assert 0 < row["ms"] < wall_ms
