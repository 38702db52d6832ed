"""engine.plan.passes.limits: the pass on its own over a Context (tests/plan_context.py)."""

from __future__ import annotations

from engine.plan import passes, planner
from engine.plan.passes import limits
from tests.plan_context import SPEC, context, run, said


def test_limits_says_a_state_map_nothing_stores_into() -> None:
    text = SPEC.replace("state:\n", "state:\n  never: {key: u32, value: u64}\n")
    ctx = run(context(text), *passes.PASSES)
    ((line, col, message),) = said(ctx)
    assert (line, col) == (6, 3) and message.startswith("state 'never' is never stored into")


def test_limits_warns_of_an_option_nothing_uses() -> None:
    ctx = run(context(SPEC.replace("if: wide", "header: C")), *passes.PASSES)
    assert ctx.problems == []
    ((warning),) = ctx.warnings
    assert warning.severity == "warning" and "option 'wide'" in warning.message


def test_limits_checks_the_finished_plan_for_the_stack() -> None:
    ctx = context()
    plan = planner.plan_context(ctx)
    limits.check_stack(ctx, plan)
    assert ctx.problems == []
    assert limits.STACK_LIMIT == 512
