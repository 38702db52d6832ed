"""The planner as ordered passes over one `Context` (engine.plan.passes.context).

names -> attach -> resolve -> outputs -> limits: each reads what the earlier ones left in the
context and adds problems; `engine.plan.planner` runs them, raises every problem at once,
assembles the Plan, and runs the passes that check the finished plan (`PLAN_PASSES`).
Fields are planned inside `resolve` (engine.plan.passes.fields), per alternative, since a
field's steps live in its alternative's scope.
"""

from __future__ import annotations

from typing import Callable

from engine.plan import model as M
from engine.plan.passes import attach, limits, names, outputs, resolve
from engine.plan.passes.context import Context

Pass = Callable[[Context], None]

PASSES: tuple[Pass, ...] = (
    names.run,  # options, state maps, probe names
    attach.run,  # each alternative's target and the scope it binds
    resolve.run,  # lets, where, state reads, fields, stores, functions, filters
    outputs.run,  # columns, output.count, aggregations
    limits.run,  # state never stored into, user pointers cast to kernel structs
    outputs.counted,  # output.count as an aggregation; probes set every printed field
    limits.warn_unused_options,  # an option nothing names (a warning)
)

PLAN_PASSES: tuple[Callable[[Context, M.Plan], None], ...] = (
    limits.check_stack,  # every probe's BPF stack, in every shape
)


def run(ctx: Context) -> None:
    for step in PASSES:
        step(ctx)
