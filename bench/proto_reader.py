"""Prototype readers for the engine's event path: what the proposals in docs/performance.md
would buy, measured with the engine's own generated BPF program (tcpconnect, ring buffer).

    python -m bench.proto_reader --reader lean|mmap [--wakeup N] [--pages P]

The BPF side is the engine's, unchanged: load + schema + plan + bind + render + bcc load
through engine.runtime.runner.start (so --wakeup N is the template's batched wake-up). Only the
user-space reader differs from `engine run`:

  lean  libbpf ring_buffer__poll with our own ctypes callback (no bcc wrapper frame), the
        event unpacked by one precomputed struct.Struct, strings and addresses memoized,
        rows joined and written once per wake-up, the lost counter read once a second;
  mmap  no per-event callback at all: the ring buffer is mmap'ed and walked in Python
        (the kernel's record layout: u32 len with busy/discard bits, u32 pg_off, data, 8-byte
        aligned), with epoll for wake-ups; otherwise as lean.

Prints the tcpconnect default table (PID COMM IP SADDR DADDR DPORT) like `engine run`, and
"lost N events" / "N events lost in all" on stderr. Bench-only: not part of the engine.
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import select
import signal
import socket
import struct
import sys
import time
from typing import Any, Callable

from engine.plan import resources

SPEC = "specs/tcpconnect.yaml"
POLL_MS = 100
LOST_EVERY = 1.0
EVENT = struct.Struct("<QII16sHH16sH16sH")  # engine's tcpconnect event_t, 72 bytes
ROW = "%-6d %-12s %-2d %-16s %-16s %d\n"
HEADER = "PID    COMM         IP SADDR            DADDR            DPORT\n"
BUSY, DISCARD = 1 << 31, 1 << 30


class Stop:
    requested = False

    def __call__(self, signum: int, frame: object) -> None:
        Stop.requested = True


def start(wakeup: int, pages: int) -> Any:
    from engine.codegen import render
    from engine.plan import planner
    from engine.runtime import runner
    from engine.spec.loader import load_document
    from engine.spec.schema import check_schema

    doc = load_document(SPEC)
    problems = check_schema(doc)
    if problems:
        raise SystemExit(str(problems))
    plan = planner.plan(doc, None)
    config = runner.RunConfig(wakeup_batch=wakeup, ringbuf_pages=pages)
    session = runner.start(plan, config, "ringbuf")
    # the layout this reader hard-codes must be the engine's
    decoder = render.load_decoder(plan)
    assert ctypes.sizeof(decoder.Event) == EVENT.size, "event layout changed"
    return session


def make_formatter(rows: list[str]) -> Callable[[bytes | memoryview, int], None]:
    """One event -> one table row appended to `rows`; memoizes comm and address text."""
    unpack_from = EVENT.unpack_from
    append = rows.append
    texts: dict[bytes, str] = {}
    addrs: dict[tuple[int, bytes], str] = {}
    ntop = socket.inet_ntop
    v4, v6 = socket.AF_INET, socket.AF_INET6

    def addr(family: int, raw: bytes) -> str:
        key = (family, raw)
        s = addrs.get(key)
        if s is None:
            if family == v4:
                s = ntop(v4, raw[:4])
            elif family == v6:
                s = ntop(v6, raw)
            else:
                s = f"family{family}"
            if len(addrs) < 65536:
                addrs[key] = s
        return s

    def fmt(buf: bytes | memoryview, offset: int) -> None:
        _t, _uid, pid, task, ip, sf, sa, df, da, dport = unpack_from(buf, offset)
        comm = texts.get(task)
        if comm is None:
            comm = task.split(b"\0", 1)[0].decode("utf-8", "replace")
            if len(texts) < 65536:
                texts[task] = comm
        version = 4 if ip == v4 else 6 if ip == v6 else ip
        append(ROW % (pid, comm, version, addr(sf, sa), addr(df, da), dport))

    return fmt


def lost_total(b: Any) -> int:
    try:
        return int(sum(b[resources.LOST][0]))
    except Exception:
        return 0


class Lost:
    def __init__(self, b: Any) -> None:
        self.b = b
        self.seen = 0
        self.next = time.monotonic() + LOST_EVERY

    def check(self, now: float, final: bool = False) -> None:
        if not final and now < self.next:
            return
        self.next = now + LOST_EVERY
        lost = lost_total(self.b)
        if lost > self.seen:
            print(f"lost {lost - self.seen} events (ring buffer full)", file=sys.stderr, flush=True)
            self.seen = lost
        if final and self.seen:
            print(f"{self.seen} events lost in all", file=sys.stderr, flush=True)


def write_rows(out: Any, rows: list[str]) -> None:
    if rows:
        out.write("".join(rows))
        rows.clear()
        out.flush()


def run_lean(b: Any, out: Any) -> None:
    from bcc.libbcc import _RINGBUF_CB_TYPE  # (ctx, data, size) -> int

    rows: list[str] = []
    fmt = make_formatter(rows)
    string_at = ctypes.string_at

    def on_event(ctx: Any, data: int, size: int) -> int:
        fmt(string_at(data, size), 0)
        return 0

    cb = _RINGBUF_CB_TYPE(on_event)  # keep a reference while polling
    b._open_ring_buffer(b[resources.EVENTS].map_fd, cb, None)
    lost = Lost(b)
    while not Stop.requested:
        b.ring_buffer_poll(POLL_MS)
        b.ring_buffer_consume()  # records left unsignalled by batched wake-ups
        write_rows(out, rows)
        lost.check(time.monotonic())
    b.ring_buffer_consume()
    write_rows(out, rows)
    lost.check(time.monotonic(), final=True)


def run_mmap(b: Any, out: Any, pages: int) -> None:
    page = mmap.PAGESIZE
    size = pages * page
    mask = size - 1
    fd = b[resources.EVENTS].map_fd
    cons = mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
    prod = mmap.mmap(fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
    ep = select.epoll()
    ep.register(fd, select.EPOLLIN)
    rows: list[str] = []
    fmt = make_formatter(rows)
    # Positions and headers through native-format memoryviews: one 8-byte (4-byte) load or
    # store each. struct's "<Q" reads and writes byte by byte, and a torn consumer position
    # makes the kernel see a full ring (it dropped events here before this).
    consumer = memoryview(cons).cast("Q")
    producer = memoryview(prod).cast("Q")
    words = memoryview(prod).cast("I")
    lost = Lost(b)

    def drain() -> None:
        """libbpf's ringbuf_process_ring: read until no new record, publishing as we go."""
        c = consumer[0]
        published = c
        while True:
            p = producer[0]
            progressed = False
            while c < p:
                at = page + (c & mask)
                length = words[at >> 2]
                if length & BUSY:  # reserved, not committed yet: its commit wakes us
                    break
                if not length & DISCARD:
                    fmt(prod, at + 8)  # data pages are mapped twice: a record never wraps
                c += ((length & ~(BUSY | DISCARD)) + 8 + 7) & ~7
                progressed = True
                if c - published >= size // 8:  # free space early on a long backlog
                    consumer[0] = c
                    published = c
            if c != published:
                consumer[0] = c
                published = c
            if not progressed or c < p:
                return

    while not Stop.requested:
        ep.poll(POLL_MS / 1000)
        drain()
        write_rows(out, rows)
        lost.check(time.monotonic())
    drain()
    write_rows(out, rows)
    lost.check(time.monotonic(), final=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.proto_reader", description=__doc__)
    p.add_argument("--reader", choices=("lean", "mmap"), default="lean")
    p.add_argument("--wakeup", type=int, default=0, help="template's batched wake-up (0: each)")
    p.add_argument("--pages", type=int, default=64, help="ring buffer pages (power of 2)")
    args = p.parse_args(argv)
    stop = Stop()
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    session = start(args.wakeup, args.pages)
    out = sys.stdout
    try:
        out.write(HEADER)
        out.flush()
        print("Tracing connect ... Hit Ctrl-C to end.", file=sys.stderr, flush=True)
        if args.reader == "lean":
            run_lean(session.bpf, out)
        else:
            run_mmap(session.bpf, out, args.pages)
    finally:
        session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
