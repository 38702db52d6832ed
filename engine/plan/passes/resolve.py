"""The resolve pass: each probe's alternatives resolved in the scope their attach target
binds: `let`s (each checked once), `where`, state reads, fields, stores and deletes, the
BPF functions; then the probe's filter over its fields."""

from __future__ import annotations

import dataclasses
from typing import Any

from engine.errors import did_you_mean
from engine.plan import model as M
from engine.plan.arith import fields_only, inline
from engine.plan.passes import attach
from engine.plan.passes.context import Context
from engine.plan.passes.fields import field_code, merge_field
from engine.plan.resolve import Resolver, Scope
from engine.plan.state import StateResolver, StoreValueError, uses_state
from engine.plan.values import VT, PlanError, Val, VKind, int_vt
from engine.spec import expr as E
from engine.spec import model as S


def run(ctx: Context) -> None:
    probes = [plan_probe(ctx, p, ctx.fields) for p in ctx.spec.probes]
    # filters last: a later probe may widen a field they compare (merge_field)
    ctx.probes = [
        None if probe is None else dataclasses.replace(probe, filter=plan_probe_filter(ctx, spec))
        for probe, spec in zip(probes, ctx.spec.probes)
    ]


def plan_probe_filter(ctx: Context, spec: S.Probe) -> M.CExpr:
    if spec.filter is None or spec.filter.node is None:
        return M.CTrue()
    return plan_filter(ctx, spec.filter.node, ctx.fields, spec.filter.at)


def plan_probe(ctx: Context, spec: S.Probe, fields: dict[str, M.Field]) -> M.Probe | None:
    for field in spec.fields:
        if field.value.node is None:
            ctx.broken.add(field.name)  # said once where it is; columns naming it stay quiet
    alternatives = []
    before = len(ctx.problems)
    for alt in spec.attach:
        a = plan_alternative(ctx, spec, alt, fields)
        if a is not None:
            alternatives.append(a)
    if (
        len(ctx.problems) > before
        or not alternatives
        or any(failed(ctx, spec, a) for a in spec.attach)
    ):
        return None
    # the filter is planned by `run` once every probe's fields are merged
    return M.Probe(spec.name, spec.index, tuple(alternatives), M.CTrue(), emits=bool(spec.fields))


def plan_alternative(
    ctx: Context, probe: S.Probe, alt: S.Alternative, fields: dict[str, M.Field]
) -> M.Alternative | None:
    """One attach alternative of a probe, resolved in its target's scope (None: problems)."""
    target = ctx.targets[probe.index, alt.index]
    if target is None:
        return None
    kind, targets, scope = target
    scope.states = ctx.states
    scope.provenance = ctx.provenance
    resolver = Resolver(scope, ctx.enum_lookup)
    before = len(ctx.problems)
    all_lets = check_lets(ctx, probe, alt, scope, resolver)
    where: M.CExpr = M.CTrue()
    if alt.where is not None and alt.where.node is not None:
        try:
            where = resolver.condition(alt.where.node, resolver.value, ctx.options)
        except PlanError as exc:
            ctx.problem(exc.message, alt.where.at, exc.col)
    where_steps = tuple(scope.steps)
    # State reads run right after `where` (which says whether this is the probe's event
    # at all) and before the filter: a `take` deletes its key on every path on which the
    # event is the probe's, reported or not.
    for lname, (node, lpath) in all_lets:
        if lname in scope.lazy and lname not in scope.bindings and uses_state(node):
            try:
                resolver.name(E.Name(lname, 0))
            except PlanError as exc:
                ctx.problem(exc.message, lpath, exc.col)
    state_steps = tuple(scope.steps[len(where_steps) :])
    codes = field_codes(ctx, probe, resolver, fields)
    mark = len(scope.steps)
    plan_stores(ctx, resolver, probe)
    stores = tuple(scope.steps[mark:])
    if len(ctx.problems) > before or failed(ctx, probe, alt):
        return None
    entry_steps: tuple[M.Step, ...] = ()
    stash_steps: tuple[M.Step, ...] = ()
    if scope.stash:
        try:
            entry_steps, stash_steps = attach.stash_state(ctx, probe.name, scope)
        except PlanError as exc:
            ctx.problem(exc.message, ctx.spec.locate("state", f"stash_{probe.name}"), key=True)
            return None
    functions = attach.functions(ctx, probe, alt, kind, targets, scope)
    if functions is None:
        return None
    filter_node = probe.filter.node if probe.filter is not None else None
    filter_fields = tuple(
        sorted(
            {n.name for n in E.names_in(filter_node) if n.name in probe.field_names()}
            if filter_node
            else set()
        )
    )
    return M.Alternative(
        alt.index,
        kind,
        targets,
        tuple(functions),
        tuple(sorted(scope.stash.items())),
        where_steps,
        where,
        tuple(codes),
        filter_fields,
        stores,
        state_steps,
        entry_steps,
        stash_steps,
    )


def failed(ctx: Context, probe: S.Probe, alt: S.Alternative) -> bool:
    """Whether the alternative has a problem said before this pass: its target was not found
    (the attach pass), or one of its own expressions (`let`, `where`) or the probe's stores
    and deletes (resolved in its scope) did not parse (the typed spec)."""
    if ctx.targets[probe.index, alt.index] is None:
        return True
    own = [let.expr for let in alt.lets] + ([alt.where] if alt.where is not None else [])
    for store in probe.stores:
        own += [store.key, *(e for _, e in store.value.members)]
        own += [store.value.expr] if store.value.expr is not None else []
    own += [d.key for d in probe.deletes]
    return any(e.node is None for e in own)


Let = tuple[str, tuple[E.Node | None, S.At]]


def check_lets(
    ctx: Context, probe: S.Probe, alt: S.Alternative, scope: Scope, resolver: Resolver
) -> list[Let]:
    """The alternative's and the probe's `let`s, each checked once (so unused ones still
    report errors), then left lazy: a `let` is computed where first used, so unused ones
    cost nothing."""
    all_lets = [(let.name, (let.expr.node, let.expr.at)) for let in (*alt.lets, *probe.lets)]
    # a cast is a whole `let` or field value: where to say what is wrong with it
    for node, npath in [n for _, n in all_lets] + [
        (f.value.node, f.value.at) for f in probe.fields
    ]:
        if isinstance(node, E.Cast):
            ctx.cast_paths[id(node)] = (node, npath)
    scope.lazy = {k: n for k, (n, _) in all_lets if n is not None}
    for lname, (node, lpath) in all_lets:
        if node is None:
            scope.failed.add(lname)
            continue
        mark = len(scope.steps)
        try:
            scope.bindings[lname] = resolver.value(node)
        except PlanError as exc:
            ctx.problem(exc.message, lpath, exc.col)
            scope.failed.add(lname)
        del scope.steps[mark:]
        scope.cache.clear()
        scope.loads.clear()
    scope.bindings.clear()
    scope.lazy = {k: n for k, (n, _) in all_lets if n is not None and k not in scope.failed}
    return all_lets


def field_codes(
    ctx: Context, probe: S.Probe, resolver: Resolver, fields: dict[str, M.Field]
) -> list[M.FieldCode]:
    """Each field's steps in this alternative; its type merged into the event's fields."""
    scope = resolver.s
    codes = []
    for field in probe.fields:
        node = field.value.node
        if node is None:
            continue
        mark = len(scope.steps)
        ctx.node_paths[id(node)] = (node, field.value.at)
        try:
            val = resolver.value(node)
            f, steps = field_code(ctx, resolver, field, val, node)
        except PlanError as exc:
            ctx.problem(exc.message, field.value.at, exc.col)
            continue
        codes.append(M.FieldCode(field.name, tuple(scope.steps[mark:]) + tuple(steps)))
        merge_field(ctx, fields, f, field.at)
    return codes


def plan_filter(ctx: Context, node: E.Node, fields: dict[str, M.Field], at: S.At) -> M.CExpr:
    def operand(n: E.Node) -> Val:
        if isinstance(n, E.Name) and n.name in fields:
            f = fields[n.name]
            if f.count or f.ctype.startswith("struct"):
                kind = {"str": VKind.STR, "inet": VKind.INET}.get(f.decoder, VKind.ARRAY)
                vt = VT(kind, f.count, count=f.count, label=f"{f.decoder} field '{f.name}'")
                return Val(vt, var=f"ev.{M.slot_name(n.name)}")
            return Val(int_vt(f.ctype), var=f"ev.{M.slot_name(n.name)}")
        if isinstance(n, E.Name) and ctx.enum_lookup(n.name) is None:
            raise PlanError(
                f"the filter can use this probe's fields ({', '.join(fields)}) "
                f"and $options; put other conditions in an alternative's `where`"
                f"{did_you_mean(n.name, fields)}",
                n.col,
            )
        return resolver.value(n)

    scope = Scope(ctx.btf, "filter", {}, None, None)
    resolver = Resolver(scope, ctx.enum_lookup)
    leaf = fields_only(operand)
    resolver.leaf = leaf  # arithmetic on fields: `filter: usecs / 1000 > 5`
    try:
        return inline(resolver.condition(node, leaf, ctx.options), scope.steps)
    except PlanError as exc:
        ctx.problem(exc.message, at, exc.col)
        return M.CTrue()


def plan_stores(ctx: Context, resolver: Resolver, probe: S.Probe) -> None:
    """The probe's `store` and `delete`, resolved in this alternative's scope."""
    sr = StateResolver(resolver, ctx.states)
    items: tuple[S.Store | S.Delete, ...] = (*probe.stores, *probe.deletes)
    for item in items:
        smap = ctx.states.get(item.map)
        if smap is None:
            ctx.problem(
                f"no state map '{item.map}'; state maps: "
                f"{', '.join(ctx.states) or 'none declared (top-level `state:`)'}"
                f"{did_you_mean(item.map, ctx.states)}",
                item.at,
                key=True,
            )
            continue
        try:
            if isinstance(item, S.Delete):
                if item.key.node is not None:
                    sr.delete(smap, item.key.node)
                continue
            spec = item.value
            value: Any
            if spec.expr is None:
                value = {k: e.node for k, e in spec.members}
                if any(v is None for v in value.values()):
                    continue
                for _, e in spec.members:
                    if e.node is not None:
                        ctx.node_paths[id(e.node)] = (e.node, e.at)
            else:
                value = spec.expr.node
                ctx.node_paths[id(value)] = (value, spec.expr.at)
            if item.key.node is None or value is None:
                continue
            sr.store(smap, item.key.node, value, 0)
        except StoreValueError as exc:  # only a store has a value
            assert isinstance(item, S.Store)
            members = dict(item.value.members)
            at = members[exc.member].at if exc.member else item.value.at
            ctx.problem(exc.message, at, exc.col)
        except PlanError as exc:
            at = item.at if isinstance(item, S.Delete) else item.key.at
            ctx.problem(exc.message, at, exc.col)
