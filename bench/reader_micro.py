"""Per-event cost of the engine's reader, piece by piece, without the kernel in the way.

    python -m bench.reader_micro [--n 200000]

Feeds one realistic tcpconnect event (a ctypes Event at a fixed address, as libbpf hands
it over) through the engine's own EventLoop.on_event (its generated decoder and Printer,
table output to a buffered file) and through its parts, then through the prototype lean
formatter (bench.proto_reader); prints microseconds per event, best of 5 rounds.
Also times the per-wake-up extras of the loop: Session.lost() (a bcc per-CPU map read,
needs root and bcc) and a flush (a write(2) per wake-up).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import socket
import sys
import tempfile
import time
from types import SimpleNamespace
from typing import Any, Callable

SPEC = "specs/tcpconnect.yaml"


def per_call(fn: Callable[[], Any], n: int, rounds: int = 5) -> float:
    """Best-of-rounds microseconds per call of fn (loop overhead subtracted)."""

    def empty() -> None:
        return None

    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(n):
            empty()
        dt -= time.perf_counter() - t
        best = min(best, dt)
    return max(best, 0.0) / n * 1e6


def build() -> tuple[Any, Any, Any, list[Any]]:
    from engine.codegen import render
    from engine.plan import planner
    from engine.runtime import runner
    from engine.spec.loader import load_document

    plan = planner.plan(load_document(SPEC), None)
    decoder = render.load_decoder(plan)
    config = runner.RunConfig()
    columns = runner.active_columns(plan, config)
    return plan, decoder, config, columns


def sample_event(decoder: Any) -> Any:
    ev = decoder.Event()
    ev.f_time = 123_456_789_000
    ev.f_uid = 0
    ev.f_pid = 4242
    ev.f_task = b"python"
    ev.f_ip = socket.AF_INET
    for slot in (ev.f_saddr, ev.f_daddr):
        slot.family = socket.AF_INET
        slot.addr[:4] = list(socket.inet_aton("127.0.0.1"))
    ev.f_dport = 61001
    return ev


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.reader_micro", description=__doc__)
    p.add_argument("--n", type=int, default=200000)
    args = p.parse_args(argv)
    n = args.n

    from bench.proto_reader import make_formatter
    from engine.runtime import runner

    plan, decoder, config, columns = build()
    ev = sample_event(decoder)
    addr = ctypes.addressof(ev)
    size = ctypes.sizeof(ev)
    tmp = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (buffered text file, like stdout)
    session = SimpleNamespace(
        lost=lambda: 0, program=SimpleNamespace(transport="ringbuf", wakeup_batch=0), bpf=None
    )
    loop = runner.EventLoop(plan, config, session, decoder, columns, tmp, runner.Stop())  # type: ignore[arg-type]
    results: list[tuple[str, float]] = []

    def add(label: str, fn: Callable[[], Any]) -> None:
        tmp.seek(0)
        tmp.truncate()
        results.append((label, per_call(fn, n)))

    on_event = loop.on_event
    add("engine EventLoop.on_event (whole, per event)", lambda: on_event(None, addr, size))

    def bcc_wrapper(ctx: Any, data: int, sz: int) -> int:  # bcc's ringbuf_cb_, verbatim logic
        try:
            ret = on_event(ctx, data, sz)
            try:
                ret = int(ret)  # type: ignore[arg-type]
            except Exception:
                ret = 0
        except OSError:
            ret = -1
        return ret

    add("  + bcc's ringbuf_cb_ wrapper frame", lambda: bcc_wrapper(None, addr, size))
    event_t = ctypes.POINTER(decoder.Event)
    add("  ctypes.cast(data, POINTER(Event)).contents", lambda: ctypes.cast(addr, event_t).contents)
    state = decoder._d.State()
    decode = decoder.decode_event
    add("  decoder.decode_event(ev, state)", lambda: decode(ev, state))
    values = decode(ev, state)
    picks = loop.picks
    add("  [values[i] for i in picks]", lambda: [values[i] for i in picks])
    row = loop.printer.row
    vals = [values[i] for i in picks]
    add("  Printer.row(values) (format + write)", lambda: row(vals))
    d = decoder._d
    add("    _d.inet(addr) (one address)", lambda: d.inet(ev.f_saddr))
    add("    _d.text(comm)", lambda: d.text(ev.f_task))
    add("    state.elapsed(ns)", lambda: state.elapsed(ev.f_time))

    rows: list[str] = []
    fmt = make_formatter(rows)
    string_at = ctypes.string_at

    def lean() -> None:
        fmt(string_at(addr, size), 0)
        if len(rows) > 64:
            tmp.write("".join(rows))
            rows.clear()

    add("prototype lean: string_at + Struct.unpack_from + memoized + joined write", lean)

    proto = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)
    cb = proto(lambda ctx, data, sz: 0)
    libc = ctypes.CDLL(None)
    labs = libc.labs
    labs.argtypes, labs.restype = [ctypes.c_long], ctypes.c_long
    through_c = per_call(lambda: cb(None, addr, size), n)
    plain_c = per_call(lambda: labs(-1), n)
    results.append(("ctypes callback trampoline C->Python (approx.)", through_c - plain_c))

    with open(tempfile.mktemp(prefix="engine-bench-"), "w") as f:
        line = "4242   python       4  127.0.0.1        127.0.0.1        61001\n"

        def write_flush() -> None:
            f.write(line)
            f.flush()

        results.append(("flush after each row (write(2) per wake-up)", per_call(write_flush, n)))
        os.unlink(f.name)

    if os.geteuid() == 0:
        try:
            from bcc import BPF

            b = BPF(text="BPF_PERCPU_ARRAY(lost, u64, 1);")
            real = runner.Session.__new__(runner.Session)
            real.bpf = b
            results.append(
                ("Session.lost() per call (engine: per loop pass)", per_call(real.lost, 2000))
            )
            results.append(
                ("sum(bpf['lost'][0]) per call", per_call(lambda: sum(b["lost"][0]), 2000))
            )
            b.cleanup()
        except Exception as exc:  # no bcc/headers: skip the map read
            print(f"(map read not timed: {exc})", file=sys.stderr)

    print(f"engine reader, per event / per call, best of 5 x {n} (us):")
    for label, us in results:
        print(f"  {us:7.3f}  {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
