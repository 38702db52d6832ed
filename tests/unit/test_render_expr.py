"""The expression-to-C emitter (engine.codegen.render.c_expr / c_number), on hand-built trees.

No kernel needed. What must hold: every sub-expression is parenthesized (so `and`/`or`/`not`
nesting can never be re-associated by C precedence), `in` lists expand to ==-chains,
numbers are typed literals (64-bit ones suffixed, negatives parenthesized), and an
unbound option placeholder can never be emitted.
"""

from __future__ import annotations

import re

import pytest

from engine.codegen.render import c_expr, c_number
from engine.plan import model as M
from engine.plan.values import ctype_range

CTYPES = ("u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64")
A, B, C = M.CVar("ev.a", "u32"), M.CVar("ev.b", "u16"), M.CVar("v3", "s64")


def eq(var: M.CVar, value: int) -> M.CCompare:
    return M.CCompare("==", var, M.CNum(value, var.ctype))


# --- numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ctype", "text"),
    [
        (0, "u8", "0U"),
        (255, "u8", "255U"),
        (65535, "u16", "65535U"),
        (4294967295, "u32", "4294967295U"),
        (18446744073709551615, "u64", "18446744073709551615ULL"),
        (1, "u64", "1ULL"),
        (0, "s8", "0"),
        (-128, "s8", "(-128)"),
        (-1, "s32", "(-1)"),
        (2147483647, "s32", "2147483647"),
        (-2147483648, "s32", "(-2147483648)"),
        (9223372036854775807, "s64", "9223372036854775807LL"),
        (-5, "s64", "(-5LL)"),
    ],
)
def test_c_number(value: int, ctype: str, text: str) -> None:
    assert c_number(M.CNum(value, ctype)) == text


def test_c_number_int64_min_stays_signed() -> None:
    assert c_number(M.CNum(-(1 << 63), "s64")) == "(-9223372036854775807LL - 1)"


LITERAL = re.compile(r"^(\(-\d+(LL)?( - 1)?\)|\d+(U|ULL|LL)?)$")


@pytest.mark.parametrize("ctype", CTYPES)
def test_edge_values_are_plain_integer_literals(ctype: str) -> None:
    lo, hi = ctype_range(ctype)
    for value in {lo, lo + 1, -1 if lo else 0, 0, 1, hi - 1, hi}:
        text = c_number(M.CNum(value, ctype))
        assert LITERAL.match(text), (ctype, value, text)
        digits = re.sub(r"[^\d-]", "", text.split(" - ")[0])
        assert int(digits) in (value, value + 1)


# --- operators and nesting ------------------------------------------------------------------


def test_compare_is_parenthesized() -> None:
    assert c_expr(eq(A, 5)) == "(ev.a == 5U)"
    for op in ("==", "!=", "<", "<=", ">", ">="):
        assert c_expr(M.CCompare(op, C, M.CNum(-3, "s64"))) == f"(v3 {op} (-3LL))"


def test_var_to_var_compare() -> None:
    assert c_expr(M.CCompare("<", A, B)) == "(ev.a < ev.b)"


def test_and_inside_or_keeps_its_grouping() -> None:
    tree = M.CBool("||", (M.CBool("&&", (eq(A, 1), eq(B, 2))), eq(A, 3)))
    assert c_expr(tree) == "(((ev.a == 1U) && (ev.b == 2U)) || (ev.a == 3U))"


def test_or_inside_and_keeps_its_grouping() -> None:
    tree = M.CBool("&&", (eq(A, 1), M.CBool("||", (eq(B, 2), eq(B, 3)))))
    assert c_expr(tree) == "((ev.a == 1U) && ((ev.b == 2U) || (ev.b == 3U)))"


def test_not_wraps_whole_operand() -> None:
    tree = M.CNot(M.CBool("||", (eq(A, 1), eq(B, 2))))
    assert c_expr(tree) == "(!((ev.a == 1U) || (ev.b == 2U)))"
    assert c_expr(M.CNot(M.CNot(eq(A, 1)))) == "(!(!(ev.a == 1U)))"


def test_deep_nesting_balances() -> None:
    tree: M.CExpr = eq(A, 0)
    for depth in range(1, 30):
        op = "&&" if depth % 2 else "||"
        tree = M.CNot(M.CBool(op, (tree, eq(B, depth))))
    text = c_expr(tree)
    level = 0
    for ch in text:
        level += {"(": 1, ")": -1}.get(ch, 0)
        assert level >= 0
    assert level == 0
    assert text.count("!") == 29


def test_true_is_a_parenthesized_one() -> None:
    assert c_expr(M.CTrue()) == "(1)"


# --- `in` and `not in` --------------------------------------------------------------------


def test_in_list_expands_to_equalities() -> None:
    tree = M.CIn(B, (M.CNum(80, "u16"), M.CNum(443, "u16")))
    assert c_expr(tree) == "(ev.b == 80U || ev.b == 443U)"


def test_not_in_negates_the_whole_chain() -> None:
    tree = M.CIn(B, (M.CNum(80, "u16"), M.CNum(443, "u16")), negate=True)
    assert c_expr(tree) == "(!(ev.b == 80U || ev.b == 443U))"


def test_in_single_and_empty() -> None:
    assert c_expr(M.CIn(A, (M.CNum(7, "u32"),))) == "(ev.a == 7U)"
    assert c_expr(M.CIn(A, ())) == "(0)"
    assert c_expr(M.CIn(A, (), negate=True)) == "(1)"


def test_in_with_negative_64_bit_members() -> None:
    tree = M.CIn(C, (M.CNum(-1, "s64"), M.CNum(1 << 40, "s64")))
    assert c_expr(tree) == "(v3 == (-1LL) || v3 == 1099511627776LL)"


def test_in_inside_and_with_not() -> None:
    tree = M.CBool("&&", (M.CNot(M.CIn(B, (M.CNum(22, "u16"),))), eq(A, 9)))
    assert c_expr(tree) == "((!(ev.b == 22U)) && (ev.a == 9U))"


# --- placeholders never reach C -------------------------------------------------------------


def test_unbound_option_cannot_render() -> None:
    with pytest.raises(ValueError, match=r"\$pid"):
        c_expr(M.CCompare("==", A, M.COption("pid", "u32", False)))
    with pytest.raises(ValueError, match=r"\$port"):
        c_expr(M.CIn(B, M.COption("port", "u16", True)))
    with pytest.raises(ValueError, match=r"\$port"):
        c_expr(M.CBool("&&", (eq(A, 1), M.CIn(B, M.COption("port", "u16", True)))))


def test_not_an_expression() -> None:
    with pytest.raises(TypeError):
        c_expr("ev.a == 1")  # type: ignore[arg-type]
