"""Builtins named in the output without a field of their own.

`by: [pid, comm]` or `columns: [pid, comm, func]` with no `pid`/`comm`/`func` field reads the
builtin as if every probe that sends events declared `pid: pid` (bpftrace's
`@[pid, comm] = count()` needs no declaration either). A field of that name in any probe
wins: it is the spec's own. The synthetic field is located at the output entry that named
it, so its errors point there.
"""

from __future__ import annotations

from dataclasses import replace

from engine.plan.resolve import BUILTINS, FUNC, NS_IDS, STACKS
from engine.spec import expr as E
from engine.spec import model as S

IMPLICIT = frozenset((*BUILTINS, "comm", FUNC, *STACKS, "mntns_id", *NS_IDS))
ENVELOPE_CGROUP = "engine_cgroup"  # --envelope: the cgroup id of each event (no column)


def with_builtin_fields(spec: S.Spec) -> S.Spec:
    """`spec` with a field for each builtin its output names and no probe declares."""
    declared = {f.name for p in spec.probes for f in p.fields}
    out = spec.output
    columns = (
        *out.columns,
        *(out.count.by if out.count else ()),
        *(c for agg in out.aggregations for c in agg.by),
    )
    wanted: dict[str, S.At] = {}
    for column in columns:
        if column.field in IMPLICIT and column.field not in declared:
            wanted.setdefault(column.field, column.at)
    if not wanted:
        return spec
    return _added(spec, {name: (name, at) for name, at in wanted.items()})


def with_envelope_field(spec: S.Spec) -> S.Spec:
    """`spec` whose probes that send events also read `cgroup_id` into ENVELOPE_CGROUP, a
    field no column prints: `engine run --envelope` names each row's container and pod from
    it (engine.runtime.runner)."""
    if any(f.name == ENVELOPE_CGROUP for p in spec.probes for f in p.fields):
        return spec
    return _added(spec, {ENVELOPE_CGROUP: ("cgroup_id", spec.output.at)})


def _added(spec: S.Spec, wanted: dict[str, tuple[str, S.At]]) -> S.Spec:
    """`spec` with fields NAME: BUILTIN in the probes that send events."""
    fields = tuple(
        S.Field(name, S.Expr(value, E.Name(value, 0), at), None, "", None, None, None, at)
        for name, (value, at) in wanted.items()
    )
    # the probes that send events: those with fields (a probe without only stores state),
    # or when none has any, those that store nothing (vfscount's one probe)
    senders = {p.index for p in spec.probes if p.fields} or {
        p.index for p in spec.probes if not p.stores and not p.deletes
    }
    probes = tuple(
        replace(p, fields=p.fields + fields) if p.index in senders else p for p in spec.probes
    )
    return replace(spec, probes=probes)
