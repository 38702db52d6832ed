"""The constant folder (engine.plan.arith.fold) computes only the operation asked for, so its
work and memory are bounded by the operands (at most 1000 characters of expression), and a
constant expression that C would refuse is one located problem, never a traceback.

Found by the fuzz suite (tests/fuzz): `3 + -1` ended in "negative shift count" and
`1 + 8589934592` took a gigabyte, because every operator's value was computed, `a << b` too.
"""

from __future__ import annotations

import pathlib
import tracemalloc
import warnings

import pytest

from engine.codegen import render
from engine.errors import SpecError
from engine.plan import planner
from engine.plan.arith import fold
from engine.plan.bind import bind
from engine.spec import expr as E
from engine.spec.loader import load_text

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = str(ROOT / "tests" / "fixtures" / "btf" / "linux-6.18.44-fc.btf.xz")
AT = " [$.probes[0].attach[0].where]"
SPEC = """\
name: t
probes:
  - name: p
    attach:
      - tracepoint: sock/inet_sock_set_state
        where: args.newstate == WHERE
    fields:
      pid: tgid
output:
  columns: [pid]
"""


def where_c(where: str) -> str:
    """The rendered `where` test of a spec whose where compares with `where`."""
    plan = planner.plan(load_text(SPEC.replace("WHERE", where), "t.yaml"), FIXTURE)
    text = render.render_c(bind(plan))
    return next(line.strip() for line in text.splitlines() if line.strip().startswith("if (!"))


def problems(where: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        planner.plan(load_text(SPEC.replace("WHERE", where), "t.yaml"), FIXTURE)
    return [p.format() for p in info.value.problems]


@pytest.mark.parametrize(
    ("where", "value"),
    [("3 + -1", 2), ("7 - -1", 8), ("3 * -1", -3), ("6 & -2", 6), ("1 | -8", -7), ("5 ^ -1", -6)],
)
def test_a_negative_right_operand_folds(where: str, value: int) -> None:
    assert where_c(where) == f"if (!(v1 == {value if value >= 0 else f'({value})'}))"


def test_folding_builds_no_other_operation() -> None:
    """`1 + 8589934592` is 8589934593; computing `1 << 8589934592` on the way took 1 GB."""
    tracemalloc.start()
    try:
        assert fold("+", 1, 8589934592) == 8589934593
        assert fold("|", 1, 1 << 40) == (1 << 40) + 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"folding two small numbers used {peak} bytes"


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("1 << -1", "t.yaml:6:35: error: a shift by -1 is outside 0..63" + AT),
        ("1 >> 64", "t.yaml:6:35: error: a shift by 64 is outside 0..63" + AT),
        ("1 << 8589934592", "t.yaml:6:35: error: a shift by 8589934592 is outside 0..63" + AT),
        ("5 % (3 - 3)", "t.yaml:6:35: error: division by zero (`% 0`)" + AT),
    ],
)
def test_a_constant_c_refuses_is_one_located_problem(where: str, message: str) -> None:
    assert problems(where) == [message]


@pytest.mark.parametrize(
    ("text", "message"),
    [("1and x", "invalid decimal literal"), ("0x1for x", "invalid hexadecimal literal")],
)
def test_a_number_run_into_a_word_is_an_error_not_a_warning(
    text: str, message: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """Python reads `1and x` as `1 and x` with a SyntaxWarning on stderr (found by the fuzz
    suite's arithmetic): one located error instead, and nothing on stderr."""
    with warnings.catch_warnings(), pytest.raises(E.ExprError, match=f"^syntax error: {message}$"):
        warnings.simplefilter("default")  # as outside the tests, where warnings only print
        E.parse(text)
    assert capfd.readouterr().err == ""
