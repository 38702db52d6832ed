"""The limits pass: what is valid YAML and resolves but cannot work or does nothing: a state
map nothing stores into, a user-space pointer cast to a kernel struct, a value kept in state
read as a user string that holds no user pointer, an option nothing uses (a warning); and, on
the finished plan, the BPF stack of every probe in every shape."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from engine.errors import Problem, UsageError
from engine.plan import model as M
from engine.plan.bind import bind
from engine.plan.passes.context import Context
from engine.plan.shapes import counts, option_shapes
from engine.plan.state import user_pointer_message, user_string_problem


def run(ctx: Context) -> None:
    check_state_use(ctx)
    check_user_casts(ctx)
    check_user_strings(ctx)


def check_state_use(ctx: Context) -> None:
    """A state map nothing stores into can never be read: a mistake, said at its name."""
    stored = {store.map for probe in ctx.spec.probes for store in probe.stores}
    for state in ctx.spec.states:
        if state.name not in stored and state.name not in ctx.stashes:
            ctx.problem(
                f"state '{state.name}' is never stored into: add `store: {{{state.name}: "
                "{key: ..., value: ...}}` to the probe that starts the pairing",
                state.at,
                key=True,
            )


def check_user_casts(ctx: Context) -> None:
    """A value read from state and cast to a kernel struct, where some store (in any
    probe, before or after) puts a user-space pointer into that state member."""
    for node, origins in ctx.provenance.casts:
        found = ctx.provenance.user_pointer(origins)
        entry = ctx.cast_paths.get(id(node))
        if found is not None and entry is not None:
            ctx.problem(user_pointer_message(*found), entry[1], int(node.expr.col))


def check_user_strings(ctx: Context) -> None:
    """A value read from state and read as a string (`decode: str`, a store into a `str`
    member) is read from user memory: each state member it comes from must hold a user-space
    pointer, and none a kernel pointer (the user helper would read nothing there)."""
    for node, origins in ctx.provenance.strings:
        entry = ctx.node_paths.get(id(node))
        if entry is None:
            continue
        problem = user_string_problem(ctx.provenance, origins)
        if problem:
            ctx.problem(problem, entry[1])


def warn_unused_options(ctx: Context) -> None:
    """An option no expression, column or aggregation names does nothing: say so."""
    ctx.mentioned.update(ctx.spec.output.switches())
    ats = {o.name: o.at for o in ctx.spec.options}
    for name, opt in ctx.options.items():
        if name not in ctx.mentioned and not opt.output:  # `output:` chooses a format
            flags = opt.label
            ctx.warnings.append(
                Problem(
                    f"option '{name}' ({flags}) is used by no filter, `where`, column or "
                    f"aggregation, so it does nothing; use it (${name}) or remove it",
                    ats[name].key,
                    "warning",
                )
            )


def check_stack(ctx: Context, plan: M.Plan) -> None:
    """Refuse a probe whose program would pass the BPF stack limit, in any shape.

    clang does not report a too-large stack as an error: its BPF backend ends the process.
    So the planner adds up what each function keeps on the stack (`stack_use`), for every
    alternative, output mode and option shape (engine.plan.shapes: aggregation keys and
    their `by` columns come and go with switches), and says what is large instead.
    """
    worst: dict[str, tuple[int, StackUse, str]] = {}
    most = max((len(p.alternatives) for p in plan.probes), default=1)
    for shape in option_shapes(plan):
        for count in counts(plan):
            label = " ".join(x for x in ("-c" * count, shape.flags) if x)
            for index in range(most):
                choices = {p.name: min(index, len(p.alternatives) - 1) for p in plan.probes}
                try:
                    program = bind(plan, count=count, options=shape.values, choices=choices)
                except UsageError:
                    continue  # a value this shape cannot take (a 1-byte string field)
                for bound in program.probes:
                    use = stack_use(bound, program)
                    if use.total > worst.get(bound.name, (0,))[0]:
                        worst[bound.name] = (use.total, use, label)
    for probe in plan.probes:
        need, use, label = worst.get(probe.name, (0, StackUse(), ""))
        if need <= STACK_LIMIT:
            continue
        spec = ctx.spec.probes[probe.index]
        part = spec.fields_at if spec.fields else spec.store_at if spec.stores else spec.name_at
        ctx.problem(
            f"probe '{probe.name}' needs {need} bytes of BPF stack"
            f"{f' with {label}' if label else ''}, over the kernel's {STACK_LIMIT}: "
            f"{use.explain(plan.event)}; make string fields smaller with `size:`, or keys "
            "and state values fewer",
            part,
        )


# --- the BPF stack -----------------------------------------------------------------------------

STACK_LIMIT = 512  # bytes of stack a BPF program may use
STACK_RESERVE = 8  # what every function keeps besides: the lost counter's key, spills
SLOT = 8  # clang gives each stack object a multiple of 8 bytes
ADDRESSED = (M.Load, M.LoadBits, M.DataLocStr)  # steps whose local is read into by address


def _slot(size: int) -> int:
    return (size + SLOT - 1) // SLOT * SLOT


@dataclass
class StackUse:
    """What one BPF function keeps on the stack, by part (bytes)."""

    event: int = 0
    reads: int = 0  # the temporary a bpf_probe_read_* writes a number into
    states: dict[str, int] = dataclasses.field(default_factory=dict)  # state map -> structs
    sink: tuple[str, int] = ("", 0)  # the largest aggregation block: (what it is, bytes)
    sets: int = 0  # a list option's hash set lookup key
    reserve: int = STACK_RESERVE

    @property
    def total(self) -> int:
        parts = (self.event, self.reads, self.sink[1], self.sets, self.reserve)
        return sum(parts) + sum(self.states.values())

    def explain(self, event: M.Layout) -> str:
        big = sorted((s for s in event.slots if s.size >= 16), key=lambda s: -s.size)
        named = ", ".join(f"{s.name[len('f_') :]} {s.size}" for s in big) or "none over 16 bytes"
        said = [f"the event is {event.size} bytes (fields: {named})"]
        if self.sink[1]:
            said.append(self.sink[0])
        said += [f"state '{name}' {size} bytes" for name, size in self.states.items()]
        return ", ".join(said)


def stack_use(probe: M.ProgramProbe, program: M.Program) -> StackUse:
    """Bytes of BPF stack one bound probe's function needs, as clang lays it out.

    On the stack: the event; the temporary a bpf_probe_read_* writes a number into (one
    8-byte slot, each read in its own block); every state key and stored value, and a value
    read whose task name is copied out (a value read only by its numbers is kept in
    registers, one 8-byte spill slot per member read: a return probe's stashed arguments are
    such a value); the key of an aggregation,
    with its block's locals (each aggregation is its own block, so the largest counts, not
    their sum); a hash set lookup's key. Registers hold the rest. Measured against clang by
    tests/kernel/test_stack_limit.py: the largest programs it accepts compile.
    """
    alt = probe.alternative
    steps = [*alt.stash_steps, *alt.steps, *alt.state_steps, *probe.pre, *probe.post]
    states = {st.name: st for st in program.states}
    use = StackUse(event=_slot(program.event.size))
    use.reads = SLOT if any(isinstance(s, ADDRESSED) for s in steps) else 0
    copied = {s.src.local for s in steps if isinstance(s, M.CopyLocal)}
    members = _members_read(steps)
    for step in steps:
        if isinstance(step, M.StateKey):
            size = states[step.map].key.size
        elif isinstance(step, (M.StatePut, M.StateRead)) and step.scratch >= 0:
            size = SLOT  # the value is in its per-CPU scratch array: a pointer to it
        elif isinstance(step, M.StatePut) or (
            isinstance(step, M.StateRead) and step.dest in copied
        ):
            size = states[step.map].value.size
        elif isinstance(step, M.StateRead):  # in registers, each spilled around helper calls
            size = SLOT * len(members.get(step.dest, ()))
        else:
            continue
        use.states[step.map] = use.states.get(step.map, 0) + _slot(size)
    if probe.emits:
        for sink in program.sinks:
            if isinstance(sink, M.AggSink):
                # the key, `first` (the index of `other` and of a histogram's zero), and a
                # plain value's zero start (emit_agg.c.j2; a histogram starts from a map's)
                start = 0 if sink.buckets else _slot(M.leaf_size(sink))
                block = _slot(sink.key.size) + SLOT + start
                if block > use.sink[1]:
                    owner = "the count key" if sink.agg.by_count else (
                        f"the key of aggregation '{sink.agg.name}'"
                    )  # fmt: skip
                    use.sink = (f"{owner} {sink.key.size} bytes", block)
    if program.sets:
        use.sets = SLOT
    return use


def _members_read(steps: list[M.Step]) -> dict[str, set[str]]:
    """Local -> the members of it the steps read (`v3.f_ts`; a stash's through `Stashed`)."""
    found: dict[str, set[str]] = {}
    for step in steps:
        if isinstance(step, M.Stashed):
            found.setdefault("st", set()).add(step.slot)
            continue
        for op in step.operands():
            if isinstance(op, M.Member):
                found.setdefault(op.local, set()).add(op.member)
    return found
