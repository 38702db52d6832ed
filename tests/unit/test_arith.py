"""Arithmetic in expressions (engine.plan.arith): C's width and signedness rules, the
validation errors clang or the verifier would otherwise hit, and the C it becomes."""

from __future__ import annotations

import pathlib

import pytest

from engine.codegen import render
from engine.errors import SpecError
from engine.plan import planner
from engine.plan.arith import common, fold, literal_type, promoted, wrap
from engine.plan.bind import bind
from engine.spec.loader import load_text
from engine.spec.schema import check_schema

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = str(ROOT / "tests" / "fixtures" / "btf" / "linux-6.18.44-fc.btf.xz")

SPEC = """\
name: t
probes:
  - name: p
    attach:
      - tracepoint: sock/inet_sock_set_state
    fields:
      x: {value: EXPR}
output:
  columns: [x]
"""


def plan(expr: str):  # type: ignore[no-untyped-def]
    doc = load_text(SPEC.replace("EXPR", expr), "t.yaml")
    assert check_schema(doc) == []
    return planner.plan(doc, FIXTURE)


def problems(expr: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        plan(expr)
    return [f"{p.location.col}: {p.message}" for p in info.value.problems]


def c_of(expr: str) -> str:
    return render.render_c(bind(plan(expr)))


def test_type_rules() -> None:
    assert promoted("u8") == "s32" and promoted("u16") == "s32" and promoted("u32") == "u32"
    assert common("u32", "s32") == "u32"
    assert common("s64", "u32") == "s64"
    assert common("u64", "s64") == "u64"
    assert wrap(-1, "u32") == 0xFFFFFFFF and wrap(0x80000000, "s32") == -(1 << 31)
    assert fold("/", -7, 2) == -3 and fold("%", -7, 2) == -1  # C truncates toward zero


def test_field_type_follows_the_operands() -> None:
    f = plan("args.sport + args.dport").fields[0]  # u16 + u16 -> s32 (promotion)
    assert f.ctype == "s32"
    assert plan("ktime_ns - 5").fields[0].ctype == "u64"
    assert plan("args.oldstate * 2").fields[0].ctype == "s32"
    assert plan("(ktime_ns >> 10) & 0xff").fields[0].ctype == "u64"


def test_rendered_c_is_typed() -> None:
    text = c_of("(ktime_ns - 5) / 1000")
    assert "u64 v2 = (u64)((u64)v1 - (u64)5ULL);" in text
    assert "u64 v3 = (u64)((u64)v2 / (u64)1000ULL);" in text
    assert "~" in c_of("~ktime_ns")


def test_signed_arithmetic_wraps_in_the_c() -> None:
    """C leaves signed overflow undefined (clang assumed `s32 + 1` never wraps and widened
    it: 2147483647 + 1 + 3000000000 printed 5147483648); the C computes + - * << and unary -
    in the unsigned type of the width, and converts back: two's complement, as documented."""
    text = c_of("(args.oldstate + 1) * 3 - (args.oldstate << 2)")
    assert "s32 v2 = (s32)((u32)v1 + (u32)1);" in text
    assert "s32 v3 = (s32)((u32)v2 * (u32)3);" in text
    assert "s32 v4 = (s32)((u32)v1 << (u32)2);" in text
    assert "s32 v5 = (s32)((u32)v3 - (u32)v4);" in text
    assert "s32 v2 = (s32)(-(u32)v1);" in c_of("-args.oldstate")
    assert "s32 v2 = (s32)((s32)v1 >> (s32)2);" in c_of("args.oldstate >> 2")  # arithmetic


def test_a_division_by_a_variable_is_bpfs() -> None:
    """BPF: x / 0 == 0, x % 0 == x; C leaves both undefined (clang folded `x % (x - x)` to
    0 and `x / x` to 1), so the C says it: a division by a variable tests it first."""
    text = c_of("ktime_ns / (ktime_ns - ktime_ns)")
    assert "u64 v3 = (u64)((u64)v2 != 0 ? (u64)v1 / (u64)v2 : 0);" in text
    text = c_of("ktime_ns % ktime_ns")
    assert "u64 v2 = (u64)((u64)v1 != 0 ? (u64)v1 % (u64)v1 : (u64)v1);" in text
    assert "u64 v2 = (u64)((u64)v1 / (u64)1000ULL);" in c_of("ktime_ns / 1000")  # no test


def test_constants_fold() -> None:
    text = c_of("ktime_ns + (1 << 12)")
    assert "(u64)4096ULL" in text and "<<" not in text


def test_validation_errors() -> None:
    assert problems("ktime_ns / 0") == ["27: division by zero (`/ 0`)"]
    assert problems("ktime_ns % (2 - 2)") == ["27: division by zero (`% 0`)"]
    assert problems("args.sport << 32") == ["29: an s32 shifted by 32: the amount must be 0..31"]
    assert problems("ktime_ns >> 64") == ["27: a u64 shifted by 64: the amount must be 0..63"]
    assert problems("args.oldstate / 2") == [
        "32: `/` on a signed s32: BPF has no signed division; divide unsigned values "
        "(a difference of u64 times is unsigned)"
    ]
    assert problems("1 / 0") == ["20: division by zero (`/ 0`)"]
    assert problems("ktime_ns + 99999999999999999999") == [
        "29: 99999999999999999999 does not fit 64 bits (-9223372036854775808..18446744073709551615)"
    ]
    assert problems("ktime_ns ** 2") == ["18: `**` and `@` are not allowed; use * and shifts"]


def test_constants_take_c_literal_types() -> None:
    """A constant is typed as C types a decimal literal (s32, s64, u64), then the usual
    arithmetic conversions apply; a negative constant with an unsigned operand wraps as in C."""
    assert literal_type(5) == "s32" and literal_type(-(1 << 31)) == "s32"
    assert literal_type(1 << 31) == "s64" and literal_type(1 << 63) == "u64"
    assert plan("args.sport + 3000000000").fields[0].ctype == "s64"  # C: int + long
    assert plan("args.family & 0xffffffff").fields[0].ctype == "s64"
    assert plan("ktime_ns + -1").fields[0].ctype == "u64"
    assert "u64 v2 = (u64)((u64)v1 + (u64)18446744073709551615ULL);" in c_of("ktime_ns + -1")


def test_division_of_values_that_cannot_be_negative_is_unsigned() -> None:
    """u16 / 2 is an s32 division in C, but neither side can be negative: BPF's unsigned
    divide gives C's value, and the result keeps C's type."""
    assert plan("args.sport / 2").fields[0].ctype == "s32"
    assert "s32 v2 = (s32)((u32)v1 / (u32)2);" in c_of("args.sport / 2")
    assert "s32 v2 = (s32)((u32)v1 % (u32)7);" in c_of("args.sport % 7")
    assert problems("args.sport / -2")[0].startswith("29: `/` on a signed s32")


def test_pointers_are_not_numbers() -> None:
    msg = (
        "arithmetic on a 'const void *' is not supported (numbers only; C would scale a "
        "pointer by its pointee's size)"
    )
    assert problems("args.skaddr + 1") == [f"23: {msg}"]  # at the member
    assert problems("-args.skaddr") == [f"24: {msg}"]
    assert problems("1 << args.skaddr") == [f"28: {msg}"]


FILTER_SPEC = """\
name: t
probes:
  - name: p
    attach:
      - tracepoint: sock/inet_sock_set_state
        where: (args.sport >> 8) == 7
    fields:
      x: args.sport
      t: ktime_ns
    filter: FILTER
output:
  columns: [x, t]
"""


def filter_c(text: str) -> str:
    doc = load_text(FILTER_SPEC.replace("FILTER", text), "t.yaml")
    c = render.render_c(bind(planner.plan(doc, FIXTURE)))
    return next(line.strip() for line in c.splitlines() if "ev.f_" in line and "if (!" in line)


def test_arithmetic_in_a_filter_is_one_typed_expression() -> None:
    """A filter is a single C condition over the event's slots, so its arithmetic is inlined
    as a typed tree (CArith), with the same casts as the `arith` step."""
    assert filter_c("t / 1000 > 5 and (x & 1) == 0") == (
        "if (!((((u64)((u64)ev.f_t / (u64)1000ULL)) > 5ULL) && "
        "(((s32)((s32)ev.f_x & (s32)1)) == 0)))"
    )
    assert filter_c("-x < 0") == "if (!(((s32)(-(u32)ev.f_x)) < 0))"  # wraps: see below
    assert filter_c("t % (t - 1) == 3") == (
        "if (!(((u64)((u64)((u64)((u64)ev.f_t - (u64)1ULL)) != 0 ? (u64)ev.f_t % "
        "(u64)((u64)((u64)ev.f_t - (u64)1ULL)) : (u64)ev.f_t)) == 3ULL))"
    )
    assert filter_c("x / 2 == 3") == "if (!(((s32)((u32)ev.f_x / (u32)2)) == 3))"


def test_filter_errors() -> None:
    def errors(text: str) -> list[str]:
        doc = load_text(FILTER_SPEC.replace("FILTER", text), "t.yaml")
        with pytest.raises(SpecError) as info:
            planner.plan(doc, FIXTURE)
        return [f"{p.location.col}: {p.message}" for p in info.value.problems]

    assert errors("t % 0 == 1") == ["15: division by zero (`% 0`)"]
    assert errors("x << 40 == 1") == ["15: an s32 shifted by 40: the amount must be 0..31"]
    # names other than fields used to reach the C as undeclared locals
    assert errors("task.pid + x > 0") == [
        "18: the filter can use this probe's fields and $options; put other conditions in "
        "an alternative's `where`"
    ]


def test_a_constant_expression_compares_like_a_literal() -> None:
    """`x == 1 << 4` and `x in [1 << 4, 3]`: the folded constant is range-checked against the
    field's type as a literal is."""
    assert filter_c("x == 1 << 4") == "if (!(ev.f_x == 16U))"
    assert filter_c("x in [1 << 4, 3]") == "if (!(ev.f_x == 16U || ev.f_x == 3U))"
    doc = load_text(FILTER_SPEC.replace("FILTER", "x == 1 << 20"), "t.yaml")
    with pytest.raises(SpecError) as info:
        planner.plan(doc, FIXTURE)
    assert [p.message for p in info.value.problems] == ["1048576 does not fit a u16 (0..65535)"]


def test_a_narrow_bitfield_promotes_to_s32() -> None:
    """C promotes a 4-bit bitfield to int: ip.version - 5 is -1, not 2^64 - 1 (the engine
    reads bitfields into 64-bit locals, so the type is set by the arithmetic)."""
    spec = """\
name: t
probes:
  - name: p
    attach:
      - tracepoint: net/net_dev_queue
        let:
          skb: args.skbaddr as sk_buff
          ip: network_header(skb) as iphdr
    fields:
      x: ip.version - 5
output:
  columns: [x]
"""
    p = planner.plan(load_text(spec, "t.yaml"), FIXTURE)
    assert p.fields[0].ctype == "s32"
    assert "s32 v10 = (s32)((u32)v9 - (u32)5);" in render.render_c(bind(p))
