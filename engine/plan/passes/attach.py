"""The attach pass: each alternative's target (kernel functions, a tracepoint's record, a
raw tracepoint's arguments) found in BTF, with the scope of names it binds; and the BPF
functions an alternative generates (a return probe's entry function and its stash)."""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import os
from dataclasses import dataclass

from engine.attach import KINDS
from engine.attach.base import is_pattern
from engine.errors import NameIndex, did_you_mean
from engine.kernel import tracefs
from engine.kernel.btf import Btf, Kind
from engine.plan import model as M
from engine.plan import tracepoints
from engine.plan.layout import layout
from engine.plan.passes.context import Context
from engine.plan.passes.context import Target as Resolved
from engine.plan.resolve import Scope, name_index
from engine.plan.resources import state_map_name
from engine.plan.values import PlanError
from engine.spec import model as S

MAX_STASH = 6  # a return probe keeps at most the register-passed arguments


def run(ctx: Context) -> None:
    """Every alternative's target, before anything is resolved in its scope."""
    pairs: list[tuple[str, str]] = []
    for probe in ctx.spec.probes:
        for alt in probe.attach:
            target = ctx.targets[probe.index, alt.index] = attach_target(ctx, alt)
            if target is not None:
                pairs += [(target[0], t) for t in target[1]]
    ctx.func_label = func_labels(pairs)
    ctx.func_names = list(dict.fromkeys(ctx.func_label.values()))


def func_labels(pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """What `func` prints for each (kind, target), in order: the kind's bare name (a symbol),
    unless targets that are not the same share it (getpid in libc and in libx.so): then the
    qualified name (`libc.so.6:getpid`), and if that is shared too (two files named libc.so.6)
    the whole target, which is unique."""
    labels = {p: KINDS[p[0]].func_name(p[1]) for p in pairs}
    for level in (lambda k, t: KINDS[k].func_qualified(t), lambda k, t: t):
        owners: dict[str, set[str]] = {}
        for (_, t), label in labels.items():
            owners.setdefault(label, set()).add(t)
        labels = {p: level(*p) if len(owners[n]) > 1 else n for p, n in labels.items()}
    return labels


def attach_target(ctx: Context, alt: S.Alternative) -> Resolved | None:
    """The alternative's kind binds it (engine.attach: its family parses the targets, finds
    them in BTF and says which names an expression may use)."""
    kind = KINDS[alt.kind]
    for key, at in alt.user_keys:
        if key not in kind.user_keys:
            takers = sorted(k.name for k in KINDS.values() if key in k.user_keys)
            ctx.problem(
                f"`{key}` is for {', '.join(takers)} alternatives, not {kind.name}", at, key=True
            )
            return None
    return kind.bind(_Binder(ctx), alt, Scope)


@dataclass(frozen=True)
class _Binder:
    """The planner's side of binding (engine.attach.base.BindContext) over one Context."""

    ctx: Context

    @property
    def btf(self) -> Btf:
        return self.ctx.btf

    def problem(self, message: str, at: S.At) -> None:
        self.ctx.problem(message, at)

    def function_names(self) -> NameIndex:
        return function_names(self.ctx)

    def raw_tp_names(self) -> NameIndex:
        return raw_tp_names(self.ctx)

    def traceable_functions(self) -> frozenset[str] | None:
        """On the running kernel, the functions a probe can attach to (a pattern expands over
        those only); None offline (`--btf`, no root), where BTF is all there is."""
        if not self.ctx.tracefs_ok:
            return None
        if self.ctx.traceable is None:
            self.ctx.traceable = (tracefs.traceable_functions(),)
        return self.ctx.traceable[0]

    def tracepoint_record(self, category: str, event: str, at: S.At) -> tracepoints.Record | None:
        return tracepoint_record(self.ctx, category, event, at)

    @property
    def spec_dir(self) -> str:
        return os.path.dirname(os.path.abspath(self.ctx.spec.file))

    def option_type(self, name: str, at: S.At) -> str | None:
        """The option's C type (marking it used); a problem when the spec has no such option."""
        option = self.ctx.options.get(name)
        if option is None:
            known = [o.name for o in self.ctx.spec.options]
            self.ctx.problem(f"unknown option '${name}'{did_you_mean(name, known)}", at)
            return None
        self.ctx.mentioned.add(name)
        return "list" if option.is_list else option.ctype


def function_names(ctx: Context) -> NameIndex:
    return name_index(ctx.btf, "functions", lambda: ctx.btf.names(Kind.FUNC))


def raw_tp_names(ctx: Context) -> NameIndex:
    def names() -> list[str]:
        typedefs = ctx.btf.names(Kind.TYPEDEF)
        return [n[len("btf_trace_") :] for n in typedefs if n.startswith("btf_trace_")]

    return name_index(ctx.btf, "raw tracepoints", names)


def tracepoint_record(
    ctx: Context, category: str, event: str, at: S.At
) -> tracepoints.Record | None:
    """A tracepoint's record (engine.plan.tracepoints: tracefs on the live kernel, else BTF)."""
    try:
        return tracepoints.tracepoint_record(ctx.btf, category, event, ctx.tracefs_ok)
    except tracepoints.RecordError as exc:
        ctx.problem(str(exc), at)
        return None


def stash_state(
    ctx: Context, pname: str, scope: Scope
) -> tuple[tuple[M.Step, ...], tuple[M.Step, ...]]:
    """A return probe's entry arguments, kept in a state map like any other: the entry
    function stores them by thread id, the return function takes them first of all (so
    the key is deleted on every path, before `where` or a filter can return)."""
    name = f"stash_{pname}"
    smap = ctx.states.get(name)
    if smap is not None and name not in ctx.stashes:
        raise PlanError(
            f"state '{name}' is the name the engine gives this return probe's saved "
            "arguments; rename the state map"
        )
    if smap is None:
        ctx.stashes.add(name)
        members = [f"a{i}" for i in range(MAX_STASH)]
        smap = ctx.states[name] = M.StateMap(
            name,
            layout(f"{state_map_name(name)}_key_t", [("k0", "u32", 0)]),
            layout(f"{state_map_name(name)}_val_t", [(M.slot_name(m), "u64", 0) for m in members]),
            tuple(members),
            10240,
            True,
            len(ctx.states),
            stash=True,
        )
    slots = sorted(scope.stash.items(), key=lambda kv: kv[1])
    entry: list[M.Step] = [M.Builtin("tid", "u32", "tid")]
    entry += [M.Arg(f"arg{i}", "u64", i, "regs") for _, i in slots]
    entry.append(M.StateKey("key", name, (("k0", M.Local("tid")),)))
    parts = tuple((M.slot_name(slot), M.Local(f"arg{i}")) for slot, i in slots)
    entry.append(M.StatePut("st", name, M.Local("key"), parts, (), smap.index))
    first: tuple[M.Step, ...] = (
        M.Builtin("tid", "u32", "tid"),
        M.StateKey("key", name, (("k0", M.Local("tid")),)),
        M.StateRead("st", name, M.Local("key"), True, index=smap.index),
    )
    return tuple(entry), first


def target_at(alt: S.Alternative, target: str) -> S.At:
    """Where the spec names a concrete target: its own entry, or the pattern that matched it."""
    for text, at in zip(alt.targets, alt.target_ats):
        if text == target or (is_pattern(text) and fnmatch.fnmatchcase(target, text)):
            return at
    return alt.kind_at


def functions(
    ctx: Context,
    probe: S.Probe,
    alt: S.Alternative,
    kind: str,
    targets: tuple[str, ...],
    scope: Scope,
) -> list[M.Function] | None:
    """The BPF functions of an alternative: one per target (and a return probe's entry
    function); None when a function name bcc derives is another probe's (said)."""
    ak = KINDS[kind]
    pindex = probe.index
    fnames = (f"p{pindex}_{probe.name}_{kind}_{ak.fn_part(t)}" for t in targets)
    found: list[M.Function] = []
    for t, fn in zip(targets, fnames):
        tgt = ak.bcc_name(t)
        fn = fn if ak.prefix else unique_fn(ctx, fn, t)
        if ak.entry and scope.stash:
            found.append(M.Function(fn + "_entry", ak.entry, t, "entry"))
        if ak.prefix:
            fn = f"{ak.prefix}{t}"
            owner = ctx.function_owner.setdefault(fn, pindex)
            if owner != pindex:  # the name is the function's: two probes would collide
                ctx.problem(
                    f"probe '{ctx.spec.probes[owner].name}' already has a {kind} "
                    f"on '{t}'; bcc names the program after the function, so a spec can "
                    f"attach one {kind} to it",
                    target_at(alt, t),
                )
                return None
        if ak.exclusive:
            owner = ctx.function_owner.setdefault(f"{kind}:{tgt}", pindex)
            if owner != pindex:
                ctx.problem(
                    f"probe '{ctx.spec.probes[owner].name}' already has a {kind} on '{t}'; "
                    f"{ak.exclusive}",
                    target_at(alt, t),
                )
                return None
        label = ctx.func_label.get((kind, t), ak.func_name(t))
        found.append(M.Function(fn, kind, tgt, "main", func=ctx.func_names.index(label)))
    return [with_pid(f, alt) for f in found]


def unique_fn(ctx: Context, fn: str, target: str) -> str:
    """`fn`, or `fn` and a hash of the target when another target's function has the name
    already (one file name in two directories: fn_part names the file, not its path)."""
    if ctx.fn_target.setdefault(fn, target) == target:
        return fn
    fn = f"{fn}_{hashlib.sha1(target.encode()).hexdigest()[:8]}"
    ctx.fn_target[fn] = target
    return fn


def with_pid(fn: M.Function, alt: S.Alternative) -> M.Function:
    """A user-space alternative's `pid:` on each of its functions (a number, or its option)."""
    if isinstance(alt.pid, int):
        return dataclasses.replace(fn, pid=alt.pid)
    if isinstance(alt.pid, str):
        return dataclasses.replace(fn, pid_option=alt.pid)
    return fn
