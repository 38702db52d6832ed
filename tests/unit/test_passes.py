"""engine.plan.passes: the order of the passes, and each has a module docstring."""

from __future__ import annotations

import pytest

from engine.plan import passes
from engine.plan.passes import attach, limits, names, outputs, resolve
from tests.plan_context import context, run


def test_the_passes_run_in_order() -> None:
    assert passes.PASSES[:5] == (names.run, attach.run, resolve.run, outputs.run, limits.run)
    ctx = run(context(), *passes.PASSES)
    assert ctx.problems == [] and [p.name for p in ctx.probes if p] == ["p"]


@pytest.mark.parametrize("step", passes.PASSES)
def test_every_pass_has_a_docstring_or_its_module_does(step: passes.Pass) -> None:
    module = __import__(step.__module__, fromlist=["_"])
    assert module.__doc__
