"""Bool options (switches) in filters: `$low and dport < 1024` applies only when -l is given,
and drops out without it, like a comparison with an option that was not given.

`not $all and ...` applies only when the switch is absent. A switch starts its `and`; joined
with other conditions it goes in parentheses. Misuse is one located error that says how.
Planned against the committed BTF fixture (hermetic).
"""

from __future__ import annotations

import pathlib

import pytest

from engine.codegen import render
from engine.errors import SpecError
from engine.plan import bind as B
from engine.plan import model as M
from engine.plan import planner
from engine.spec.loader import load_text

FIXTURE = str(
    pathlib.Path(__file__).resolve().parents[2] / "tests/fixtures/btf/linux-6.18.44-fc.btf.xz"
)
SPEC = """\
name: t
options:
  port: {flag: -P/--port, type: u16}
  low: {flag: -l/--low, type: bool}
  all: {flag: -a/--all, type: bool}
probes:
  - name: p
    attach:
      - tracepoint: sock/inet_sock_set_state
        where: WHERE
    fields:
      dport: args.dport
      sport: args.sport
    filter: FILTER
output:
  columns: [dport, sport]
"""
DPORT = M.CVar("ev.f_dport", "u16")
SPORT = M.CVar("ev.f_sport", "u16")


def plan(filt: str, where: str = "args.protocol == IPPROTO_TCP") -> M.Plan:
    text = SPEC.replace("FILTER", filt).replace("WHERE", where)
    return planner.plan(load_text(text, "t.yaml"), FIXTURE)


def bound(filt: str, **values: object) -> M.CExpr:
    return B.bind_expr(plan(filt).probes[0].filter, values)  # type: ignore[arg-type]


def lt(var: M.CVar, n: int) -> M.CCompare:
    return M.CCompare("<", var, M.CNum(n, "u16"))


def test_a_switch_guards_its_and() -> None:
    filt = "dport == $port and ($low and dport < 1024 and sport < 1024)"
    both = M.CBool("&&", (lt(DPORT, 1024), lt(SPORT, 1024)))
    port = M.CCompare("==", DPORT, M.CNum(80, "u16"))
    assert bound(filt, port=80, low=True) == M.CBool("&&", (port, both))
    assert bound(filt, port=80, low=False) == port
    assert bound(filt, low=False) == M.CTrue()
    assert bound(filt) == M.CTrue()  # absent from the values: not given
    assert bound(filt, low=True) == both


def test_the_whole_filter_can_be_guarded() -> None:
    assert bound("$low and dport < 1024", low=True) == lt(DPORT, 1024)
    assert bound("$low and dport < 1024", low=False) == M.CTrue()


def test_not_switch_applies_when_absent() -> None:
    filt = "not $all and dport < 1024"
    assert bound(filt, all=False) == lt(DPORT, 1024)
    assert bound(filt, all=True) == M.CTrue()


def test_two_switches_both_needed() -> None:
    filt = "$low and not $all and dport < 1024"
    assert bound(filt, low=True, all=False) == lt(DPORT, 1024)
    assert bound(filt, low=True, all=True) == M.CTrue()
    assert bound(filt, low=False, all=False) == M.CTrue()


@pytest.mark.parametrize(
    ("low", "all_", "applies"),
    [(False, False, False), (True, False, True), (False, True, True), (True, True, True)],
)
def test_either_switch_guards(low: bool, all_: bool, applies: bool) -> None:
    filt = "dport == $port and (($low or $all) and dport < 1024)"
    want = lt(DPORT, 1024) if applies else M.CTrue()
    assert bound(filt, low=low, all=all_) == want
    # `not` in an alternative: it holds when the switch is absent
    want = lt(DPORT, 1024) if (low or not all_) else M.CTrue()
    assert bound("($low or not $all) and dport < 1024", low=low, all=all_) == want


def test_either_switch_guard_renders_once() -> None:
    p = plan("($low or $all) and dport < 1024")
    for values in ({"low": True}, {"all": True}, {"low": True, "all": True}):
        c = render.render_c(B.bind(p, options=values))
        assert c.count("ev.f_dport < 1024") == 1, values
    assert "1024" not in render.render_c(B.bind(p, options={}))


def test_a_switch_or_a_condition_is_no_guard() -> None:
    with pytest.raises(SpecError) as info:
        plan("($low or dport > 5) and sport < 3")
    (problem,) = info.value.problems
    assert "a condition guarded by $low (-l/--low) can only be joined with `and`" in problem.message


def test_a_switch_in_where() -> None:
    p = plan("dport == $port", where="$low and args.sport < 1024")
    where = p.probes[0].alternatives[0].where
    assert isinstance(B.bind_expr(where, {"low": False}), M.CTrue)
    on = B.bind_expr(where, {"low": True})
    assert isinstance(on, M.CCompare) and on.op == "<" and on.right == M.CNum(1024, "u16")


def test_rendered_c_with_and_without_the_switch() -> None:
    p = plan("$low and dport < 1024")
    off = render.render_c(B.bind(p, options={"low": False}))
    on = render.render_c(B.bind(p, options={"low": True}))
    assert "1024" not in off
    assert "(ev.f_dport < 1024U)" in on


def problem(filt: str) -> tuple[int, str]:
    with pytest.raises(SpecError) as err:
        plan(filt)
    (p,) = err.value.problems
    return p.location.col, p.message


def test_a_switch_not_first_in_its_and() -> None:
    # line 14 is `    filter: ...`; the value starts at column 13
    col, message = problem("dport == $port and $low and dport < 1024")
    assert (col, message) == (
        13 + 19,
        "$low (-l/--low) guards the `and` it starts, so it comes first: "
        "`$low and CONDITION`; joined with other conditions, in parentheses: "
        "`OTHER and ($low and CONDITION)`",
    )


def test_a_switch_alone() -> None:
    assert problem("$low") == (
        13,
        "$low (-l/--low) alone guards nothing: write `$low and CONDITION` "
        "(CONDITION then applies only when -l/--low is given)",
    )


def test_a_switch_under_or() -> None:
    col, message = problem("dport < 5 or ($low and dport < 1024)")
    assert (col, message) == (
        13 + 14,
        "a condition guarded by $low (-l/--low) can only be joined with `and` "
        "(it drops out when the switch is off)",
    )


def test_a_switch_compared() -> None:
    col, message = problem("dport == $low")
    assert (col, message) == (
        13 + 9,
        "$low (-l/--low) is a switch, not a value: let it guard a condition, `$low and CONDITION`",
    )


def test_a_value_option_as_a_guard() -> None:
    assert problem("$port and dport < 1024") == (
        13,
        "$port is a u16 value, not a switch: compare it, as in `FIELD == $port`",
    )


def test_the_docs_example_is_killsnoops() -> None:
    """docs/spec.md shows killsnoop's -x (a fragment; tests/kernel/test_switch_filter_run.py
    runs the spec): every line of it is in the spec."""
    root = pathlib.Path(__file__).resolve().parents[2]
    docs = (root / "docs" / "spec.md").read_text()
    block = docs[docs.index("```\noptions:\n  failed:") + 4 :]
    block = block[: block.index("```")]
    spec = (root / "tests" / "specs" / "live" / "killsnoop.yaml").read_text().splitlines()
    shown = [line for line in block.splitlines() if line and line != "..."]
    assert len(shown) == 4 and all(line in spec for line in shown), shown


def test_arithmetic_under_a_switch_is_inlined() -> None:
    """A guarded term's arithmetic becomes part of the filter's one C expression, like any
    other (it once kept the local `v1`, rendered before anything declared it)."""
    p = plan("$low and sport / 2 > 5")
    on = render.render_c(B.bind(p, options={"low": True}))
    (line,) = [x.strip() for x in on.splitlines() if "if (!" in x and "ev.f_sport" in x]
    assert line == "if (!(((s32)((u32)ev.f_sport / (u32)2)) > 5))"
    assert render.render_c(B.bind(p, options={"low": False})).count("ev.f_sport /") == 0


def test_every_filter_node_kind_has_a_case() -> None:
    """inline() refuses a node kind it does not know instead of leaving its locals behind."""
    from engine.plan.arith import inline

    class Unknown:
        pass

    with pytest.raises(TypeError, match="no case for Unknown"):
        inline(Unknown(), [])  # type: ignore[arg-type]


def test_a_field_read_only_through_filter_arithmetic_is_stored_before_the_filter() -> None:
    """bind selects the steps of the fields the filter reads (slots_read) to run before it: a
    field inside the filter's arithmetic is one of them (CArith's operands are typed operands,
    walked as its children), so its slot is filled before the test reads it."""
    p = plan("sport / 2 > 5")
    program = B.bind(p)
    (probe,) = program.probes
    assert "f_sport" in {s.dest.partition(".")[2] for s in probe.pre}
    c = render.render_c(program)
    store, test = c.index("ev.f_sport = "), c.index("ev.f_sport / ")
    assert store < test
