"""Tracepoint fields named like Python keywords (ext4_remove_blocks `from`, xfs `pass`,
sys_enter_ioperm `from`): `args.from` is a member, not a syntax error; columns stay put."""

from __future__ import annotations

import pathlib

import pytest

from engine.plan import model as M
from engine.plan import planner
from engine.spec import expr as E
from engine.spec.loader import load_text

FIXTURE = str(
    pathlib.Path(__file__).resolve().parents[2] / "tests/fixtures/btf/linux-6.18.44-fc.btf.xz"
)


def test_keyword_members_parse_with_their_columns() -> None:
    node = E.parse('args.from == $lo and args.pass in [1, 2] and comm == "a.from"')
    assert node == E.BoolOp(
        "and",
        (
            E.Compare("==", E.Attr(E.Name("args", 0), "from", 5), E.Option("lo", 13), 0),
            E.Compare(
                "in",
                E.Attr(E.Name("args", 21), "pass", 26),
                E.ListOf((E.Num(1, 35), E.Num(2, 38)), 34),
                21,
            ),
            E.Compare("==", E.Name("comm", 45), E.Str("a.from", 53), 45),
        ),
        0,
    )


def test_a_keyword_elsewhere_is_still_refused() -> None:
    with pytest.raises(E.ExprError) as err:
        E.parse("from == 1")
    assert err.value.message == "syntax error: invalid syntax"


def test_a_keyword_field_plans() -> None:
    text = (
        "name: t\nprobes:\n  - name: p\n    attach:\n      - tracepoint: ext4/ext4_remove_blocks\n"
        "    fields:\n      first: args.from\n      last: args.to\noutput:\n  columns: [first]\n"
    )
    plan = planner.plan(load_text(text, "t.yaml"), FIXTURE)
    loads = [
        (s.offset, s.size)
        for f in plan.probes[0].alternatives[0].fields
        for s in f.steps
        if isinstance(s, M.Load)
    ]
    assert loads == [(24, 4), (28, 4)]  # ext4_lblk_t from, to
