"""String matching in filters (engine.plan.strmatch): the checks a pattern gets (the same for a
constant at validation and an option's value at run time), the resolver's located errors, and
the C's shape. tests/kernel/test_string_match.py compares the kernel's answers with Python's."""

from __future__ import annotations

import pytest

from engine.codegen import render
from engine.errors import SpecError, UsageError
from engine.plan import planner, strmatch
from engine.plan.bind import bind
from engine.spec.loader import load_text
from tests.unit.test_arith import FIXTURE

SPEC = """\
name: t
options:
  name: {flag: -n, type: str}
  port: {flag: -P, type: u16}
probes:
  - name: p
    attach:
      - tracepoint: sock/inet_sock_set_state
    fields:
      comm: comm
      sport: args.sport
    filter: 'FILTER'
output:
  columns: [comm, sport]
"""


def plan(filt: str):  # type: ignore[no-untyped-def]
    return planner.plan(load_text(SPEC.replace("FILTER", filt), "t.yaml"), FIXTURE)


def problems(filt: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        plan(filt)
    return [f"{p.location.col}: {p.message}" for p in info.value.problems]


def test_pattern_checks() -> None:
    assert strmatch.problem("prefix", b"", 16) == "an empty pattern matches every string"
    assert strmatch.problem("eq", b"", 16) == ""  # the empty name
    assert "longer than the field holds (15 characters)" in strmatch.problem(
        "contains", b"x" * 16, 16
    )
    assert strmatch.problem("glob", b"*" * 20 + b"x", 16) == ""  # stars match nothing too
    assert "`[...]` is not supported" in strmatch.problem("glob", b"[ab]*", 16)


@pytest.mark.parametrize(
    ("filt", "kind"),
    [
        ('comm == "a"', "eq"),
        ('"ss" in comm', "contains"),
        ('"ss" not in comm', "contains"),
        ("$name in comm", "contains"),
        ('startswith(comm, "ss")', "prefix"),
        ('endswith(comm, "d")', "suffix"),
        ('contains(comm, "sh")', "contains"),
        ('glob(comm, "s*d")', "glob"),
    ],
)
def test_kinds(filt: str, kind: str) -> None:
    f = plan(filt).probes[0].filter
    found = f.term if hasattr(f, "term") else f
    assert found.kind == kind and found.negate == ("not in" in filt)


def test_the_c_loops_are_bounded_by_the_slot() -> None:
    c = render.render_c(bind(plan('glob(comm, "s*sh*d")')))
    assert "while (_n < 16 && ev.f_comm[_n]) _n++;" in c
    assert "for (u32 _i = 0; _i + 2 <= 16; _i++)" in c
    c = render.render_c(bind(plan('"ssh" in comm')))
    assert "for (u32 _i = 0; _i + 3 <= 16; _i++) { if (!ev.f_comm[_i]) break;" in c


@pytest.mark.parametrize(
    ("filt", "want"),
    [
        ('"ss" in sport', "14: a substring match needs a string field of this probe"),
        ('startswith(comm, "a", "b")', '14: startswith(FIELD, "TEXT") takes two arguments'),
        ('endswith(comm, "x" * 2)', '33: match a string field with a "string"'),
        ("$port in comm", "14: $port is a u16: `$OPTION in FIELD` takes a string option"),
        ('comm < "b"', "14: strings compare with == or != (and match with"),
        ('glob(comm, "[ab]")', "25: a glob takes `*` (any characters) and `?`"),
        ('"thisisfarfarfartoolong" in comm', "14: 'thisisfarfarfartoolong' is longer than"),
        ("sport == 1 or $name in comm", "28: a comparison with $name can only be joined"),
    ],
)
def test_errors(filt: str, want: str) -> None:
    got = problems(filt)
    assert any(p.startswith(want) for p in got), got


def test_an_options_value_gets_the_same_checks() -> None:
    p = plan("$name in comm")
    with pytest.raises(UsageError, match="-n: 'abcdefghijklmnopq' is longer than the field"):
        bind(p, options={"name": "abcdefghijklmnopq"})
    assert "ev.f_comm[_i] == 120" in render.render_c(bind(p, options={"name": "x"}))
    assert "ev.f_comm" not in render.render_c(bind(p, options={})).split("if (!")[-1][:40]
