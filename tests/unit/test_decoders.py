"""The runtime helpers generated decoders call: exact printable values."""

from __future__ import annotations

import ctypes
import socket

import pytest

from engine.runtime import decoders as d


class InetAddr(ctypes.Structure):
    _fields_ = [("family", ctypes.c_uint16), ("addr", ctypes.c_uint8 * 16)]


def addr(family: int, raw: bytes) -> InetAddr:
    a = InetAddr()
    a.family = family
    ctypes.memmove(a.addr, raw, len(raw))
    return a


def test_inet_by_family() -> None:
    """Through `raw`, as a generated decoder reads a ctypes slot, and as struct unpacks it."""
    assert d.inet(d.raw(addr(socket.AF_INET, bytes([127, 0, 0, 1])))) == "127.0.0.1"
    six = socket.inet_pton(socket.AF_INET6, "::1")
    assert d.inet(d.raw(addr(socket.AF_INET6, six))) == "::1"
    assert d.inet((socket.AF_INET6, six)) == "::1"
    assert d.inet(d.raw(addr(0, b""))) == "family0"


def test_every_decoder_the_schema_names_is_registered() -> None:
    import json
    import pathlib

    schema = json.loads(
        (pathlib.Path(__file__).resolve().parents[2] / "engine" / "spec.schema.json").read_text()
    )
    named = set(schema["$defs"]["decoder"]["oneOf"][0]["enum"])
    spelled = {n for n, dec in d.REGISTRY.items() if dec.spelled}
    assert named == spelled | set(d.BYTE_ORDER)


def test_ip_version_errno_text() -> None:
    assert (d.ip_version(socket.AF_INET), d.ip_version(socket.AF_INET6), d.ip_version(1)) == (
        4,
        6,
        1,
    )
    assert (d.errno_name(0), d.errno_name(-111), d.errno_name(-99999)) == (
        "0",
        "ECONNREFUSED",
        "-99999",
    )
    assert d.text(b"ping\0junk") == "ping"
    assert d.text(b"\xff\xfe") == "\ufffd\ufffd"


def test_elapsed_counts_from_the_first_event() -> None:
    state = d.State()
    assert state.elapsed(5_000_000_000) == 0.0
    assert state.elapsed(6_250_000_000) == 1.25


def kallsyms_visible() -> bool:
    with open("/proc/kallsyms") as f:
        return int(f.readline().split()[0], 16) != 0


@pytest.mark.skipif(not kallsyms_visible(), reason="kernel addresses are hidden (not root)")
def test_ksym_names_an_address() -> None:
    with open("/proc/kallsyms") as f:
        found = [int(p[0], 16) for p in (line.split() for line in f) if p[2] == "tcp_v4_connect"]
    if not found:
        pytest.skip("no tcp_v4_connect in /proc/kallsyms")
    assert d.ksym(found[0]) == "tcp_v4_connect"
    assert d.ksym(found[0] + 1) == "tcp_v4_connect+0x1"
    assert d.ksym(0) == "0x0"


def test_hidden_kallsyms_is_an_error_not_question_marks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    import builtins
    import io

    from engine.errors import EngineError

    hidden = "0000000000000000 T tcp_v4_connect\n0000000000000000 t foo\n"
    real_open = builtins.open
    monkeypatch.setattr(
        builtins,
        "open",
        lambda path, *a, **k: (
            io.StringIO(hidden) if path == "/proc/kallsyms" else real_open(path, *a, **k)
        ),
    )
    monkeypatch.setattr(d, "_KSYMS", [])
    with pytest.raises(EngineError, match="kptr_restrict"):
        d.converter("ksym", d.FieldInfo(0), d.State())


def test_an_unknown_step_kind_is_an_error_not_empty_c() -> None:
    from dataclasses import dataclass
    from typing import ClassVar

    from engine.codegen import render
    from engine.plan import model as M

    @dataclass(frozen=True)
    class Bogus(M.StepBase):
        kind: ClassVar[str] = "bogus"
        dest: str = "v1"

    lay = M.Layout("event_t", (M.Slot("f_pid", "u32", 0, 0, 4),), 4)
    alt = M.Alternative(0, "tracepoint", ("a/b",), (M.Function("f", "tracepoint", "a:b", "main"),),
                        (), (Bogus(),), M.CTrue(), (), ())  # fmt: skip
    probe = M.ProgramProbe("p", alt, (), M.CTrue(), ())
    program = M.Program("t", (probe,), lay,
                        sinks=(M.EventSink("ringbuf", 8, 0),))  # fmt: skip
    with pytest.raises(TypeError, match="no template for step kind bogus"):
        render.render_c(program)


def test_devt_is_major_colon_minor() -> None:
    """A block dev_t (major << 20 | minor) as biolatency -D's `disk = 7:0`."""
    assert d.devt(7 << 20) == "7:0"
    assert d.devt(254 << 20 | 17) == "254:17"
    assert d.devt(8 << 20 | 0xFFFFF) == "8:1048575"
