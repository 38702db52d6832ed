"""`engine validate` output: text, json and GitHub annotations, and the exit status."""

from __future__ import annotations

import io
import json
import pathlib

import pytest

from engine.errors import EngineError, Location, Problem, SpecError, UsageError
from engine.plan import planner
from engine.verbs.validate import run_validate, validate_path

GOOD = "name: x\nprobes:\n  - name: p\n    attach:\n      - tracepoint: a/b\n    fields:\n"
GOOD += "      pid: tgid\noutput:\n  columns: [pid]\n"


@pytest.fixture(autouse=True)
def no_semantics(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about formatting: keep the kernel's BTF out of them."""
    monkeypatch.setattr(planner, "plan_with_warnings", lambda spec, btf_path: (None, []))


@pytest.fixture
def specs(tmp_path: pathlib.Path) -> dict[str, str]:
    files = {
        "good.yaml": GOOD.encode(),
        "typo.yaml": GOOD.replace("columns:", "colums:").encode(),
        "binary.yaml": b"\x7fELF\x02\x01\x01\x00",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return {name: str(tmp_path / name) for name in files}


def run(paths: list[str], fmt: str) -> tuple[int, str]:
    out = io.StringIO()
    status = run_validate(paths, None, fmt, out)
    return status, out.getvalue()


TYPO = (
    "9:3: error: unknown key 'colums' in output; expected one of aggregations, columns, count,"
    " derived; did you mean 'columns'? [$.output.colums]"
)


def test_text_all_valid(specs: dict[str, str]) -> None:
    good = specs["good.yaml"]
    assert run([good], "text") == (0, f"{good}: ok\n1 spec checked: 1 valid, 0 invalid\n")


def test_text_with_problems(specs: dict[str, str]) -> None:
    good, typo, binary = specs["good.yaml"], specs["typo.yaml"], specs["binary.yaml"]
    status, text = run([good, typo, binary], "text")
    assert status == 1
    assert text.splitlines() == [
        f"{good}: ok",
        f"{typo}:{TYPO}",
        f"{binary}:1:8: error: not a text file (NUL byte at byte 8)",
        "3 specs checked: 1 valid, 2 invalid",
    ]


def test_one_typo_is_one_line(specs: dict[str, str]) -> None:
    """`colums` suggests `columns`, so "missing required key 'columns'" is not said again."""
    _, text = run([specs["typo.yaml"]], "text")
    assert "missing required key" not in text


def test_json(specs: dict[str, str]) -> None:
    good, typo = specs["good.yaml"], specs["typo.yaml"]
    status, text = run([good, typo, "/no/such/spec.yaml"], "json")
    assert status == 1
    assert json.loads(text) == {
        "specs": [
            {"file": good, "valid": True, "problems": [], "warnings": []},
            {
                "file": typo,
                "valid": False,
                "problems": [
                    {
                        "file": typo,
                        "line": 9,
                        "col": 3,
                        "path": "$.output.colums",
                        "message": "unknown key 'colums' in output; expected one of aggregations,"
                        " columns, count, derived; did you mean 'columns'?",
                    }
                ],
                "warnings": [],
            },
            {
                "file": "/no/such/spec.yaml",
                "valid": False,
                "problems": [
                    {
                        "file": "/no/such/spec.yaml",
                        "line": None,
                        "col": None,
                        "path": "$",
                        "message": "no such file",
                    }
                ],
                "warnings": [],
            },
        ],
        "valid": False,
    }


def test_json_all_valid(specs: dict[str, str]) -> None:
    status, text = run([specs["good.yaml"]], "json")
    assert status == 0
    assert json.loads(text)["valid"] is True


def test_github(specs: dict[str, str]) -> None:
    good, typo = specs["good.yaml"], specs["typo.yaml"]
    status, text = run([good, typo, "/no/such/spec.yaml"], "github")
    assert status == 1
    assert text.splitlines() == [
        f"{good}: ok",
        f"::error file={typo},line=9,col=3,title=engine validate::unknown key 'colums' in output;"
        " expected one of aggregations, columns, count, derived; did you mean 'columns'?"
        " [$.output.colums]",
        "::error file=/no/such/spec.yaml,title=engine validate::no such file",
        "3 specs checked: 1 valid, 2 invalid",
    ]


def test_github_escaping(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    """Workflow commands: % CR LF in the message; also : and , in properties."""
    path = str(tmp_path / "a,b:c%.yaml")
    problem = Problem("100% wrong,\r\nreally: yes", Location(path, 2, 3))
    monkeypatch.setattr("engine.verbs.validate.check_path", lambda path, btf: [problem])
    status, text = run([path], "github")
    assert status == 1
    escaped = str(tmp_path).replace(":", "%3A").replace(",", "%2C") + "/a%2Cb%3Ac%25.yaml"
    assert text.splitlines()[0] == (
        f"::error file={escaped},line=2,col=3,title=engine validate::100%25 wrong,%0D%0Areally: yes"
    )


def test_unknown_format() -> None:
    with pytest.raises(UsageError, match="unknown format 'xml'"):
        run([], "xml")


def test_no_specs_is_valid() -> None:
    assert run([], "text") == (0, "0 specs checked: 0 valid, 0 invalid\n")


def test_semantics_run_only_on_schema_clean_specs(
    specs: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    semantic = Problem("no kernel function 'x'", Location(specs["good.yaml"], 5, 21))

    def plan(spec: object, btf_path: str | None) -> object:
        calls.append(getattr(spec, "file", ""))
        raise SpecError([semantic])

    monkeypatch.setattr(planner, "plan_with_warnings", plan)
    assert validate_path(specs["good.yaml"], None) == [semantic]
    assert validate_path(specs["typo.yaml"], None)[0].message.startswith("unknown key 'colums'")
    assert calls == [specs["good.yaml"]]


def test_planner_engine_errors_propagate(
    specs: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def plan(spec: object, btf_path: str | None) -> object:
        raise EngineError("cannot read BTF: /nope: no such file")

    monkeypatch.setattr(planner, "plan_with_warnings", plan)
    with pytest.raises(EngineError, match="cannot read BTF"):
        run([specs["good.yaml"]], "text")
