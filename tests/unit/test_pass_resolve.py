"""engine.plan.passes.resolve: the pass on its own over a Context (tests/plan_context.py)."""

from __future__ import annotations

from engine.plan import passes
from engine.plan.passes import attach, names, resolve
from tests.plan_context import SPEC, context, run, said


def test_resolve_plans_every_alternative_and_the_filter() -> None:
    ctx = run(context(), names.run, attach.run, resolve.run)
    (probe,) = ctx.probes
    assert probe is not None and [a.kind for a in probe.alternatives] == ["kprobe", "tracepoint"]
    assert list(ctx.fields) == ["dport", "comm"]
    assert probe.alternatives[0].filter_fields == ("dport",)


def test_an_alternative_whose_let_did_not_parse_fails_its_probe_quietly() -> None:
    """Said once where it is (the typed spec); the probe is not planned, so a column of a
    field that needs the `let` does not say 'no field' as well."""
    text = SPEC.replace("args.skaddr as sock", "args.skaddr[ as sock")
    ctx = run(context(text), *passes.PASSES)
    assert [m for _, _, m in said(ctx)] == ["syntax error: '[' was never closed"]
    assert ctx.probes == [None]


def test_an_alternative_whose_target_is_missing_fails_its_probe() -> None:
    ctx = run(context(SPEC.replace("[tcp_v4_connect]", "[no_such_fn]")), *passes.PASSES)
    assert len(ctx.problems) == 1 and ctx.probes == [None]
