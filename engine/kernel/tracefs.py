"""Tracepoint event formats from tracefs (events/<category>/<name>/format).

The kernel documents each tracepoint record it writes: field names, C type text, offsets and
sizes. That is the ground truth for `tracepoint:` probes on the running kernel, and BTF's
`trace_event_raw_*` records are checked against it. Missing or unreadable tracefs (not
mounted, not root) is a TracefsError with a one-line message, never a traceback.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from engine.errors import EngineError

ROOTS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")

_NAME = re.compile(r"[A-Za-z0-9_.-]+")  # an event or category directory name, never a path
_DECL = re.compile(r"(?P<type>.*?)\s*(?P<name>[A-Za-z_]\w*)\s*(?P<dims>(?:\[[^\]]*\]\s*)*)")
_DIMS = re.compile(r"\[([^\]]*)\]")
_NOT_EVENTS = {"enable", "filter", "header_event", "header_page"}


class TracefsError(EngineError):
    """tracefs is missing, unreadable, or an event's format cannot be read or parsed."""


@dataclass(frozen=True)
class Field:
    """One field of a tracepoint record, as its format file declares it."""

    name: str
    type: str  # C type text without the name and array suffix: "__u8", "const void *"
    offset: int
    size: int
    signed: bool
    array_len: int | None = None  # N for `x[N]`; 0 for `x[]`, dynamic or symbolic lengths
    data_loc: bool = False  # the u32 at offset holds (length << 16 | offset) of the data
    rel_loc: bool = False  # like data_loc, offset counted from the end of this field
    decl: str = ""  # the declaration as written, for messages

    @property
    def common(self) -> bool:
        """A field of the header every event shares (common_pid, ...)."""
        return self.name.startswith("common_")


@dataclass(frozen=True)
class EventFormat:
    category: str
    name: str
    id: int
    fields: tuple[Field, ...]
    print_fmt: str = ""

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def event_fields(self) -> tuple[Field, ...]:
        """The event's own fields, without the common header."""
        return tuple(f for f in self.fields if not f.common)


def _int(text: str, where: str) -> int:
    try:
        return int(text.strip(), 0)
    except ValueError:
        raise TracefsError(f"{where}: bad number {text.strip()!r} in format") from None


def parse_field(line: str, where: str = "<format>") -> Field:
    """Parse `field:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;`."""
    parts = [p.strip() for p in line.strip().split(";") if p.strip()]
    if not parts or not parts[0].startswith("field:"):
        raise TracefsError(f"{where}: not a field line: {line.strip()!r}")
    decl = parts[0][len("field:") :].strip()
    attrs = dict(p.split(":", 1) for p in parts[1:] if ":" in p)
    if "offset" not in attrs or "size" not in attrs:
        raise TracefsError(f"{where}: field {decl!r} has no offset or size")
    data_loc, rel_loc, text = False, False, decl
    for prefix in ("__data_loc ", "__rel_loc "):
        if text.startswith(prefix):
            data_loc, rel_loc = prefix == "__data_loc ", prefix == "__rel_loc "
            text = text[len(prefix) :].strip()
    m = _DECL.fullmatch(text)
    if m is None:  # a function pointer `void (*fn)(void)`: the type text keeps the name
        fn = re.search(r"\(\s*\*\s*([A-Za-z_]\w*)\s*\)", text)
        if fn is None:
            raise TracefsError(f"{where}: cannot parse field {decl!r}")
        ctype, name, dims = text, fn[1], ""
    else:
        ctype, name, dims = m["type"].strip(), m["name"], m["dims"]
        if not dims and ctype.endswith("]"):  # `__data_loc char[] filename`
            ctype, dims = ctype[: ctype.index("[")].strip(), ctype[ctype.index("[") :]
    array_len = None
    if dims or data_loc or rel_loc:
        array_len = 1
        for d in _DIMS.findall(dims) or [""]:
            d = d.strip()
            array_len *= int(d, 0) if re.fullmatch(r"0[xX][0-9a-fA-F]+|\d+", d) else 0
    return Field(
        name=name,
        type=ctype,
        offset=_int(attrs["offset"], where),
        size=_int(attrs["size"], where),
        signed=attrs.get("signed", "0").strip() == "1",
        array_len=array_len,
        data_loc=data_loc,
        rel_loc=rel_loc,
        decl=decl,
    )


def parse_format(
    text: str, category: str = "", name: str = "", where: str = "<format>"
) -> EventFormat:
    """Parse a whole format file's text."""
    fields: list[Field] = []
    event_id, print_fmt = 0, ""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        s = line.strip()
        if s.startswith("name:") and not name:
            name = s[len("name:") :].strip()
        elif s.startswith("ID:"):
            event_id = _int(s[len("ID:") :], where)
        elif s.startswith("field:"):
            fields.append(parse_field(s, where))
        elif s.startswith("print fmt:"):
            print_fmt = "\n".join([s[len("print fmt:") :].strip(), *lines[i + 1 :]]).strip()
            break
    if not fields:
        raise TracefsError(f"{where}: no fields in tracepoint format")
    return EventFormat(category, name, event_id, tuple(fields), print_fmt)


def events_dir(root: str | None = None) -> str:
    """The readable tracefs events directory, or a TracefsError saying why there is none."""
    denied = ""
    for base in (root,) if root else ROOTS:
        events = os.path.join(base, "events")
        try:
            os.listdir(events)
            return events
        except PermissionError:
            denied = denied or base
        except OSError:
            if os.path.isdir(base) and not os.access(base, os.R_OK | os.X_OK):
                denied = denied or base
    if denied:
        raise TracefsError(f"cannot read tracefs at {denied}: permission denied (run as root)")
    where = " or ".join(f"{r}/events" for r in ((root,) if root else ROOTS))
    raise TracefsError(
        f"tracefs is not mounted (no {where}); mount it: mount -t tracefs nodev /sys/kernel/tracing"
    )


def _event_path(category: str, name: str, root: str | None) -> str | None:
    if not (_NAME.fullmatch(category) and _NAME.fullmatch(name)) or ".." in (category, name):
        return None
    path = os.path.join(events_dir(root), category, name)
    return path if os.path.isfile(os.path.join(path, "format")) else None


def exists(category: str, name: str, root: str | None = None) -> bool:
    """Whether the tracepoint exists; TracefsError if tracefs itself cannot be read."""
    return _event_path(category, name, root) is not None


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except PermissionError:
        raise TracefsError(f"cannot read {path}: permission denied (run as root)") from None
    except OSError as e:
        raise TracefsError(f"cannot read {path}: {e.strerror or e}") from None


def read_format(category: str, name: str, root: str | None = None) -> EventFormat:
    path = _event_path(category, name, root)
    if path is None:
        raise TracefsError(f"no tracepoint {category}/{name} in {events_dir(root)}")
    fmt_path = os.path.join(path, "format")
    return parse_format(_read(fmt_path), category, name, fmt_path)


def event_id(category: str, name: str, root: str | None = None) -> int:
    """The event's numeric id (what perf_event_open and the record's common_type carry)."""
    path = _event_path(category, name, root)
    if path is None:
        raise TracefsError(f"no tracepoint {category}/{name} in {events_dir(root)}")
    id_path = os.path.join(path, "id")
    return _int(_read(id_path), id_path)


def categories(root: str | None = None) -> list[str]:
    base = events_dir(root)
    return sorted(
        c for c in os.listdir(base) if c not in _NOT_EVENTS and os.path.isdir(os.path.join(base, c))
    )


def events(category: str, root: str | None = None) -> list[str]:
    """Event names in a category ([] for an unknown one), for did-you-mean."""
    if not _NAME.fullmatch(category) or category == "..":
        return []
    base = os.path.join(events_dir(root), category)
    try:
        entries = os.listdir(base)
    except OSError:
        return []
    return sorted(e for e in entries if e not in _NOT_EVENTS and os.path.isdir(f"{base}/{e}"))


def all_events(root: str | None = None) -> list[str]:
    """Every event as "category/name", for did-you-mean across categories."""
    return [f"{c}/{e}" for c in categories(root) for e in events(c, root)]


KPROBE_BLACKLIST = "/sys/kernel/debug/kprobes/blacklist"


def traceable_functions(root: str | None = None) -> frozenset[str] | None:
    """The kernel functions the running kernel lets a probe attach to, as bcc's and bpftrace's
    wildcards expand: `available_filter_functions` (no `__init` code, freed after boot, and no
    `notrace` ones), less the kprobe blacklist. BTF also lists the `__init` functions, and a
    kprobe on one fails (vfs_caches_init), so a pattern expanded on this kernel skips them.
    None when tracefs cannot tell (not mounted, not root)."""
    try:
        base = os.path.dirname(events_dir(root))
        text = _read(os.path.join(base, "available_filter_functions"))
    except TracefsError:
        return None
    names = {line.split(None, 1)[0] for line in text.splitlines() if line.strip()}
    try:
        with open(KPROBE_BLACKLIST, encoding="utf-8", errors="replace") as f:
            names -= {p[1] for line in f if len(p := line.split()) >= 2}
    except OSError:
        pass  # no debugfs: bcc goes without it too
    return frozenset(names)
