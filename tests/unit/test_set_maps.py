"""List options: up to SET_INLINE values stay a chain of == in the C; more become a hash set
map (declared once, looked up in the filter, values kept out of the C and filled by the
runner); values the compared type cannot hold are left out of the set."""

from __future__ import annotations

import pytest
from btf_fixture import BTF

from engine.codegen import render
from engine.plan import model as M
from engine.plan import planner
from engine.plan.bind import SET_INLINE, bind, in_list
from engine.spec.loader import load_document


@pytest.fixture(scope="module")
def plan() -> M.Plan:
    return planner.plan(load_document("specs/tcpconnect.yaml"), BTF)


def test_few_values_stay_inline(plan: M.Plan) -> None:
    ports = list(range(1000, 1000 + SET_INLINE))
    program = bind(plan, options={"port": ports})
    c = render.render_c(program)
    assert program.sets == ()
    assert "set_port" not in c
    assert f"== {1000 + SET_INLINE - 1}U" in c


def test_many_values_become_one_set_map(plan: M.Plan) -> None:
    ports = [*range(1000, 1001 + SET_INLINE), 1000]  # a duplicate
    program = bind(plan, options={"port": ports})
    c = render.render_c(program)
    assert program.sets == (M.SetMap("set_port", "u16", tuple(range(1000, 1001 + SET_INLINE))),)
    assert c.count("BPF_HASH(set_port, u16, u8, 9);") == 1
    assert "set_port.lookup(&(u16){ev.f_dport})" in c
    assert "1004" not in c  # the values are not in the C


def test_set_keeps_only_values_of_the_compared_type() -> None:
    left = M.CVar("ev.f_x", "u8")
    expr = in_list(left, "x", "u16", [1, 255, 256, 70, 300, 2, 3, 4, 5], negate=True)
    assert expr == M.CInSet(left, M.SetMap("set_x", "u8", (1, 2, 3, 4, 5, 70, 255)), True)
    assert render.c_expr(expr) == "(!(set_x.lookup(&(u8){ev.f_x}) != 0))"
