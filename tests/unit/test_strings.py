"""String comparisons: `comm == "curl"` and `comm == $name` become byte compares with the
string's bytes as numbers; nothing of the text reaches C. Mistakes are located errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from btf_fixture import BTF

from engine.codegen.render import c_expr
from engine.errors import UsageError
from engine.plan import model as M
from engine.plan.bind import bind, bind_expr
from engine.spec import expr as E
from engine.verbs.validate import validate_path

COMM = "ev.f_comm"

SPEC = """\
name: strings
options:
  name: {flag: -n/--name, type: str}
  pid: {flag: -p, type: u32}
probes:
  - name: p
    attach:
      - tracepoint: sched/sched_process_exec
    fields:
      comm: comm
      pid: tgid
      file: args.filename
    filter: FILTER
output:
  columns: [comm, pid, file]
"""


def test_parser_keeps_strings() -> None:
    tree = E.parse('comm == "curl"')
    assert tree == E.Compare("==", E.Name("comm", 0), E.Str("curl", 8), 0)


def test_emitter_compares_bytes_and_the_terminator() -> None:
    eq = M.CStrEq(COMM, b"ab", 16)
    assert c_expr(eq) == f"({COMM}[0] == 97 && {COMM}[1] == 98 && {COMM}[2] == 0)"
    assert c_expr(M.CStrEq(COMM, b"ab", 16, negate=True)) == f"(!{c_expr(eq)})"
    full = M.CStrEq("ev.f_x", b"abcd", 4)  # fills the slot: no terminator to check
    assert c_expr(full) == "(ev.f_x[0] == 97 && ev.f_x[1] == 98 && ev.f_x[2] == 99 && " \
        "ev.f_x[3] == 100)"  # fmt: skip


def test_binding_a_string_option() -> None:
    expr = M.CStrEq(COMM, M.COption("name", "str", False), 16)
    assert bind_expr(expr, {}) == M.CTrue()
    assert bind_expr(expr, {"name": "ping"}) == M.CStrEq(COMM, b"ping", 16)
    with pytest.raises(UsageError, match=r"^-n/--name: 'x{16}' is longer than the field holds"):
        bind_expr(expr, {"name": "x" * 16}, {"name": "-n/--name"})


def problems(tmp_path: Path, filt: str) -> list[str]:
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.replace("FILTER", filt))
    return [
        f"{p.location.line}:{p.location.col}: {p.message}" for p in validate_path(str(spec), BTF)
    ]


@pytest.mark.parametrize(
    ("filt", "message"),
    [
        (
            'comm == "' + "x" * 16 + '"',
            "13:21: 'xxxxxxxxxxxxxxxx' is longer than the field holds (15 characters), "
            "so it never matches",
        ),
        (
            'comm < "a"',
            '13:13: strings compare with == or != (and match with `"x" in FIELD`, '
            "startswith, endswith, glob)",
        ),
        ('pid == "a"', "13:20: a string can only be compared with a string field, not a 'u32'"),
        ("pid == $name", "13:20: $name is a string; compare it with a string field such as comm"),
        ("comm == $pid", "13:21: $pid is a u32, not a string"),
        ("comm == 3", '13:21: match a string field with a "string" or a string $option'),
        (
            'comm == "a" or comm == $name',
            "13:28: a comparison with $name can only be joined with `and` "
            "(it drops out when the option is not given)",
        ),
    ],
)  # fmt: skip
def test_string_mistakes_are_located(tmp_path: Path, filt: str, message: str) -> None:
    assert problems(tmp_path, filt) == [message]


def test_file_names_compare_too(tmp_path: Path) -> None:
    from engine.plan import planner
    from engine.spec.loader import load_document

    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.replace("FILTER", 'comm != "sh" and file == "/bin/true"'))
    plan = planner.plan(load_document(str(spec)), BTF)
    program = bind(plan)
    filt = program.probes[0].filter
    assert isinstance(filt, M.CBool)
    assert [type(t) for t in filt.terms] == [M.CStrEq, M.CStrEq]
    assert filt.terms[1] == M.CStrEq("ev.f_file", b"/bin/true", 64)
