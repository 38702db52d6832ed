"""docs/bcc-tools.md, bcc's tracing tools with each one's status here, is kept true by this test.

The table is the source (a fresh clone has nothing else to compare it with): its statuses are
well formed, the counts written above it and the table of what is missing agree with its rows,
every spec it names exists and validates (against the committed BTF fixture, as
tests/unit/test_spec_folders.py validates specs/; a spec marked `# live:` there needs the
running kernel: tests/kernel/test_bcc_tools_doc_live.py validates every named spec on it), and
every spec in specs/ is named, so a spec that lands without its row fails here.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from btf_fixture import BTF

from engine.verbs.validate import validate_path
from tests.unit.test_spec_folders import early_problems, needs_live_kernel

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "bcc-tools.md"
TOOLS_HEADER = "| tool | status | spec | hooks | notes |"
MISSING_HEADER = "| missing | tools |"
OTHER_HEADER = "| spec | what |"
STATUS = re.compile(r"spec|expressible|missing: \S.*")
SPEC_CELL = re.compile(r"`(specs/[a-z0-9_-]+\.yaml)`")
SHARE = re.compile(
    r"Expressible: \*\*(\d+) of (\d+) \((\d+)%\)\*\*: (\d+) ship as specs, (\d+) more are "
    r"expressible, (\d+) miss something\."
)
ISSUE19 = re.compile(
    r"Of the (\d+), (\d+) rest on issue 19's .*?; without them, (\d+) of (\d+) \((\d+)%\)", re.S
)
ISSUE19_NOTE = "issue 19:"
ISSUE20 = re.compile(
    r"Of the (\d+), (\d+) rest on issue\s+20's .*?; without them, (\d+) of (\d+) \((\d+)%\)", re.S
)
ISSUE20_NOTE = "issue 20:"


@dataclass(frozen=True)
class Tool:
    name: str
    status: str
    spec: str  # "specs/X.yaml" or ""
    hooks: str
    notes: str


def cells(line: str) -> list[str]:
    """A markdown table row's cells (`\\|` is a pipe inside a cell)."""
    inner = line.strip()
    assert inner.startswith("|") and inner.endswith("|"), line
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner[1:-1])]


def table(text: str, header: str) -> list[list[str]]:
    """The rows of the table whose header line is `header`, up to the first line that is not a
    row."""
    lines = text.splitlines()
    assert lines.count(header) == 1, f"{DOC.name} needs exactly one table headed {header}"
    start = lines.index(header) + 2  # the header, then its --- line
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(cells(line))
    return rows


def tools(text: str) -> list[Tool]:
    found = []
    for row in table(text, TOOLS_HEADER):
        assert len(row) == 5, row
        name, status, spec_cell, hooks, notes = row
        match = SPEC_CELL.fullmatch(spec_cell)
        assert spec_cell == "" or match, f"{name}: the spec cell is `specs/NAME.yaml` or empty"
        found.append(Tool(name, status, match.group(1) if match else "", hooks, notes))
    return found


def other_specs(text: str) -> list[str]:
    """The specs/ files of the "not bcc tools" table."""
    found = []
    for row in table(text, OTHER_HEADER):
        match = SPEC_CELL.fullmatch(row[0])
        assert match, row
        found.append(match.group(1))
    return found


def named_specs() -> list[str]:
    """Every spec the document names, each once, sorted (tests/kernel reuses this)."""
    text = DOC.read_text(encoding="utf-8")
    return sorted({t.spec for t in tools(text) if t.spec} | set(other_specs(text)))


TEXT = DOC.read_text(encoding="utf-8")
TOOLS = tools(TEXT)
NAMED = named_specs()
OFFLINE = [s for s in NAMED if (ROOT / s).is_file() and not needs_live_kernel(ROOT / s)]


def test_tools_are_unique_sorted_and_well_formed() -> None:
    names = [t.name for t in TOOLS]
    assert len(names) == len(set(names)), [n for n, c in Counter(names).items() if c > 1]
    assert names == sorted(names), "keep the rows in alphabetical order: they are found by eye"
    for t in TOOLS:
        assert STATUS.fullmatch(t.status), f"{t.name}: status {t.status!r}"
        assert t.hooks, f"{t.name}: hooks are empty"
        if t.status == "spec":
            assert t.spec, f"{t.name}: status spec names no spec"
        assert not (t.spec and t.status == "expressible"), f"{t.name}: names a spec: say spec"


def test_share_line_matches_the_rows() -> None:
    match = SHARE.search(TEXT)
    assert match, f"{DOC.name} needs the line: Expressible: **N of T (P%)**: ..."
    n, total, percent, specs, more, missing = (int(g) for g in match.groups())
    status = Counter("missing" if t.status.startswith("missing") else t.status for t in TOOLS)
    assert total == len(TOOLS)
    assert (specs, more, missing) == (status["spec"], status["expressible"], status["missing"])
    assert n == specs + more
    assert percent == round(100 * n / total)


def test_issue19_line_matches_the_notes() -> None:
    match = ISSUE19.search(TEXT)
    assert match, f"{DOC.name} needs the line: Of the N, M rest on issue 19's ..."
    n, issue19, without, total, percent = (int(g) for g in match.groups())
    expressible = [t for t in TOOLS if not t.status.startswith("missing")]
    assert n == len(expressible) and total == len(TOOLS)
    assert issue19 == sum(t.notes.startswith(ISSUE19_NOTE) for t in expressible)
    assert without == n - issue19
    assert percent == round(100 * without / total)


def test_issue20_line_matches_the_notes() -> None:
    match = ISSUE20.search(TEXT)
    assert match, f"{DOC.name} needs the line: Of the N, M rest on issue 20's ..."
    n, issue20, without, total, percent = (int(g) for g in match.groups())
    expressible = [t for t in TOOLS if not t.status.startswith("missing")]
    assert n == len(expressible) and total == len(TOOLS)
    assert issue20 == sum(t.notes.startswith(ISSUE20_NOTE) for t in expressible)
    assert without == n - issue20
    assert percent == round(100 * without / total)


def test_missing_table_matches_the_rows() -> None:
    listed = {what: int(count) for what, count in table(TEXT, MISSING_HEADER)}
    counted = Counter(t.status.removeprefix("missing: ") for t in TOOLS if t.status != "spec")
    del counted["expressible"]
    assert listed == dict(counted)


def test_every_named_spec_exists() -> None:
    assert NAMED, "the document names no spec"
    absent = [s for s in NAMED if not (ROOT / s).is_file()]
    assert not absent, f"{DOC.name} names specs that do not exist: {absent}"


def test_every_spec_in_specs_is_named() -> None:
    shipped = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "specs").glob("*.yaml"))
    unnamed = [s for s in shipped if s not in NAMED]
    assert not unnamed, f"add a row (status spec) or an 'other specs' row to {DOC.name}: {unnamed}"


@pytest.mark.parametrize("spec", OFFLINE)
def test_named_spec_validates(spec: str) -> None:
    """The validation tests/unit/test_spec_folders.py gives every good spec."""
    path = ROOT / spec
    assert early_problems(path) == []
    assert validate_path(str(path), btf_path=BTF) == []
