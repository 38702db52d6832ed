"""Bind a Plan to one run: -c, option values, and the alternative chosen per probe.

The result, a `Program`, is what the templates render. Option placeholders become typed
constants (or their comparison drops out when the option is not given), and only the steps
the chosen output needs are kept: `-c` computes the count key and the filter's fields, not
every column.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping, Sequence, Union

from engine import aggs
from engine.attach import KINDS, TargetError, legacy_name
from engine.decoders import STACK_DECODERS
from engine.errors import UsageError
from engine.kernel.pinned import SAFE_PATH
from engine.nodes import Transformer, Visitor
from engine.plan import model as M
from engine.plan import strmatch
from engine.plan.layout import layout
from engine.plan.resources import (
    STACK_ERRORS,
    STACK_STORAGE,
    agg_error_index,
    error_names,
    set_map_name,
)
from engine.plan.values import PINNED, ctype_range, inet_value

OptionValue = Union[int, bool, str, Sequence[int], None]
SET_INLINE = 8  # a list option with more values than this is looked up in a hash set map


def bind(
    plan: M.Plan,
    *,
    count: bool = False,
    options: Mapping[str, OptionValue] | None = None,
    choices: Mapping[str, int] | None = None,
    transport: M.Transport = M.Transport.RINGBUF,
    ringbuf_pages: int = 64,
    wakeup_batch: int = 0,
    kfunc_style: str = "module",
    clear: bool = False,
    stack_storage: int = STACK_STORAGE,
    cgroups: Sequence[str] = (),
    cgroup_slots: int = 0,
) -> M.Program:
    """Fix a run's choices; `choices` maps probe name -> index into its alternatives.

    `count` (-c/--count) turns on the spec's counted aggregation (`output.count`), alone.

    `clear` (--clear) gives each aggregation two map sets, so a print can clear one while the
    kernel writes the other (engine.runtime.sinks.Epochs).

    `cgroups` (--cgroup): directories of the cgroup v2 hierarchy; a probe that sends events
    sends only those of tasks under one of them (its stores and takes still run, so pairs
    across tasks stay paired). `cgroup_slots`: the array's size when more directories are
    added while the run goes on (--container, --pod); at least len(cgroups).

    `kfunc_style` names fentry/fexit functions the way the bcc in use looks them up:
    "module" (kfunc__vmlinux__FN, bcc >= 0.27) or "legacy" (kfunc__FN, bcc 0.26).
    """
    values = dict(options or {})
    for o in plan.options:  # an option not given takes its default (profile's -F 49)
        if o.default is not None and values.get(o.name) is None:
            values[o.name] = o.default
    if count and plan.counted is None:
        raise ValueError("this spec declares no output.count")
    flags = {o.name: o.label for o in plan.options}
    sinks = bind_sinks(plan, count, values, transport, ringbuf_pages, wakeup_batch, clear)
    aggs = [s for s in sinks if isinstance(s, M.AggSink)]
    errors = error_names(plan.states, [s.agg for s in aggs])
    stacks = any(f.decoder in STACK_DECODERS for f in plan.fields)
    stack_errors = len(errors) if stacks else -1
    errors += list(STACK_ERRORS) if stacks else []
    if aggs:
        wanted = {c.field for a in aggs for c in a.by} | {a.agg.value for a in aggs} - {""}
    else:
        wanted = {f.name for f in plan.fields}
    probes = [
        bind_probe(p, (choices or {}).get(p.name, 0), values, flags, wanted, kfunc_style)
        for p in plan.probes
    ]
    sets = {s.map: s for p in probes for e in (p.alternative.where, p.filter) for s in set_maps(e)}
    # a return probe's stash map is declared only when its alternative is the one chosen
    stashes = {
        s.map for p in probes for s in p.alternative.stash_steps if isinstance(s, M.StateKey)
    }
    return M.Program(
        name=plan.name,
        probes=tuple(probes),
        event=plan.event,
        fields=plan.fields,
        sinks=tuple(sinks),
        states=tuple(st for st in plan.states if not st.stash or st.name in stashes),
        errors=tuple(errors),
        sets=tuple(sets.values()),
        stack_storage=stack_storage if stacks else 0,
        stack_errors=stack_errors,
        derived=plan.derived,
        cgroups=tuple(cgroups),
        cgroup_slots=max(cgroup_slots, len(cgroups)),
    )


def bind_probe(
    probe: M.Probe,
    index: int,
    values: Mapping[str, OptionValue],
    flags: Mapping[str, str],
    wanted: set[str],
    kfunc_style: str,
) -> M.ProgramProbe:
    """One probe with its `index`-th alternative: functions named and bound, `where` and
    the filter bound, and only the steps the wanted fields, the filter and the stores need."""
    alt = probe.alternatives[index]
    functions = alt.functions
    if kfunc_style == "legacy":
        functions = tuple(
            replace(fn, name=legacy_name(KINDS[fn.kind], fn.name)) for fn in functions
        )
    functions = tuple(bind_pid(fn, values) for fn in functions)
    functions = tuple(bind_rate(fn, values) for fn in functions)
    alt = replace(alt, functions=functions, where=bind_expr(alt.where, values, flags))
    filt = bind_expr(probe.filter, values, flags)
    filtered = {f for f in alt.filter_fields if f"ev.{M.slot_name(f)}" in slots_read(filt)}
    pre = select(alt, filtered, set())
    defined = {s.dest for s in pre}
    emitted = (wanted - filtered) if probe.emits else set()
    acting = {s.dest for f in alt.fields for s in f.steps if acts(s)}
    post = select(alt, emitted, defined, alt.stores, acting)
    later = (*alt.state_steps, *pre, *post)
    alt = replace(alt, steps=prune(alt.steps, slots_read(alt.where), later))
    return M.ProgramProbe(probe.name, alt, pre, filt, post, probe.emits)


def bind_pid(fn: M.Function, values: Mapping[str, OptionValue]) -> M.Function:
    """A user-space probe's pid from its option (not given on the command line: -1, all)."""
    if not fn.pid_option:
        return fn
    value = values.get(fn.pid_option)
    return replace(fn, pid=value if isinstance(value, int) and value > 0 else -1)


def bind_rate(fn: M.Function, values: Mapping[str, OptionValue]) -> M.Function:
    """A sampling target's `$option` rate, from this run's value (engine.attach.perf)."""
    try:
        target = KINDS[fn.kind].bind_target(fn.target, values)
    except TargetError as exc:
        raise UsageError(exc.message) from None
    return fn if target == fn.target else replace(fn, target=target)


def active(agg: M.Aggregation, count: bool, values: Mapping[str, OptionValue]) -> bool:
    """-c turns on the spec's `output.count` (and only it); bool options the others."""
    if agg.by_count or count:
        return agg.by_count and count
    if not all(values.get(w) for w in agg.when):
        return False
    return not any(values.get(u) for u in agg.unless)


def bind_sinks(
    plan: M.Plan,
    count: bool,
    values: Mapping[str, OptionValue],
    transport: M.Transport,
    ringbuf_pages: int,
    wakeup_batch: int,
    clear: bool = False,
) -> list[M.Sink]:
    """Where events go this run: the active aggregations, or else the event stream. An
    aggregation's overflow counter follows the state maps' (resources.error_names)."""
    fields = {f.name: f for f in plan.fields}
    sinks: list[M.Sink] = []
    for agg in plan.aggregations:
        if not active(agg, count, values):
            continue
        by = tuple(c for c in agg.by if c.shown(values))
        members = [(M.slot_name(c.field), fields[c.field].ctype, fields[c.field].count) for c in by]
        if not members:  # one key for everything: a map key cannot be empty
            members.append(("all", "u32", 0))
        key = layout(f"agg_{agg.name}_key_t", members)
        value_ctype = aggs.KINDS[agg.kind].value_ctype(agg.signed)
        index = agg_error_index(plan.states, len(sinks))
        sinks.append(M.AggSink(agg, key, by, value_ctype, index, 2 if clear else 1))
    if not sinks:
        sinks.append(M.EventSink(M.Transport(transport), ringbuf_pages, wakeup_batch))
    return sinks


def slots_read(expr: M.CExpr) -> set[str]:
    """The event slots (`ev.f_pid`) a bound expression still reads."""
    walker = _SlotsRead()
    walker.visit(expr)
    return walker.found


class _SlotsRead(Visitor[None]):
    """The names a tree reads: variables, string slots, arithmetic's operand tokens."""

    def __init__(self) -> None:
        self.found: set[str] = set()

    def visit_CVar(self, node: M.CVar) -> None:
        self.found.add(node.name)

    def visit_CStrEq(self, node: M.CStrEq) -> None:
        self.found.add(node.slot)

    def visit_CInetEq(self, node: M.CInetEq) -> None:
        self.found.add(node.slot)

    def visit_Operand(self, node: M.Operand) -> None:
        self.found.add(str(node))  # an arithmetic operand (CArith's children): `ev.f_sport`


def set_maps(expr: M.CExpr) -> list[M.SetMap]:
    """The hash sets a bound expression looks values up in."""
    walker = _SetMaps()
    walker.visit(expr)
    return walker.found


class _SetMaps(Visitor[None]):
    def __init__(self) -> None:
        self.found: list[M.SetMap] = []

    def visit_CInSet(self, node: M.CInSet) -> None:
        self.found.append(node.set)


def in_list(left: M.CExpr, option: str, ctype: str, value: Sequence[int], negate: bool) -> M.CExpr:
    """`left in $option`: a chain of == for a few values, a hash set lookup for more.

    The set is keyed by the compared value's type and holds the values that type can hold
    (another could never be equal), so a lookup means what the == chain means."""
    if len(value) <= SET_INLINE or not isinstance(left, M.CVar):
        nums = tuple(M.CNum(int(v), ctype) for v in value)
        return M.CIn(left, nums, negate)
    lo, hi = ctype_range(left.ctype)
    kept = tuple(sorted({int(v) for v in value if lo <= int(v) <= hi}))
    return M.CInSet(left, M.SetMap(set_map_name(option), left.ctype, kept), negate)


# Steps that only compute a local (no helper with an effect, no state map touched): when
# nothing reads the local, the step can go.
PURE_STEPS = (
    M.Builtin, M.Arg, M.Load, M.LoadBits, M.AddrOf, M.Add, M.Arith, M.Test, M.Select
)  # fmt: skip


def prune(
    steps: tuple[M.Step, ...], read: set[str], later: tuple[M.Step, ...]
) -> tuple[M.Step, ...]:
    """The `where` steps still needed once options are bound: a comparison with an option not
    given drops out, and so do the reads only it used (`cgroup_id in $cgroupmap` without
    --cgroupmap reads no cgroup id, `mntns_id` no task memory)."""
    need = set(read).union(*(uses(s) for s in later))
    keep: list[M.Step] = []
    for step in reversed(steps):
        if not isinstance(step, PURE_STEPS) or step.dest in need:
            keep.append(step)
            need |= uses(step)
    return tuple(reversed(keep))


def acts(step: M.Step) -> bool:
    """A field's step that must run whether or not its field is printed: it changes state
    (take, a store, a delete) or decides whether the event goes on (a read without a
    default drops the event when the key is missing)."""
    if isinstance(step, M.StateRead):
        return step.delete or not step.has_default
    return isinstance(step, (M.StatePut, M.StateDelete))


def uses(step: M.Step) -> set[str]:
    """The generated locals a step reads (what the step itself declares)."""
    return set(step.reads())


def select(
    alt: M.Alternative,
    names: set[str],
    defined: set[str],
    always: tuple[M.Step, ...] = (),
    acting: set[str] | frozenset[str] = frozenset(),
) -> tuple[M.Step, ...]:
    """The steps that fill the event slots of `names`, with everything they depend on, then
    the `always` steps (state stores) with theirs; the field steps declaring `acting` (a take
    in a field: `acts`) are kept in their place whether their field is wanted or not.

    Fields share locals (`sk` is read once for saddr, daddr and dport), so selection walks
    the steps backwards from the wanted slots, in program order, skipping what the
    `where` steps or an earlier selection (`defined`) already computed.
    """
    ordered = [s for f in alt.fields for s in f.steps] + list(always)
    have = defined | {s.dest for s in (*alt.stash_steps, *alt.steps, *alt.state_steps)}
    need = {f"ev.{M.slot_name(n)}" for n in names} | {s.dest for s in always} | set(acting)
    keep: list[M.Step] = []
    for step in reversed(ordered):
        if step.dest in need and step.dest not in have:
            keep.append(step)
            if not step.dest.startswith("ev."):
                have.add(step.dest)
            need |= uses(step)
    return tuple(reversed(keep))


def bind_expr(
    expr: M.CExpr, values: Mapping[str, OptionValue], flags: Mapping[str, str] | None = None
) -> M.CExpr:
    """Replace option placeholders by constants; a term whose option is unset becomes true,
    and so does a switch's guarded term when the switch is not in its state."""
    return M.rewrite(BindOptions(values, flags or {}), expr)


class BindOptions(Transformer):
    """The option-holding nodes rebuilt with this run's values; the rest by their children."""

    def __init__(self, values: Mapping[str, OptionValue], flags: Mapping[str, str]) -> None:
        self.values = values
        self.flags = flags

    def flag(self, option: str) -> str:
        return self.flags.get(option, f"option '{option}'")

    def visit_CBool(self, expr: M.CBool) -> M.CExpr:
        terms = [M.rewrite(self, t) for t in expr.terms]
        if expr.op == "&&":
            terms = [t for t in terms if not isinstance(t, M.CTrue)]
            if not terms:
                return M.CTrue()
        elif any(isinstance(t, M.CTrue) for t in terms):
            return M.CTrue()
        return terms[0] if len(terms) == 1 else M.CBool(expr.op, tuple(terms))

    def visit_CSwitch(self, expr: M.CSwitch) -> M.CExpr:
        given = bool(self.values.get(expr.option))  # a switch not given is False (or absent)
        return M.rewrite(self, expr.term) if given == expr.on else M.CTrue()

    def visit_CCompare(self, expr: M.CCompare) -> M.CExpr:
        if not isinstance(expr.right, M.COption):
            return expr
        value = self.values.get(expr.right.option)
        if value is None:
            return M.CTrue()
        assert isinstance(value, int)
        return M.CCompare(expr.op, expr.left, M.CNum(int(value), expr.right.ctype))

    def visit_CStrEq(self, expr: M.CStrEq) -> M.CExpr:
        if not isinstance(expr.value, M.COption):
            return expr
        text = self.values.get(expr.value.option)
        if text is None:
            return M.CTrue()
        data = str(text).encode()
        problem = strmatch.problem(expr.kind, data, expr.size)
        if problem:
            raise UsageError(f"{self.flag(expr.value.option)}: {problem}")
        return replace(expr, value=data)

    def visit_CInetEq(self, expr: M.CInetEq) -> M.CExpr:
        if not isinstance(expr.value, M.COption):
            return expr
        text = self.values.get(expr.value.option)
        if text is None:
            return M.CTrue()
        return replace(expr, value=inet_value(str(text)))

    def visit_CIn(self, expr: M.CIn) -> M.CExpr:
        if not isinstance(expr.values, M.COption):
            return expr
        value = self.values.get(expr.values.option)
        if value is None:
            return M.CTrue()
        if expr.values.ctype == PINNED:  # the path, checked by engine.kernel.pinned.key_set
            assert isinstance(value, str) and isinstance(expr.left, M.CVar)
            if not SAFE_PATH.fullmatch(value):  # it is written into the C as a string
                flag = self.flag(expr.values.option)
                raise UsageError(f"{flag}: '{value}' is not a path the engine writes into C")
            pinned = M.SetMap(set_map_name(expr.values.option), "u64", (), pinned=value)
            return M.CInSet(expr.left, pinned, expr.negate)
        assert not isinstance(value, (int, bool, str))
        return in_list(expr.left, expr.values.option, expr.values.ctype, value, expr.negate)
