"""Comparisons as values and `a if test else b` (engine.plan.resolve test/select): C's types
(a comparison is an int; the arms take their usual arithmetic conversions), the C they
become, and the refusals: an `$option` (a comparison with it drops out when not given), a
state read that would act whichever arm is chosen, and a filter (one C condition)."""

from __future__ import annotations

import pytest

from engine.errors import SpecError
from engine.plan import planner
from engine.spec import expr as E
from engine.spec.loader import load_text
from tests.unit.test_arith import FIXTURE, c_of, plan, problems


def test_parse_keeps_the_three_parts_and_the_if_column() -> None:
    node = E.parse("args.sport if args.sport > 0 else 7")
    assert isinstance(node, E.IfElse)
    assert isinstance(node.test, E.Compare) and isinstance(node.other, E.Num)
    assert node.col == len("args.sport ")


@pytest.mark.parametrize(
    ("expr", "ctype"),
    [
        ("args.sport > args.dport", "s32"),  # a comparison is an int
        ("not args.sport", "s32"),
        ("args.sport > 1 and args.dport < 9", "s32"),
        ("args.sport if args.sport else args.dport", "s32"),  # u16 arms promote to int
        ("args.sport if args.sport else 3000000000", "s64"),  # the literal is a long
        ("(args.sport > 5) + (args.dport > 5)", "s32"),  # a count of true conditions
        ("7 if 1 else args.sport", "s32"),  # a constant test still types as C does
    ],
)
def test_types(expr: str, ctype: str) -> None:
    assert plan(expr).fields[0].ctype == ctype


def test_the_c() -> None:
    c = c_of("args.sport if args.sport > args.dport else -1")
    assert "? 1 : 0;" in c
    assert "(s32)(-1)" in c.replace("((-1))", "(-1)")


def test_a_constant_test_picks_the_arm_at_run_time_in_the_arms_type() -> None:
    # `(-1 if 1 else x_u32)` is 4294967295 in C (u32), never -1
    c = c_of("-1 if 1 else pid")  # pid: a u32
    line = next(x for x in c.splitlines() if " ? " in x and "(u32)" in x)
    assert "1 ?" in line and "4294967295U" in line


@pytest.mark.parametrize(
    ("expr", "want"),
    [
        ("args.sport if args.sport > 0", "syntax error: expected 'else' after 'if' expression"),
        ("1 if args.sport == 2 else 0 if x else 1", "unknown name 'x'"),
        ("args.skaddr if args.sport else 0", "3: the arms of `if ... else` are numbers, not a"),
    ],
)
def test_parse_and_name_errors(expr: str, want: str) -> None:
    assert any(want in p for p in problems(expr)), problems(expr)


def test_an_option_in_a_value_is_refused_at_it() -> None:
    spec = """\
name: t
options:
  port: {flag: -P, type: u16}
probes:
  - name: p
    attach:
      - tracepoint: sock/inet_sock_set_state
    fields:
      x: args.sport if args.sport == $port else 0
output:
  columns: [x]
"""
    with pytest.raises(SpecError) as info:
        planner.plan(load_text(spec, "t.yaml"), FIXTURE)
    (p,) = info.value.problems
    assert (p.location.line, p.location.col) == (9, 38)
    assert p.message.startswith("$port cannot be part of a value: compare it in a filter")
