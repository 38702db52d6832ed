"""The runtime sinks and the one event loop that polls them.

A bound Program sends its events to sinks (engine.plan.model: EventSink, AggSink); here each
gets its runtime side: ring buffer events, perf buffer events, or map aggregations read at
each interval and at the end. `SINKS` picks one per sink, so the loop never asks what kind of
output a run has: it opens, polls, reports and finishes whatever sinks the Program has.
`engine serve` reads the same MapAggregations at each scrape.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from typing import Any, Callable, ClassVar, TextIO

from engine.plan import model as M
from engine.plan import resources
from engine.runtime import decoders
from engine.runtime.aggregates import Aggregate, read_readers
from engine.runtime.sinks import AggregatePrinter, Reader

POLL_MS = 100
# Records one poll reads at most. libbpf's ring buffer read loops while records keep coming,
# so a flood faster than the printer would keep the loop from ever checking for a stop, the
# --duration deadline or flushing; a negative return from the callback ends that read.
READ_BATCH = 4096
OnEvent = Callable[[bytes], None]


class RuntimeSink:
    """Where a running program's output comes out. `waits`: its poll blocks up to POLL_MS
    (the loop sleeps instead when no sink does)."""

    waits: ClassVar[bool] = False

    def open(self) -> None:
        """Before "Tracing": a buffer opened later would lose what came meanwhile."""

    def poll(self, now: float) -> None:
        """One turn of the loop."""

    def report(self) -> None:
        """An interval's end (-i): print what was gathered."""

    def finish(self) -> None:
        """The run's end: read and print what is left."""


class BufferEvents(RuntimeSink):
    """Events through a BPF buffer, each handed to `on_event` as its raw bytes."""

    waits: ClassVar[bool] = True
    where: ClassVar[str]

    def __init__(
        self, session: Any, sink: M.EventSink, on_event: OnEvent, say: Callable[[str], None]
    ):
        self.session = session
        self.sink = sink
        self.on_event = on_event
        self.say = say
        self.batch_left = READ_BATCH
        self.lost_seen = 0
        self.kernel_lost = 0  # perf: the kernel's own report of dropped records
        self.next_lost_check = 0.0

    def callback(self, _ctx: Any, data: int, size: int) -> int:
        """Per event: copy the bytes once; -1 (libbpf stops reading) once READ_BATCH records
        were read by this poll."""
        self.on_event(ctypes.string_at(data, size))
        self.batch_left -= 1
        return -1 if self.batch_left <= 0 else 0

    def poll(self, now: float) -> None:
        self.batch_left = READ_BATCH
        self.read(POLL_MS)
        if now >= self.next_lost_check:  # a map read: once a second is enough
            self.check_lost()
            self.next_lost_check = now + 1.0

    def read(self, timeout: int) -> None:
        raise NotImplementedError

    def check_lost(self, final: bool = False) -> None:
        """Each lost event once, with its cause; the BPF count is the complete one."""
        lost = max(self.session.lost(), self.kernel_lost)
        if lost > self.lost_seen:
            self.say(f"lost {lost - self.lost_seen} events ({self.where} buffer full)")
            self.lost_seen = lost
        if final and self.lost_seen:
            self.say(f"{self.lost_seen} events lost in all")


class RingBufferEvents(BufferEvents):
    where: ClassVar[str] = "ring"

    def open(self) -> None:
        self.session.bpf[resources.EVENTS].open_ring_buffer(self.callback)

    def read(self, timeout: int) -> None:
        self.session.bpf.ring_buffer_poll(timeout)
        if self.sink.wakeup_batch > 1 and self.batch_left > 0:
            # Batched wake-ups leave records unsignalled: read them at least every POLL_MS,
            # so no event waits longer than that.
            self.session.bpf.ring_buffer_consume()

    def finish(self) -> None:
        """Everything still buffered, signalled or not: at most what the buffer holds
        (8-byte records at the least), so a flood cannot prolong it."""
        for _ in range(self.sink.ringbuf_pages * 4096 // 8 // READ_BATCH + 1):
            self.batch_left = READ_BATCH
            self.session.bpf.ring_buffer_consume()
            if self.batch_left > 0:  # the read ended because the buffer was empty
                break


class PerfEvents(BufferEvents):
    where: ClassVar[str] = "perf"

    def open(self) -> None:
        pages = self.sink.ringbuf_pages
        self.session.bpf[resources.EVENTS].open_perf_buffer(
            self.callback, page_cnt=pages, lost_cb=self.on_lost
        )

    def on_lost(self, count: int) -> None:
        """The kernel's report of perf records it dropped: the same events whose perf_submit
        failed and that the BPF side already counted, so it is not added (reported late, too:
        only with the next record that fits)."""
        self.kernel_lost += count

    def read(self, timeout: int) -> None:
        self.session.bpf.perf_buffer_poll(timeout)

    def finish(self) -> None:
        self.session.bpf.perf_buffer_poll(0)  # each CPU's buffer up to its head once: bounded


# an EventSink's transport -> its runtime sink
EVENT_SINKS: dict[M.Transport, type[BufferEvents]] = {
    M.Transport.RINGBUF: RingBufferEvents,
    M.Transport.PERF: PerfEvents,
}


class MapAggregations(RuntimeSink):
    """The Program's in-kernel aggregations: printed at each interval and at the end by
    `printer`, or read as plain values (`read()`, what `engine serve` scrapes)."""

    def __init__(self, session: Any, printer: AggregatePrinter | None = None, clear: bool = False):
        self.session = session
        self.printer = printer
        self.clear = clear
        program: M.Program = session.program
        fields = {f.name: f for f in program.fields}
        state = decoders.State(exact_text=True)  # label values: the exposition escapes
        # plain values for `read()` (serve); a printing run reads through its printer's own
        self.readers = [] if printer else [Reader(s, fields, state) for s in program.aggregations]

    def report(self) -> None:
        if self.printer is not None:
            self.printer.print(self.session.bpf, clear=self.clear)

    def finish(self) -> None:
        self.report()

    def read(self) -> list[Aggregate]:
        """Every aggregation as plain values, read from its maps now."""
        return read_readers(self.session, self.readers)


def runtime_sinks(
    session: Any, on_event: OnEvent, printer: AggregatePrinter | None, clear: bool,
    say: Callable[[str], None],
) -> list[RuntimeSink]:  # fmt: skip
    """The runtime side of each of the Program's sinks (its aggregations share one)."""
    out: list[RuntimeSink] = []
    for sink in session.program.sinks:
        if isinstance(sink, M.EventSink):
            out.append(EVENT_SINKS[sink.transport](session, sink, on_event, say))
    if session.program.aggregations:
        out.append(MapAggregations(session, printer, clear))
    return out


def stop_writing(out: TextIO) -> None:
    """Stdout's reader is gone: later writes (and the interpreter's last flush) go nowhere."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())


__all__ = [
    "EVENT_SINKS",
    "POLL_MS",
    "READ_BATCH",
    "BufferEvents",
    "MapAggregations",
    "PerfEvents",
    "RingBufferEvents",
    "RuntimeSink",
    "runtime_sinks",
    "stop_writing",
]
