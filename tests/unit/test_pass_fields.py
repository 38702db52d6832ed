"""engine.plan.passes.fields: the pass on its own over a Context (tests/plan_context.py)."""

from __future__ import annotations

from engine.plan import planner
from engine.plan.passes import attach, fields, names, resolve
from tests.plan_context import SPEC, context, run, said


def test_fields_decode_and_say_what_does_not_fit() -> None:
    ctx = run(context(), names.run, attach.run, resolve.run)
    dport = ctx.fields["dport"]
    assert (dport.ctype, dport.decoder, dport.header) == ("u16", "int", "DPORT")
    text = SPEC.replace("decode: be16", "decode: be32")
    ctx = run(context(text), names.run, attach.run, resolve.run)
    assert any("needs a 4-byte integer" in m for _, _, m in said(ctx))
    assert ctx.probes == [None]


def test_fields_merge_refuses_two_types_for_one_field() -> None:
    ctx = context()
    at = ctx.spec.probes[0].fields[0].at
    got: dict[str, planner.M.Field] = {}
    first = planner.M.Field("x", "u16", 0, "int", "X", 5)
    fields.merge_field(ctx, got, first, at)
    fields.merge_field(ctx, got, planner.M.Field("x", "u32", 0, "int", "X", 5), at)
    assert got == {"x": first} and "every alternative and probe" in ctx.problems[-1].message
