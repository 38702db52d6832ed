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
    first = planner.M.Field("x", "u16", 0, "hex", "X", 5)
    fields.merge_field(ctx, got, first, at)
    fields.merge_field(ctx, got, planner.M.Field("x", "u32", 0, "hex", "X", 5), at)
    assert got == {"x": first} and "every alternative and probe" in ctx.problems[-1].message


def test_fields_merge_plain_integers_to_cs_common_type() -> None:
    """mount's `u64 flags` and umount's `int flags`: one slot, C's usual conversions of the
    promoted types (u8 and s8 meet in an s32, u64 and s32 in a u64)."""
    ctx = context()
    at = ctx.spec.probes[0].fields[0].at
    for a, b, want in (("u16", "u32", "u32"), ("u8", "s8", "s32"), ("u64", "s32", "u64")):
        got: dict[str, planner.M.Field] = {}
        fields.merge_field(ctx, got, planner.M.Field("x", a, 0, "int", "X", 5), at)
        fields.merge_field(ctx, got, planner.M.Field("x", b, 0, "int", "X", 5), at)
        assert got["x"].ctype == want
    assert not ctx.problems
