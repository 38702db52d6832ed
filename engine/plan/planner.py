"""Planner: a schema-valid spec + kernel BTF -> a `Plan`, or every problem found.

Semantic validation and planning are one pass: resolving `sk.__sk_common.skc_dport` against
BTF *is* checking it, and yields the offsets the generated C reads. Every problem is collected
with its file:line:col (the column inside an expression included) before anything is raised.
The work is done by the ordered passes of engine.plan.passes; this module builds their
context, runs them, and assembles the Plan.
"""

from __future__ import annotations

import os
from typing import Iterator

from engine.errors import Problem, SpecError
from engine.kernel import tracefs
from engine.kernel.btf import VMLINUX
from engine.plan import implicit, passes
from engine.plan import model as M
from engine.plan.layout import layout, load_btf
from engine.plan.passes.context import Context
from engine.plan.passes.names import ENGINE_FLAGS  # noqa: F401  (tests check it against the CLI)
from engine.spec import model as S


def plan_context(ctx: Context) -> M.Plan:
    """Run the passes over `ctx`; SpecError with every problem, else the Plan."""
    passes.run(ctx)
    if ctx.problems:
        # Fields are planned once per alternative: say each mistake once.
        ctx.problems = list(dict.fromkeys(ctx.problems))
        raise SpecError(sorted(ctx.problems, key=lambda p: (p.location.line, p.location.col)))
    field_list = tuple(ctx.fields.values())
    event = layout("event_t", [(M.slot_name(f.name), f.ctype, f.count) for f in field_list])
    plan = M.Plan(
        name=ctx.spec.name,
        description=ctx.spec.description,
        options=tuple(ctx.options.values()),
        probes=tuple(p for p in ctx.probes if p is not None),
        fields=field_list,
        event=event,
        columns=ctx.columns,
        states=tuple(ctx.states.values()),
        aggregations=tuple(ctx.aggregations),
        func_names=tuple(ctx.func_names),
        derived=tuple(ctx.derived),
    )
    for check in passes.PLAN_PASSES:
        check(ctx, plan)
    if ctx.problems:
        raise SpecError(ctx.problems)
    return plan


# --- entry points ------------------------------------------------------------------------------


def plan(spec: S.Spec | S.Source, btf_path: str | None = None) -> M.Plan:
    """Plan a typed spec (or a schema-valid document, built here); raises SpecError with
    every problem found."""
    return plan_with_warnings(spec, btf_path)[0]


def plan_with_warnings(
    spec: S.Spec | S.Source, btf_path: str | None = None
) -> tuple[M.Plan, list[Problem]]:
    """`plan`, and what is valid but probably not meant (an option nothing uses)."""
    if not isinstance(spec, S.Spec):
        spec = S.build(spec)
    spec = implicit.with_builtin_fields(spec)
    btf = load_btf(btf_path)
    live = btf_path is None or os.path.realpath(btf_path) == os.path.realpath(VMLINUX)
    ctx = Context(spec, btf, tracefs_ok=live and _tracefs_readable())
    return plan_context(ctx), ctx.warnings


def _tracefs_readable() -> bool:
    try:
        tracefs.events_dir()
    except tracefs.TracefsError:
        return False
    return True


def iter_steps(alt: M.Alternative) -> Iterator[M.Step]:
    yield from alt.steps
    for f in alt.fields:
        yield from f.steps
