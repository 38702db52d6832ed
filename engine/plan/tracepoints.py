"""What `args` of a tracepoint is: its fields with offsets and types, and where they came from.

One answer for the planner (`args.FIELD` in specs) and `engine explain`, so explain lists
exactly the fields a spec can read. Sources, in order of trust:

* on the running kernel, the tracefs `format` file is the record: a BTF
  `trace_event_raw_<class>` struct is used when its layout is exactly that record (BTF types
  are richer: enums, typed pointers); otherwise (the `syscalls/*` events, module events, a
  class BTF cannot name) the format file's own fields are;
* offline (`--btf FILE`, or tracefs unreadable), BTF alone. A DEFINE_EVENT event shares its
  class's record and BTF does not say which class, so the candidates are narrowed by the
  event's prototype (argument types, then argument names); when more than one remains, only
  the fields all of them agree on are offered, and an empty agreement is an error that says
  why, never an empty field list.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Mapping

from engine.errors import EngineError, did_you_mean
from engine.kernel import tracefs
from engine.kernel.btf import BtfType, Kind
from engine.plan.types import KernelTypeSource, TypeSource
from engine.plan.values import VT, VKind, vt_of

Fields = Mapping[str, tuple[int, VT]]  # name -> (offset in the record, type)

# Events of the tracer itself, not tracepoints: the kernel refuses BPF programs on them
# (perf_event_set_bpf_prog wants a tracepoint, kprobe, uprobe or syscall event).
NOT_TRACEPOINTS = {"ftrace": "the function tracer's own records"}


class RecordError(EngineError):
    """No usable record for a tracepoint; the message is one line."""


@dataclass(frozen=True)
class Record:
    """A tracepoint's fields, and which source they come from (for explain to say)."""

    target: str  # category/event
    fields: Fields
    source: str  # "btf" or "tracefs"
    struct: str = ""  # the BTF record's name (source "btf")
    size: int = 0  # its size in bytes (source "btf")
    candidates: tuple[str, ...] = ()  # >1: BTF records that may be it; fields they agree on
    why: str = ""  # source "tracefs": why not BTF
    slots: Mapping[str, int] = field(default_factory=dict)  # tracefs slot wider than its value


def tracepoint_record(btf: KernelTypeSource, category: str, event: str, live: bool) -> Record:
    """The record of `category/event`; `live`: tracefs of the running kernel is readable and
    describes the kernel `btf` is from."""
    target = f"{category}/{event}"
    if category in NOT_TRACEPOINTS:
        raise RecordError(
            f"{target} is one of {NOT_TRACEPOINTS[category]}, not a tracepoint: "
            "BPF programs cannot attach to it"
        )
    records = btf.tracepoint_records(event)
    if live:
        if not tracefs.exists(category, event):
            hint = did_you_mean(target, tracefs.all_events())
            where = "on this kernel" if records else f"in {btf.path}"  # as offline, then
            raise RecordError(f"no tracepoint '{target}' {where}{hint}")
        try:
            fmt = tracefs.read_format(category, event)
        except tracefs.TracefsError as exc:
            raise RecordError(str(exc)) from None
        return _live_record(btf, target, fmt, records)
    if not records:
        if category == "syscalls":
            raise RecordError(
                f"{btf.path} has no record of {target}: the syscalls/* fields come from the "
                "running kernel's tracefs, so they are checked only there (as root, without "
                "--btf)"
            )
        hint = _btf_hint(btf, category, event)
        raise RecordError(f"no tracepoint '{target}' in {btf.path}{hint}")
    records = narrow_by_prototype(btf, event, records)
    merged = dict(record_fields(btf, records[0]))
    for other in records[1:]:
        theirs = record_fields(btf, other)
        merged = {k: v for k, v in merged.items() if theirs.get(k) == v}
    names = tuple(r.name for r in records)
    if not merged:
        raise RecordError(
            f"BTF does not say which record {target} uses ({', '.join(names)}), and they "
            "share no field; on the running kernel (as root, without --btf) tracefs settles it"
        )
    first = records[0]
    return Record(target, merged, "btf", first.name, first.size, names if len(names) > 1 else ())


def _live_record(
    btf: KernelTypeSource, target: str, fmt: tracefs.EventFormat, records: list[BtfType]
) -> Record:
    """The BTF record whose layout is exactly the tracefs format's, else tracefs itself."""
    want = {f.name: (f.offset, f.size) for f in fmt.event_fields}
    exact = [r for r in records if _layout(btf, r) == want]
    if exact:
        signs = {f.name: f.signed for f in fmt.event_fields}
        agree = [r for r in exact if _signs_agree(record_fields(btf, r), signs)]
        first = (agree or exact)[0]
        return Record(target, record_fields(btf, first), "btf", first.name, first.size)
    user = target.startswith("syscalls/")
    fields = tracefs_fields(btf, fmt, user)
    slots = {
        f.name: f.size
        for f in fmt.event_fields
        if fields[f.name][1].kind is VKind.INT and fields[f.name][1].size < f.size
    }
    why = "no BTF record has its layout" if records else "BTF has no trace_event_raw_* record of it"
    return Record(target, fields, "tracefs", why=why, slots=slots)


def _layout(btf: TypeSource, record: BtfType) -> dict[str, tuple[int, int]]:
    out = {}
    for m in record.members:
        if m.name in ("ent", "__data") or not m.name:
            continue
        name = m.name
        for prefix in ("__data_loc_", "__rel_loc_"):
            if name.startswith(prefix):
                name = name[len(prefix) :]
        out[name] = (m.bit_offset // 8, btf.sizeof(m.type_id))
    return out


def _signs_agree(fields: Fields, signs: Mapping[str, bool]) -> bool:
    return all(
        vt.signed == signs.get(name, vt.signed)
        for name, (_, vt) in fields.items()
        if vt.kind is VKind.INT and vt.size > 1
    )


def narrow_by_prototype(btf: KernelTypeSource, event: str, records: list[BtfType]) -> list[BtfType]:
    """Of classes whose argument types match the event's, those whose argument names do too.

    A DEFINE_EVENT repeats its class's TP_PROTO and TP_ARGS, so the names of
    `__traceiter_<event>` match those of `__bpf_trace_<class>`; a class that merely happens to
    take the same types (kvm_pml_full's `unsigned int vcpu_id` vs softirq's `vec_nr`) does
    not. Without names to compare (or none matching), the candidates stay as they are.
    """
    if len(records) < 2:
        return records
    own = _arg_names(btf, f"__traceiter_{event}")
    if not own:
        return records
    same = [r for r in records if _class_arg_names(btf, r.name) == own]
    return same or records


def _arg_names(btf: TypeSource, function: str) -> tuple[str, ...]:
    fn = btf.function(function)
    if fn is None or not all(p.name for p in fn[1][1:]):
        return ()
    return tuple(p.name for p in fn[1][1:])


def _class_arg_names(btf: TypeSource, record_name: str) -> tuple[str, ...]:
    cls = record_name[len("trace_event_raw_") :]
    for prefix in ("__bpf_trace_", "trace_event_raw_event_"):
        names = _arg_names(btf, prefix + cls)
        if names:
            return names
    return ()


def _btf_hint(btf: TypeSource, category: str, event: str) -> str:
    """A did-you-mean from BTF's event names (they carry no category: keep the spec's)."""
    names = [n[len("btf_trace_") :] for n in btf.names(Kind.TYPEDEF) if n[:10] == "btf_trace_"]
    hint = did_you_mean(event, names)
    return hint.replace("mean '", f"mean '{category}/", 1) if hint else ""


def record_fields(btf: TypeSource, record: BtfType) -> dict[str, tuple[int, VT]]:
    """The fields of a `trace_event_raw_*` struct (the common header and `__data` left out)."""
    out: dict[str, tuple[int, VT]] = {}
    for m in record.members:
        if m.name in ("ent", "__data") or not m.name:
            continue
        if m.name.startswith("__data_loc_"):
            out[m.name[len("__data_loc_") :]] = (
                m.bit_offset // 8,
                VT(VKind.STR, 4, label="__data_loc char[]", char=True, data_loc=True),
            )
        else:
            out[m.name] = (m.bit_offset // 8, vt_of(btf, m.type_id))
    return out


def tracefs_fields(
    btf: TypeSource, fmt: tracefs.EventFormat, user: bool
) -> dict[str, tuple[int, VT]]:
    """Typed fields from a tracefs format (sizes, signedness, `*` and `[N]` in the text).

    An integer's C type wins over its slot: the syscalls/* records widen every argument to an
    8-byte `unsigned long` slot and say `pid_t pid; size:8; signed:0`, but the value is a
    4-byte signed pid_t in its low half (kill(-999997, 0) must read -999997).
    """
    out: dict[str, tuple[int, VT]] = {}
    for f in fmt.event_fields:
        base = f.type.replace("const ", "").replace("unsigned ", "").strip()
        text = base.rstrip("*").strip() in ("char", "signed char")
        offset = f.offset
        if f.data_loc:
            vt = VT(VKind.STR, 4, label=f"__data_loc {f.type}[]", char=True, data_loc=True)
        elif "*" in f.type:
            pointee = 0
            if text:
                char = btf.find("char", Kind.INT)
                pointee = char.id if char else 0
            vt = VT(VKind.PTR, 8, btf=pointee, label=f.type, char=text, user=user)
        elif f.array_len:
            vt = VT(
                VKind.ARRAY, f.size, count=f.array_len, label=f"{f.type}[{f.array_len}]", char=text
            )
        else:
            vt = VT(VKind.INT, f.size, f.signed, label=f.type)
            named = c_integer(btf, f.type)
            if named is not None and named.size <= f.size:
                vt = named
                if sys.byteorder == "big":  # tracefs is the running kernel's: its byte order
                    offset += f.size - named.size
        out[f.name] = (offset, vt)
    return out


_INT_WORDS = {"signed", "unsigned", "char", "short", "int", "long"}


def c_integer(btf: TypeSource, ctype: str) -> VT | None:
    """The integer (or enum) a C type name is, from BTF: `pid_t` -> s32, `unsigned long` ->
    u64, `umode_t` -> u16; None for a name BTF does not know or that is no integer."""
    words = [w for w in ctype.split() if w not in ("const", "volatile")]
    if not words:
        return None
    if set(words) <= _INT_WORDS:
        name = _gcc_int_name(words)
        t = btf.find(name, Kind.INT)
        return None if t is None else vt_of(btf, t.id)
    if words[0] == "enum" and len(words) == 2:
        t = btf.find(words[1], Kind.ENUM, Kind.ENUM64)
    elif len(words) == 1:
        t = btf.find(words[0], Kind.TYPEDEF, Kind.INT)
    else:
        return None
    if t is None:
        return None
    vt = vt_of(btf, t.id)
    return vt if vt.kind is VKind.INT and vt.size in (1, 2, 4, 8) else None


def _gcc_int_name(words: list[str]) -> str:
    """How BTF (from gcc's DWARF) spells a C integer type: `unsigned long` is
    `long unsigned int`, `short` is `short int`, `signed char` stays."""
    longs, unsigned = words.count("long"), "unsigned" in words
    if "char" in words:
        return "unsigned char" if unsigned else "signed char" if "signed" in words else "char"
    size = "short " if "short" in words else "long " * longs
    return f"{size}{'unsigned ' if unsigned else ''}int".strip()
