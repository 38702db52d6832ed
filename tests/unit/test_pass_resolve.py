"""engine.plan.passes.resolve: the pass on its own over a Context (tests/plan_context.py)."""

from __future__ import annotations

from engine.plan.passes import attach, names, resolve
from tests.plan_context import context, run


def test_resolve_plans_every_alternative_and_the_filter() -> None:
    ctx = run(context(), names.run, attach.run, resolve.run)
    (probe,) = ctx.probes
    assert probe is not None and [a.kind for a in probe.alternatives] == ["kprobe", "tracepoint"]
    assert list(ctx.fields) == ["dport", "comm"]
    assert probe.alternatives[0].filter_fields == ("dport",)
