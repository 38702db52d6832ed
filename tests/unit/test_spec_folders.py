"""Spec folders as tests: tests/specs/bad/*.yaml say their problems in `# expect:` lines.

A bad spec's first comment lines hold one `# expect: LINE:COL: MESSAGE` per problem (or
`# expect: MESSAGE` for a problem about the whole file); `{btf}` stands for the BTF file's
path, as messages name it. Problems from loading and the schema
need nothing and must always match; semantic problems are found against the committed BTF
fixture (tests/btf_fixture.py), so every spec is checked on every machine. A bad spec whose
comment says `# live:` needs the running kernel (syscalls/* records come from its tracefs):
tests/kernel/test_bad_live_specs.py checks it there.
"""

from __future__ import annotations

import pathlib
import re

import pytest
from btf_fixture import BTF

from engine.errors import Problem, SpecError
from engine.spec.loader import load_document
from engine.spec.schema import check_schema
from engine.verbs.validate import validate_path

ROOT = pathlib.Path(__file__).resolve().parents[2]
LIVE = re.compile(r"#\s*live:")


def needs_live_kernel(path: pathlib.Path) -> bool:
    """A `# live:` line in the spec's first comment block."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            return False
        if LIVE.match(line):
            return True
    return False


ALL_BAD = sorted((ROOT / "tests" / "specs" / "bad").glob("*.yaml"))
BAD = [p for p in ALL_BAD if not needs_live_kernel(p)]
LIVE_BAD = [p for p in ALL_BAD if needs_live_kernel(p)]
GOOD = sorted((ROOT / "tests" / "specs" / "good").glob("*.yaml")) + [
    p for p in sorted((ROOT / "specs").glob("*.yaml")) if not needs_live_kernel(p)
]
EXPECT = re.compile(r"#\s*expect:\s*(.*\S)")


def expectations(path: pathlib.Path) -> list[str]:
    """The `# expect:` lines of the comment block a bad spec starts with."""
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        match = EXPECT.match(line)
        if match:
            found.append(match.group(1).replace("{btf}", BTF))
    return found


def short(problem: Problem) -> str:
    where = problem.location
    return f"{where.line}:{where.col}: {problem.message}" if where.line else problem.message


def early_problems(path: pathlib.Path) -> list[Problem]:
    """What loading and the schema say: no kernel needed."""
    try:
        return check_schema(load_document(str(path)))
    except SpecError as error:
        return error.problems


def test_folders_are_not_empty() -> None:
    assert len(BAD) >= 15
    assert len(GOOD) >= 4


@pytest.mark.parametrize("path", BAD, ids=[p.name for p in BAD])
def test_bad_spec(path: pathlib.Path) -> None:
    expected = expectations(path)
    assert expected, f"{path.name} has no '# expect:' line"
    got = [short(p) for p in validate_path(str(path), btf_path=BTF)]
    assert sorted(got) == sorted(expected)


@pytest.mark.parametrize("path", GOOD, ids=[p.parent.name + "/" + p.name for p in GOOD])
def test_good_spec(path: pathlib.Path) -> None:
    assert early_problems(path) == []
    assert validate_path(str(path), btf_path=BTF) == []
