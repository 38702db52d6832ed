"""Runtime helpers the generated decoder modules call to turn raw slots into values."""

from __future__ import annotations

import bisect
import errno
import socket
from typing import Any

_FAMILIES: dict[int, int] = {int(socket.AF_INET): 4, int(socket.AF_INET6): 6}


def text(raw: bytes) -> str:
    """A NUL-terminated C char array as text (bytes that aren't UTF-8 are replaced)."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def inet(addr: Any) -> str:
    """An inet_addr slot {family, addr[16]} as printable text, by family."""
    raw = bytes(addr.addr)
    if addr.family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    if addr.family == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, raw)
    return f"family{addr.family}"


def ip_version(family: int) -> int:
    """AF_INET -> 4, AF_INET6 -> 6 (the seed's IP column); other families as they are."""
    return _FAMILIES.get(family, family)


def errno_name(value: int) -> str:
    """A kernel return value: 0 stays 0, -111 becomes ECONNREFUSED."""
    if value >= 0:
        return str(value)
    return errno.errorcode.get(-value, str(value))


_KSYMS: list[tuple[int, str]] = []


def ksym(address: int) -> str:
    """A kernel address as symbol+offset from /proc/kallsyms (read once); hex if unknown."""
    if not _KSYMS:
        _KSYMS.extend(_read_kallsyms())
    i = bisect.bisect_right(_KSYMS, (address, "\uffff")) - 1
    if i < 0 or not address:
        return hex(address)
    base, name = _KSYMS[i]
    return f"{name}+{address - base:#x}" if address != base else name


def _read_kallsyms() -> list[tuple[int, str]]:
    found = []
    try:
        with open("/proc/kallsyms", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[1].lower() == "t":
                    found.append((int(parts[0], 16), parts[2]))
    except OSError:
        return [(0, "?")]
    found.sort()
    return found or [(0, "?")]


class State:
    """What decoding keeps between events: the first timestamp, for `elapsed`."""

    def __init__(self) -> None:
        self.first_ns: int | None = None

    def elapsed(self, ns: int) -> float:
        if self.first_ns is None:
            self.first_ns = ns
        return round((ns - self.first_ns) / 1e9, 6)
