"""Connect storm: exactly N TCP connect()+close() to a loopback listener, bounded in time.

    python bench/storm.py --port 61001 --n 100000 [--timeout 120] [--host 127.0.0.1]
    python bench/storm.py --port 61999 --trickle 0.005 --timeout 60

Storm mode opens a listener on HOST:PORT, forks an acceptor process (accept + close, so the
accept queue never fills and no SYN waits for a retransmit), then makes N connects, each one
connect() then close(), as fast as one Python thread can. It stops early only at the time
limit, and prints one JSON line: {"n", "ok", "failed", "seconds", "rate"} (rate = ok/s).

Trickle mode connects once every INTERVAL seconds until SIGTERM/SIGINT or the time limit:
the runner uses it to learn when a tool prints its first event (start-up time).

Meant to run inside a fresh network namespace (`ip netns exec NS python bench/storm.py`),
so TIME_WAIT sockets of earlier storms do not change this one's rate; it uses only loopback
addresses. Standalone on purpose (stdlib only): `ip netns exec` needs no package path.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time

CHECK_EVERY = 256  # connects between time-limit checks


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(4096)
    return s


def start_acceptor(server: socket.socket) -> int:
    """Fork a process that accepts and closes until killed; returns its pid."""
    pid = os.fork()
    if pid:
        return pid
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    accept = server._accept  # type: ignore[attr-defined]  # (fd, addr): no socket object
    close = os.close
    try:
        while True:
            fd, _ = accept()
            close(fd)
    finally:
        os._exit(0)


def storm(addr: tuple[str, int], family: int, n: int, timeout: float) -> dict[str, float]:
    ok = failed = 0
    new = socket.socket
    stream = socket.SOCK_STREAM
    t0 = time.perf_counter()
    deadline = t0 + timeout
    made = 0
    while made < n:
        for _ in range(min(CHECK_EVERY, n - made)):
            c = new(family, stream)
            try:
                c.connect(addr)
                ok += 1
            except OSError:
                failed += 1
            c.close()
        made = ok + failed
        if time.perf_counter() >= deadline:
            break
    seconds = time.perf_counter() - t0
    return {"n": made, "ok": ok, "failed": failed, "seconds": seconds, "rate": ok / seconds}


class Stop:
    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: object) -> None:
        self.requested = True


def trickle(addr: tuple[str, int], family: int, interval: float, timeout: float) -> dict:
    stop = Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ok = failed = 0
    t0 = time.perf_counter()
    while not stop.requested and time.perf_counter() - t0 < timeout:
        c = socket.socket(family, socket.SOCK_STREAM)
        try:
            c.connect(addr)
            ok += 1
        except OSError:
            failed += 1
        c.close()
        time.sleep(interval)
    seconds = time.perf_counter() - t0
    return {"n": ok + failed, "ok": ok, "failed": failed, "seconds": seconds, "rate": ok / seconds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/storm.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True, help="listener port (use > 61000)")
    p.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    p.add_argument("--n", type=int, default=100000, help="connects to make (storm mode)")
    p.add_argument("--timeout", type=float, default=120.0, help="stop after this many seconds")
    p.add_argument("--trickle", type=float, metavar="INTERVAL", help="trickle mode: seconds apart")
    args = p.parse_args(argv)
    if args.host not in ("127.0.0.1", "::1"):
        p.error("--host must be a loopback address (127.0.0.1 or ::1)")
    if not 0 < args.n <= 10_000_000:
        p.error("--n must be 1..10000000")
    server = listen(args.host, args.port)
    family = server.family
    acceptor = start_acceptor(server)
    server.close()
    addr = (args.host, args.port)
    try:
        if args.trickle is not None:
            result = trickle(addr, family, args.trickle, args.timeout)
        else:
            result = storm(addr, family, args.n, args.timeout)
    finally:
        os.kill(acceptor, signal.SIGKILL)
        os.waitpid(acceptor, 0)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
