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
