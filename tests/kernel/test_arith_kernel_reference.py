"""Arithmetic computed in the kernel against tests/c_reference.py, an evaluator of C's and
BPF's rules written apart from the planner: random expressions (hypothesis) over the eight
integer types, 30 to a spec, compiled and run by one `engine run` per example; the test then
makes a syscall that does not exist (ENOSYS: nothing happens) with chosen arguments, which a
state map converts to u8..s64 at raw_syscalls/sys_enter, and compares every printed value of
sys_exit's row with the evaluator's. FUZZ_LONG=1 draws new examples (ARITH_EXAMPLES of them)."""

from __future__ import annotations

import ctypes
import os
import tempfile

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests import c_reference as R

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

LONG = os.environ.get("FUZZ_LONG") == "1"
EXAMPLES = int(os.environ.get("ARITH_EXAMPLES", "6"))
LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.syscall.restype = ctypes.c_long
# distinct first arguments: the row's `tag` (x.g) says which call it is
CALLS = st.lists(st.tuples(*[R.arguments()] * 6), min_size=6, max_size=6, unique_by=lambda a: a[0])


def no_such_syscall(args: tuple[int, ...]) -> None:
    result = LIBC.syscall(ctypes.c_long(R.NR), *(ctypes.c_ulong(a) for a in args))
    assert result == -1 and ctypes.get_errno() == 38  # ENOSYS


F, E, G = R.LEAVES[5], R.LEAVES[4], R.LEAVES[6]  # x.f: s32, x.e: u32, x.g: u64
# issue 17's three: an s32 + 1 that wraps before widening (clang assumed it did not: C leaves
# signed overflow undefined), `% (x - x)` (clang folded it to 0) and `x / x` (to 1) for x = 0
ISSUE = [
    R.Bin("+", R.Bin("+", F, R.Const(1)), R.Const(3000000000)),
    R.Bin("%", E, R.Bin("-", E, E)),
    R.Bin("/", G, G),
]
ISSUE_CALLS = [(0, 0, 0, 0, 7, 2147483647), (5, 0, 0, 0, 0, (1 << 64) - 1)]


@settings(
    max_examples=EXAMPLES,
    derandomize=not LONG,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
@example(exprs=ISSUE, calls=ISSUE_CALLS)
@given(exprs=st.lists(R.expressions(), min_size=30, max_size=30), calls=CALLS)
def test_kernel_values_are_the_references(engine, exprs: list[R.Node], calls: list) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(R.spec_text(exprs))
    try:
        e = engine(f.name, "-o", "json")
        for args in calls:
            no_such_syscall(args)
        result = e.stop()
    finally:
        os.unlink(f.name)
    assert result.code == 0, result.stderr
    rows = {row["tag"]: row for row in result.json_rows()}
    assert sorted(rows) == sorted(args[0] for args in calls)
    for args in calls:
        env = R.env_of(args)
        bad = [
            (R.text(x), rows[args[0]][f"e{i}"], R.evaluate(x, env))
            for i, x in enumerate(exprs)
            if rows[args[0]][f"e{i}"] != R.evaluate(x, env)
        ]
        assert not bad, (args, bad[:3])  # (expression, kernel, reference)
