"""`engine explain`: what a spec can name, read from kernel BTF.

Targets: whatever an attach family's syntax names (engine.attach: a kernel function's
arguments, a tracepoint's record as `args.FIELD`, a raw tracepoint's arguments as `raw:event`),
`struct NAME` / `union NAME` (members with byte offsets; anonymous members are
flattened, since spec paths pass through them), `enum NAME` or an enum constant (its values).
A path (`/...`, `./...`), `lib:NAME`, `libc.so.6`, or any target with a `:` other than `raw:`
names a user-space binary as a spec does (engine.verbs.explain_binary): its functions and USDT
probes, or one of them as `BINARY:FUNCTION` / `BINARY:PROVIDER:NAME`.
Output is plain aligned text; every failure is one line on stderr and exit 1 (2 for a usage
error: a bad --btf, a binary that is missing or not ELF).
"""

from __future__ import annotations

import os
import sys
from typing import Sequence, TextIO

from engine.attach import FAMILIES, Family, perf
from engine.errors import EngineError, did_you_mean
from engine.kernel import capabilities, tracefs
from engine.kernel.btf import VMLINUX, Btf, BtfType, Kind, Param
from engine.plan.layout import load_btf
from engine.plan.tracepoints import tracepoint_record
from engine.plan.values import VT
from engine.verbs.explain_binary import explain_binary, is_binary_target

_AGG = (Kind.STRUCT, Kind.UNION)
_ENUMS = (Kind.ENUM, Kind.ENUM64)
_USAGE = (
    "expected FUNCTION, CATEGORY/EVENT, raw:EVENT, BINARY:FUNCTION or BINARY:PROVIDER:NAME "
    "(BINARY a path, a library name or lib:NAME), perf:[EVENT], struct NAME, union NAME or "
    "enum NAME"
)
Row = Sequence[str]


class ExplainError(EngineError):
    """A target that names nothing in BTF (the message is one line)."""


def run_explain(target: str, btf_path: str | None, expand: bool, out: TextIO) -> int:
    """Print what `target` is and how a spec uses it; 0, or 1 (2 for a bad --btf) with one
    line on stderr."""
    try:
        prefixes = [f.explain_prefix for f in FAMILIES if f.explain_prefix]
        if is_binary_target(target, prefixes):  # a user-space binary: ELF, no BTF needed
            out.write("\n".join(explain_binary(target)) + "\n")
            return 0
        btf = load_btf(btf_path)
        live = btf_path is None or os.path.realpath(btf_path) == os.path.realpath(VMLINUX)
        lines = explain(btf, " ".join(target.split()), expand, live)
    except EngineError as exc:
        print(f"engine: error: {exc}", file=sys.stderr)
        return exc.exit_code
    out.write("\n".join(lines) + "\n")
    return 0


def explain(btf: Btf, target: str, expand: bool = False, live: bool = True) -> list[str]:
    words = target.split(" ")
    if len(words) == 2 and words[0] in ("struct", "union", "enum"):
        kinds = {"enum": _ENUMS, "union": (Kind.UNION,), "struct": (Kind.STRUCT,)}[words[0]]
        t = btf.find(words[1], *kinds)
        if t is None and kinds is _ENUMS and (hit := btf.enum_constant(words[1])):
            return _enum(btf, hit[0], words[1])  # `enum TCP_CLOSE`: as `decode: {enum: ...}`
        if t is None:
            pool = btf.names(*kinds) + (btf.enum_names() if kinds is _ENUMS else [])
            raise ExplainError(f"no {target} in {btf.path}{did_you_mean(words[1], pool)}")
        return _enum(btf, t, "") if words[0] == "enum" else _aggregate(btf, t, expand)
    if len(words) != 1 or not target or target in ("struct", "union", "enum"):
        raise ExplainError(f"cannot explain '{target}'; {_USAGE}")
    explainer = _Explainer(btf, live)
    for family in sorted(FAMILIES, key=lambda f: not f.explain_prefix):  # raw:EVENT before a/b
        lines = family.explain(explainer, target)
        if lines is not None:
            return lines
    t = btf.find(target, *_AGG, *_ENUMS, Kind.TYPEDEF)
    if t is not None:
        s = btf.strip(t.id)
        if s.kind in _AGG:
            return _aggregate(btf, s, expand)
        if s.kind in _ENUMS:
            return _enum(btf, s, "")
        return [f"typedef {target}: {btf.type_str(s.id)} ({btf.sizeof(s.id)} bytes)"]
    hit = btf.enum_constant(target)
    if hit is not None:
        return _enum(btf, hit[0], target)
    upper = target.isupper()
    pool = btf.enum_names() if upper else btf.names(Kind.FUNC, *_AGG, *_ENUMS, Kind.TYPEDEF)
    what = "enum constant" if upper else "kernel function, struct, union, enum or typedef"
    raise ExplainError(f"no {what} '{target}' in {btf.path}{did_you_mean(target, pool)}")


class _Explainer:
    """What each attach family's targets explain as (engine.attach.base.Explainer)."""

    def __init__(self, btf: Btf, live: bool) -> None:
        self.btf, self.live = btf, live

    def function(self, name: str, family: Family) -> list[str] | None:
        fn = self.btf.function(name)
        return None if fn is None else _function(self.btf, name, fn[1], fn[2], family)

    def tracepoint(self, target: str, family: Family) -> list[str]:
        return _tracepoint(self.btf, target, self.live, family)

    def raw_tracepoint(self, event: str, family: Family) -> list[str]:
        return _raw_tracepoint(self.btf, event, family)

    def perf_events(self, event: str, family: Family) -> list[str]:
        return _perf_events(event, self.live)


def _perf_events(only: str, live: bool) -> list[str]:
    """Every sampling target a spec can name; on the running kernel, whether each opens."""
    lines = [
        "sampling (perf events): the program runs on the interrupted task of each sample",
        "  in a spec:",
        "    profile: hz:N | s:N | ms:N | us:N | ns:N   [cpus:0,2-3]   (N may be $option)",
        "    perf_event: software:EVENT[:N] | hardware:EVENT[:N]   (every N events)",
        "",
    ]
    rows: list[Row] = []
    for kind_name, (ev_type, table) in perf.EVENTS.items():
        for name, (config, period) in table.items():
            if only and only not in name:
                continue
            opens = capabilities.perf_event_opens(ev_type, config) if live else "?"
            rows.append((f"{kind_name}:{name}", str(period), opens))
    if not rows:
        return [f"no perf event matches '{only}'"]
    return lines + _table(("EVENT", "DEFAULT N", "OPENS HERE"), rows)


def _table(header: Row, rows: Sequence[Row], right: int = 0) -> list[str]:
    """Aligned columns; the first `right` columns are right-aligned, the last is not padded."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for r in [header, *rows]:
        cells = [c.rjust(w) if i < right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        out.append("  ".join(cells).rstrip())
    return out


def _decl(btf: Btf, p: Param, i: int) -> str:
    return btf._decl(p.type_id, p.name or f"arg{i}", 0).strip()


def _pointee_hint(btf: Btf, names: Sequence[str], type_ids: Sequence[int]) -> list[str]:
    """For each argument pointing to a struct: how to read its members."""
    lines = []
    for name, tid in zip(names, type_ids):
        t = btf.strip(tid)
        target = btf.strip(t.type_id) if t.kind == Kind.PTR else None
        if target is not None and target.kind in _AGG and target.name:
            tag = "union" if target.kind == Kind.UNION else "struct"
            see = f"(engine explain {tag} {target.name})"
            lines.append(f"  {name} is a {btf.type_str(tid)}: read {name}.MEMBER {see}")
    return lines


def _function(btf: Btf, name: str, params: Sequence[Param], ret: int, family: Family) -> list[str]:
    rtype = btf.type_str(ret) if ret else "void"
    sig = ", ".join(_decl(btf, p, i) for i, p in enumerate(params)) or "void"
    rows = [
        (str(i), p.name or "(unnamed)", btf.type_str(p.type_id), str(btf.sizeof(p.type_id)))
        for i, p in enumerate(params)
    ]
    named = [p.name for p in params if p.name]
    lines = [f"{name}({sig}) -> {rtype}", ""]
    lines += _table(("#", "ARG", "TYPE", "SIZE"), rows, right=1) if rows else ["(no arguments)"]
    lines += ["", "in a spec:", *family.usage(name, named, rtype if ret else None, len(params))]
    return lines + _pointee_hint(btf, named, [p.type_id for p in params if p.name])


def _raw_names(btf: Btf) -> list[str]:
    return [n[len("btf_trace_") :] for n in btf.names(Kind.TYPEDEF) if n[:10] == "btf_trace_"]


def _raw_tracepoint(btf: Btf, event: str, family: Family) -> list[str]:
    params = btf.raw_tracepoint(event)
    if params is None:
        pool = _raw_names(btf)
        raise ExplainError(f"no raw tracepoint '{event}' in {btf.path}{did_you_mean(event, pool)}")
    names = [p.name or f"arg{i}" for i, p in enumerate(params)]
    sig = ", ".join(_decl(btf, p, i) for i, p in enumerate(params)) or "void"
    rows = [(str(i), n, btf.type_str(p.type_id)) for i, (n, p) in enumerate(zip(names, params))]
    lines = [f"raw tracepoint {event}({sig})", ""]
    lines += _table(("#", "ARG", "TYPE"), rows, right=1)
    lines += ["", "in a spec:", *family.usage(event, names, None, len(params))]
    return lines + _pointee_hint(btf, names, [p.type_id for p in params])


def _tracepoint(btf: Btf, target: str, live: bool, family: Family) -> list[str]:
    """The fields a spec reads as args.FIELD: the planner's own answer (plan.tracepoints)."""
    category, _, event = target.partition("/")
    if live:
        try:
            tracefs.events_dir()
        except tracefs.TracefsError:  # tracefs not mounted, or not root: BTF alone
            live = False
    record = tracepoint_record(btf, category, event, live)
    if record.source == "tracefs":
        where = f"events/{target}/format"
        lines = [f"tracepoint {target}: from tracefs ({where}; {record.why})"]
    else:
        lines = [f"tracepoint {target}: struct {record.struct} ({record.size} bytes)"]
    if record.candidates:
        names = ", ".join(record.candidates)
        lines.append(f"BTF does not say which record it is ({names}); fields they agree on:")
    rows = []
    for name, (off, vt) in record.fields.items():
        use = f"args.{name}{_use(btf, name, vt)}"
        if name in record.slots:  # tracefs: `pid_t pid; size:8` holds a 4-byte pid_t
            use += f"  (in a slot of {record.slots[name]} bytes)"
        rows.append((str(off), str(vt.size), name, vt.label, use))
    lines += _table(("OFFSET", "SIZE", "FIELD", "TYPE", "IN A SPEC"), rows, right=2)
    return [*lines, "", "in a spec:", *family.usage(target, list(record.fields), None, 0)]


def _use(btf: Btf, name: str, vt: VT) -> str:
    """How a field of this type is used, when that is not just `args.FIELD`."""
    if vt.data_loc:
        return "  (a string; the u32 holds length << 16 | offset)"
    if vt.kind == "ptr" and vt.user:
        return "  (user memory: decode: str)" if vt.char else "  (user memory: not readable)"
    if vt.kind == "ptr" and (not vt.btf or btf.strip(vt.btf).kind not in _AGG):
        return f"  (cast: args.{name} as STRUCT)"
    if vt.kind == "int" and vt.btf:
        return "  (printed by name)"
    if vt.kind == "array" and vt.char:
        return "  (a string)"
    if vt.kind == "array" and vt.size in (4, 16):
        return "  (an address? decode: inet)"
    return ""


def _aggregate(btf: Btf, t: BtfType, expand: bool) -> list[str]:
    tag = "union" if t.kind == Kind.UNION else "struct"
    if t.kind == Kind.FWD:
        return [f"{tag} {t.name}: only declared in {btf.path} (no members)"]
    rows: list[Row] = []
    _members(btf, t, 0, "", "", rows, expand)
    lines = [f"{tag} {t.name or '(anonymous)'} ({t.size} bytes)"]
    lines += _table(("OFFSET", "SIZE", "MEMBER", "TYPE", "NOTE"), rows, right=2)
    cast = f"  cast a pointer to it: `p: args.PTR as {t.name or tag}`, then p.MEMBER (or p.a.b)"
    anon = "  members of anonymous structs and unions are named directly: they are skipped in paths"
    return [*lines, "", "in a spec:", cast, anon]


def _members(
    btf: Btf, t: BtfType, base: int, prefix: str, via: str, rows: list[Row], expand: bool
) -> None:
    for m in t.members:
        bits, inner = base + m.bit_offset, btf.strip(m.type_id)
        if not m.name and inner.kind in _AGG:
            kind = "anon union" if inner.kind == Kind.UNION else "anon struct"
            _members(btf, inner, bits, prefix, f"{via} > {kind}" if via else kind, rows, expand)
            continue
        start, width = bits % 8, m.bitfield_size
        size = f"bits {start}:{start + width}" if width else str(btf.sizeof(m.type_id))
        rows.append((str(bits // 8), size, prefix + m.name, btf.type_str(m.type_id), via))
        if expand and not prefix and inner.kind in _AGG:
            _members(btf, inner, bits, f"{m.name}.", via, rows, False)


def _enum(btf: Btf, t: BtfType, constant: str) -> list[str]:
    title = f"enum {t.name}" if t.name else "enum (anonymous)"
    rows = [(str(e.value), e.name, "<-" if e.name == constant else "") for e in t.enumerators]
    lines = [f"{title} ({t.size} bytes, {len(rows)} values)"]
    lines += _table(("VALUE", "NAME", ""), rows, right=1)
    first = t.enumerators[0].name if t.enumerators else "NAME"
    example = t.name or constant or first
    anon = "" if t.name else " (an anonymous enum is named by one of its constants)"
    compare = f"  constants compare with numbers: `where: args.x == {constant or first}`"
    decode = f"  print as names: `decode: {{enum: {example}}}`{anon}"
    return [*lines, "", "in a spec:", compare, decode]
