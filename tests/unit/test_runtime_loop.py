"""engine.runtime.loop without the kernel: each Program sink gets its runtime sink, and each
runtime sink polls, drains and reports through a fake bcc object."""

from __future__ import annotations

import ctypes
from typing import Any

from engine.plan import model as M
from engine.runtime import loop

LAYOUT = M.Layout("event_t", (M.Slot("f_pid", "u32", 0, 0, 4),), 4)


class FakeTable:
    def __init__(self, bpf: FakeBpf) -> None:
        self.bpf = bpf

    def open_ring_buffer(self, callback: Any) -> None:
        self.bpf.opened = ("ring", callback)

    def open_perf_buffer(self, callback: Any, page_cnt: int, lost_cb: Any) -> None:
        self.bpf.opened = ("perf", callback, page_cnt, lost_cb)


class FakeBpf:
    """Feeds `pending` events (raw bytes) to the opened callback, up to its -1."""

    def __init__(self, pending: int = 0) -> None:
        self.pending = pending
        self.opened: tuple[Any, ...] = ()
        self.calls: list[str] = []
        self.buffers: list[Any] = []  # keeps the event buffers alive while read

    def __getitem__(self, name: str) -> FakeTable:
        assert name == "events"
        return FakeTable(self)

    def feed(self) -> None:
        while self.pending:
            self.pending -= 1
            buf = ctypes.create_string_buffer(b"\x07\x00\x00\x00", 4)
            self.buffers.append(buf)
            if self.opened[1](None, ctypes.addressof(buf), 4) < 0:
                break

    def ring_buffer_poll(self, timeout: int) -> None:
        self.calls.append(f"poll {timeout}")
        self.feed()

    def ring_buffer_consume(self) -> None:
        self.calls.append("consume")
        self.feed()

    def perf_buffer_poll(self, timeout: int) -> None:
        self.calls.append(f"perf {timeout}")
        self.feed()


class FakeSession:
    def __init__(self, program: M.Program, bpf: FakeBpf, lost: int = 0) -> None:
        self.program = program
        self.bpf = bpf
        self.lost_count = lost

    def lost(self) -> int:
        return self.lost_count


def program(*sinks: M.Sink) -> M.Program:
    return M.Program("t", (), LAYOUT, sinks=sinks)


def make(transport: str, wakeup: int = 0, pending: int = 0) -> tuple[Any, list[bytes], list[str]]:
    bpf = FakeBpf(pending)
    session = FakeSession(program(M.EventSink(transport, 8, wakeup)), bpf)
    got: list[bytes] = []
    said: list[str] = []
    (sink,) = loop.runtime_sinks(session, got.append, None, False, said.append)
    return sink, got, said


def test_each_transport_has_its_runtime_sink() -> None:
    assert set(loop.EVENT_SINKS) == {"ringbuf", "perf"}
    ring, _, _ = make("ringbuf")
    perf, _, _ = make("perf")
    assert isinstance(ring, loop.RingBufferEvents) and isinstance(perf, loop.PerfEvents)
    assert ring.waits and not loop.MapAggregations.waits


def test_ring_events_reach_the_callback_and_a_batch_ends_a_read() -> None:
    sink, got, _ = make("ringbuf", wakeup=32, pending=loop.READ_BATCH + 5)
    sink.open()
    sink.poll(0.0)
    assert len(got) == loop.READ_BATCH and got[0] == b"\x07\x00\x00\x00"
    assert sink.session.bpf.calls == [f"poll {loop.POLL_MS}"]  # a full batch: no consume
    sink.finish()
    assert len(got) == loop.READ_BATCH + 5


def test_batched_wakeups_are_read_every_poll() -> None:
    sink, _, _ = make("ringbuf", wakeup=32, pending=0)
    sink.open()
    sink.poll(0.0)
    assert sink.session.bpf.calls == [f"poll {loop.POLL_MS}", "consume"]


def test_perf_events_open_with_the_sinks_pages_and_count_kernel_losses() -> None:
    sink, got, said = make("perf", pending=3)
    sink.open()
    assert sink.session.bpf.opened[0] == "perf" and sink.session.bpf.opened[2] == 8
    sink.poll(0.0)
    assert len(got) == 3
    sink.session.bpf.opened[3](4)  # the kernel's lost callback
    sink.check_lost(final=True)
    assert said == ["lost 4 events (perf buffer full)", "4 events lost in all"]


def test_lost_events_are_said_once_each() -> None:
    sink, _, said = make("ringbuf")
    sink.session.lost_count = 2
    sink.check_lost()
    sink.check_lost()
    sink.session.lost_count = 5
    sink.check_lost()
    assert said == ["lost 2 events (ring buffer full)", "lost 3 events (ring buffer full)"]


def test_aggregations_share_one_map_sink() -> None:
    agg = M.Aggregation("n", "count", "", (), "COUNT", "", 16)
    key = M.Layout("agg_n_key_t", (M.Slot("all", "u32", 0, 0, 4),), 4)
    sinks = [M.AggSink(agg, key, (), "u64", 0), M.AggSink(agg, key, (), "u64", 1)]
    session = FakeSession(program(*sinks), FakeBpf())
    (sink,) = loop.runtime_sinks(session, lambda raw: None, None, False, print)
    assert isinstance(sink, loop.MapAggregations) and len(sink.readers) == 2
    sink.report()  # no printer (engine serve): nothing printed, nothing read
