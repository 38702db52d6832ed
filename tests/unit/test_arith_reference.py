"""The planner's arithmetic against tests/c_reference.py, an evaluator written from C's and
BPF's rules: the type of every random expression, and which expressions are refused.
(tests/kernel/test_arith_kernel_reference.py compares the values the kernel computes.)
Planned against the committed BTF fixture (hermetic)."""

from __future__ import annotations

import pathlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import SpecError
from engine.plan import planner
from engine.spec.loader import load_text
from tests import c_reference as R

FIXTURE = str(
    pathlib.Path(__file__).resolve().parents[2] / "tests/fixtures/btf/linux-6.18.44-fc.btf.xz"
)
SETTINGS = settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)


def field_line(text: str, index: int) -> int:
    lines = text.splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.startswith(f"      e{index}: "))


def test_the_reference_gives_the_documented_values() -> None:
    """The issue's cases, under docs/spec.md's rules: s32 + 1 wraps (then + a long constant is
    an s64), x % 0 is x and x / 0 is 0 (BPF), `3000000000` is a long, `-1` converts to u64."""
    f, e, g, c = (R.LEAVES[i] for i in (5, 4, 6, 2))
    env = R.env_of((0, 0, 0x10000, 0, 7, 2147483647))
    cases = [
        (R.Bin("+", R.Bin("+", f, R.Const(1)), R.Const(3000000000)), "s64", 852516352),
        (R.Bin("%", e, R.Bin("-", e, e)), "u32", 7),
        (R.Bin("/", g, g), "u64", 0),
        (R.Bin("+", f, R.Const(3000000000)), "s64", 5147483647),
        (R.Bin("+", g, R.Const(-1)), "u64", (1 << 64) - 1),
        (R.Un("-", c), "s32", 0),  # c is a u16: 0x10000 converts to 0
        (R.Bin(">>", R.Un("-", f), R.Const(8)), "s32", -8388608),  # arithmetic shift
    ]
    for node, ctype, value in cases:
        assert (R.type_of(node).name, R.evaluate(node, env)) == (ctype, value), R.text(node)


@SETTINGS
@given(st.lists(R.expressions(), min_size=30, max_size=30))
def test_types_agree(exprs: list[R.Node]) -> None:
    plan = planner.plan(load_text(R.spec_text(exprs), "t.yaml"), FIXTURE)
    got = {f.name: f.ctype for f in plan.fields if f.name != "tag"}
    assert got == {
        f"e{i}": R.declared(e).name for i, e in enumerate(exprs)
    }  # a bare value: its own


def refused(node: R.Node) -> bool:
    try:
        R.type_of(node)
    except R.Refused:
        return True
    return False


@SETTINGS
@given(st.lists(R.expressions(valid=False), min_size=30, max_size=30))
def test_refusals_agree(exprs: list[R.Node]) -> None:
    text = R.spec_text(exprs)
    lines = {field_line(text, i): i for i in range(len(exprs))}
    try:
        planner.plan(load_text(text, "t.yaml"), FIXTURE)
        problems: set[int] = set()
    except SpecError as err:
        problems = {lines[p.location.line] for p in err.problems}
    assert problems == {i for i, e in enumerate(exprs) if refused(e)}
