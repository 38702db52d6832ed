"""Runtime helpers the generated decoder modules call to turn raw slots into values."""

from __future__ import annotations

import bisect
import errno
import socket
from dataclasses import dataclass
from typing import Any, Callable

from engine.decoders import BYTE_ORDER as BYTE_ORDER  # spelled in specs, read as int
from engine.decoders import DECODERS, DecoderInfo
from engine.errors import EngineError
from engine.kernel import containers as ct
from engine.kernel.cgroups import CgroupNames
from engine.plan.model import Field

_FAMILIES: dict[int, int] = {int(socket.AF_INET): 4, int(socket.AF_INET6): 6}


def text(raw: bytes) -> str:
    """A NUL-terminated C char array as text, exact (JSON, Prometheus labels): control
    characters stay as they are; only bytes that are not UTF-8, which no JSON string can
    hold, become U+FFFD."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def escaped_text(raw: bytes) -> str:
    """A NUL-terminated C char array as text safe for a terminal (tables, CSV).

    A task names itself (`comm`), files are named by anyone: their bytes must not reach the
    operator's terminal as escape sequences, nor forge a row with a newline. Printable
    characters (UTF-8 included) stay; a backslash becomes `\\\\`; every other byte (control
    characters, DEL, non-printable Unicode such as U+009B or U+202E, bytes that are not
    UTF-8) becomes `\\xNN`, one per byte. So the printed text maps back to exactly one byte
    string, and no real name can print like an escaped one."""
    s = raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    if s.isprintable() and "\\" not in s:
        return s
    return "".join(_escape_char(c) for c in s)


def _escape_char(c: str) -> str:
    if c == "\\":
        return "\\\\"
    if c.isprintable():  # lone surrogates (undecodable bytes) are not
        return c
    return "".join(f"\\x{b:02x}" for b in c.encode("utf-8", "surrogateescape"))


def inet(addr: tuple[int, bytes]) -> str:
    """An inet_addr slot (family, addr[16]) as printable text, by family."""
    family, raw = addr
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    if family == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, raw)
    return f"family{family}"


def ip_version(family: int) -> int:
    """AF_INET -> 4, AF_INET6 -> 6 (the seed's IP column); other families as they are."""
    return _FAMILIES.get(family, family)


def errno_name(value: int) -> str:
    """A kernel return value: 0 stays 0, -111 becomes ECONNREFUSED."""
    if value >= 0:
        return str(value)
    return errno.errorcode.get(-value, str(value))


_KSYMS: list[tuple[int, str]] = []


class _KsymsRead:
    modules = b""  # /proc/modules when _KSYMS was last dropped
    at = 0.0  # and when (time.monotonic)


KSYMS_MAX_AGE = 600.0  # seconds: a long-running reader (engine serve) re-reads at least this often


def refresh_kallsyms(now: float | None = None) -> bool:
    """Forget the symbol table when the module list changed or it is older than
    KSYMS_MAX_AGE, so the next ksym() re-reads /proc/kallsyms; True if it was dropped.
    A daemon calls this now and then (engine serve: per scrape); one-shot runs need not."""
    import time

    now = time.monotonic() if now is None else now
    try:
        with open("/proc/modules", "rb") as f:
            modules = f.read()
    except OSError:
        modules = b""
    stale = modules != _KsymsRead.modules or now - _KsymsRead.at > KSYMS_MAX_AGE
    if stale:
        _KSYMS.clear()
        _KsymsRead.modules, _KsymsRead.at = modules, now
    return stale


def ksym(address: int) -> str:
    """A kernel address as symbol+offset from /proc/kallsyms (read once); hex if unknown."""
    if not _KSYMS:
        _KSYMS.extend(_read_kallsyms())
    i = bisect.bisect_right(_KSYMS, (address, "\uffff")) - 1
    if i < 0 or not address:
        return hex(address)
    base, name = _KSYMS[i]
    return f"{name}+{address - base:#x}" if address != base else name


def text_symbols(path: str = "/proc/kallsyms") -> list[tuple[int, str]]:
    """The text symbols of a kallsyms file, sorted by address (OSError if unreadable):
    shared by the `ksym` decoder and the stack symbolizer."""
    found = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[1].lower() == "t":
                found.append((int(parts[0], 16), parts[2]))
    found.sort()
    return found


def _read_kallsyms() -> list[tuple[int, str]]:
    """Text symbols from /proc/kallsyms; unreadable or hidden (all addresses 0, as for
    non-root with kptr_restrict) is an error, not a column of `?+0x...`."""
    try:
        found = text_symbols()
    except OSError as exc:
        raise EngineError(f"decoder 'ksym': cannot read /proc/kallsyms ({exc.strerror})") from None
    if not any(address for address, _ in found):
        raise EngineError(
            "decoder 'ksym': /proc/kallsyms shows no addresses (kernel.kptr_restrict); run as root"
        )
    return found


class State:
    """What decoding keeps between events: the first timestamp, for `elapsed`; and how text
    prints: escaped for a terminal (tables, CSV: the default) or exact (JSON, Prometheus)."""

    def __init__(self, exact_text: bool = False) -> None:
        self.first_ns: int | None = None
        self.exact_text = exact_text
        self.stacks: Any = None  # an engine.runtime.stacks.StackReader once a program loads
        self._cgroups: CgroupNames | None = None  # made when a `cgroup` column first asks
        self.watch: ct.Watch | None = None  # the node's containers, once a column asks

    @property
    def cgroups(self) -> CgroupNames:
        if self._cgroups is None:
            self._cgroups = CgroupNames()
        return self._cgroups

    def containers(self) -> ct.Watch:
        """The node's containers: the process's one listing (engine.kernel.containers.shared),
        made when a container decoder or --container/--pod first asks."""
        if self.watch is None:
            self.watch = ct.shared()
        return self.watch

    def elapsed(self, ns: int) -> float:
        if self.first_ns is None:
            self.first_ns = ns
        return round((ns - self.first_ns) / 1e9, 6)


def syscall_name(number: int) -> str:
    """A syscall number as its name (bcc's table for this machine), else the number."""
    try:
        from bcc.syscall import syscall_name as bcc_name
    except ImportError:
        return str(number)
    return bcc_name(number).decode("utf-8", "replace")


def devt(dev: int) -> str:
    """A kernel dev_t (major << 20 | minor, as block tracepoints carry it) as MAJ:MIN."""
    return f"{dev >> 20}:{dev & 0xFFFFF}"


# --- the registry: every decoder a spec may name -----------------------------------------

Convert = Callable[[Any], Any]


@dataclass(frozen=True)
class Decoder:
    """How a field's raw value prints (`info`: its column width and kind, from
    `engine.decoders`), and how it converts.

    Raw values are what `struct` unpacks: ints, bytes for char and u8 arrays, and
    (family, 16 bytes) for an address. `make(field, state)` returns the converter for one
    field (an enum's table, an elapsed time's first timestamp, ...)."""

    info: DecoderInfo
    make: Callable[[Field | FieldInfo, State], Convert]

    @property
    def width(self) -> int:
        return self.info.width

    @property
    def cached(self) -> bool:
        return self.info.cached

    @property
    def decimal(self) -> bool:
        return self.info.decimal

    @property
    def spelled(self) -> bool:
        return self.info.spelled


def _const(fn: Convert) -> Callable[[Field | FieldInfo, State], Convert]:
    return lambda field, state: fn


def _ksym_ready() -> Convert:
    """Read kallsyms when the column is set up, so an unreadable one fails before tracing."""
    if not _KSYMS:
        _KSYMS.extend(_read_kallsyms())
    return ksym


def _enum(field: Field | FieldInfo, state: State) -> Convert:
    names = dict(field.enum_values)
    return lambda v: names.get(v, v)


def _text(field: Field | FieldInfo, state: State) -> Convert:
    return text if state.exact_text else escaped_text


def _stack(kind: str) -> Callable[[Field | FieldInfo, State], Convert]:
    """A stack id as its frames, read from the loaded program's stack map (State.stacks)."""

    def make(field: Field | FieldInfo, state: State) -> Convert:
        frames = field.frames
        return lambda v: state.stacks.stack(v, kind, frames)

    return make


CONTAINER_TEXT: dict[str, Callable[[ct.Container], str]] = {
    "container": lambda c: c.name,
    "container_id": lambda c: c.short_id,
    "image": lambda c: c.image,
    "pod": lambda c: c.pod or "-",
    "pod_namespace": lambda c: c.labels.get(ct.POD_NAMESPACE, "-"),
    "pod_name": lambda c: c.labels.get(ct.POD_NAME, "-"),
    "pod_container": lambda c: c.labels.get(ct.POD_CONTAINER, "-"),
}


def _container(name: str) -> Callable[[Field | FieldInfo, State], Convert]:
    """A cgroup id as its container's name, pod...: `host` for a task in no container;
    a container the runtime has not listed yet (started a moment ago) by the id its cgroup
    path carries, 12 digits, and the list is asked for again; `cgroup:ID` for a cgroup
    gone before it was seen."""
    part = CONTAINER_TEXT[name]

    def make(field: Field | FieldInfo, state: State) -> Convert:
        watch, cgroups = state.containers(), state.cgroups

        def convert(cid: int) -> str:
            path = cgroups.name(cid)
            found = watch.container(path)
            if found is not None:
                return part(found)
            if path.startswith("cgroup:"):
                return path
            cid_text = ct.container_id_in(path)
            if not cid_text:
                return ct.HOST
            watch.ask()
            return cid_text[:12]

        return convert

    return make


def _hex(field: Field | FieldInfo, state: State) -> Convert:
    return (lambda v: bytes(v).hex()) if field.count else hex


# the conversion of every decoder engine.decoders names (a name missing here fails at import)
_MAKERS: dict[str, Callable[[Field | FieldInfo, State], Convert]] = {
    "int": _const(lambda v: v),
    "str": _text,
    "inet": _const(inet),
    "ip_version": _const(ip_version),
    "enum": _enum,
    "errno": _const(errno_name),
    "bool": _const(bool),
    "hex": _hex,
    "elapsed": lambda field, state: state.elapsed,
    "ms": _const(lambda ns: round(ns / 1e6, 3)),
    "secs": _const(lambda ns: round(ns / 1e9, 3)),
    "devt": _const(devt),
    "ksym": lambda field, state: _ksym_ready(),
    "syscall": _const(syscall_name),
    "cgroup": lambda field, state: state.cgroups.name,
    **{name: _container(name) for name in CONTAINER_TEXT},
    "func": _enum,
    "kstack": _stack("kernel"),
    "ustack": _stack("user"),
}
REGISTRY: dict[str, Decoder] = {name: Decoder(i, _MAKERS[name]) for name, i in DECODERS.items()}


@dataclass(frozen=True)
class FieldInfo:
    """What a converter needs of a field (generated decoder modules build these)."""

    count: int
    enum_values: tuple[tuple[int, str], ...] = ()
    frames: int = 0  # a stack field's most frames printed (0: all)


def raw(value: Any) -> Any:
    """A ctypes slot as `struct` would unpack it: arrays as bytes, an address as a pair."""
    if hasattr(value, "family") and hasattr(value, "addr"):
        return (value.family, bytes(value.addr))
    if isinstance(value, (int, bytes)):
        return value
    return bytes(value)


def converter(name: str, field: Field | FieldInfo, state: State) -> Convert:
    """The converter of decoder `name` for `field`; an unknown name is a bug, not a default."""
    return REGISTRY[name].make(field, state)
