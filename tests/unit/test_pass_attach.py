"""engine.plan.passes.attach: the pass on its own over a Context (tests/plan_context.py)."""

from __future__ import annotations

from engine.plan.passes import attach
from tests.plan_context import SPEC, context, run, said


def test_attach_resolves_each_alternative_and_locates_a_missing_function() -> None:
    ctx = run(context(), attach.run)
    kprobe, tracepoint = ctx.targets[0, 0], ctx.targets[0, 1]
    assert kprobe is not None and kprobe[:2] == ("kprobe", ("tcp_v4_connect",))
    assert "sk" in kprobe[2].params
    assert tracepoint is not None and tracepoint[0] == "tracepoint"
    ctx = run(context(SPEC.replace("[tcp_v4_connect]", "[tcp_v4_connect, no_such_fn]")), attach.run)
    assert ctx.targets[0, 0] is None
    ((line, col, message),) = said(ctx)
    assert (line, col) == (10, 34) and message.startswith("no kernel function 'no_such_fn'")
