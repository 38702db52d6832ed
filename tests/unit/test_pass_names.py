"""engine.plan.passes.names: the pass on its own over a Context (tests/plan_context.py)."""

from __future__ import annotations

from engine.plan.passes import names
from tests.plan_context import SPEC, context, run, said


def test_names_plans_options_and_states() -> None:
    ctx = run(context(), names.run)
    assert ctx.options["port"].short == "-P" and ctx.options["wide"].long == "--wide"
    assert list(ctx.states) == ["start"] and ctx.problems == []


def test_names_refuses_an_engine_flag_and_a_second_probe_name() -> None:
    text = SPEC.replace("-P/--port", "-c/--port") + ""
    text = text.replace(
        "  - name: p\n", "  - name: p\n    attach: [{tracepoint: a/b}]\n  - name: p\n", 1
    )
    ctx = run(context(text), names.run)
    assert said(ctx) == [
        (3, 16, "option flag -c is the engine's own; pick another"),
        (10, 11, "probe name 'p' is already used by probe 1"),
    ]
