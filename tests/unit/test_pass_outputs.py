"""engine.plan.passes.outputs: the pass on its own over a Context (tests/plan_context.py)."""

from __future__ import annotations

from engine.plan.passes import attach, names, outputs, resolve
from tests.plan_context import SPEC, context, run, said


def test_outputs_plans_columns_and_aggregations() -> None:
    ctx = run(context(), names.run, attach.run, resolve.run, outputs.run)
    assert [(c.field, c.option) for c in ctx.columns] == [("dport", ""), ("comm", "wide")]
    (hist,) = ctx.aggregations
    assert (hist.kind, hist.value, [c.field for c in hist.by]) == ("log2", "dport", ["comm"])


def test_outputs_says_a_column_switch_is_not_a_bool() -> None:
    ctx = run(context(SPEC.replace("if: wide", "if: port")), names.run, attach.run,
              resolve.run, outputs.run)  # fmt: skip
    assert said(ctx) == [(21, 38, "`if` needs a bool option; 'port' is not one")]
