"""engine.pipeline: the one way in (load -> schema -> typed spec -> plan), planned once."""

from __future__ import annotations

import pathlib

import pytest

from engine import pipeline
from engine.errors import SpecError
from engine.plan import planner
from engine.verbs import validate

ROOT = pathlib.Path(__file__).resolve().parents[2]
BTF = str(ROOT / "tests/fixtures/btf/linux-6.18.44-fc.btf.xz")
SPEC = """\
name: t
options:
  quiet: {type: bool}
probes:
  - name: p
    attach:
      - tracepoint: sock/inet_sock_set_state
    fields:
      dport: args.dport
output:
  columns: [dport]
"""


def write(tmp_path: pathlib.Path, text: str) -> str:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    return str(path)


def test_check_gives_the_typed_spec_the_plan_and_the_warnings(tmp_path: pathlib.Path) -> None:
    checked = pipeline.check(write(tmp_path, SPEC), BTF)
    assert checked.spec.name == checked.plan.name == "t"
    assert [f.name for f in checked.plan.fields] == ["dport"]
    ((warning),) = checked.warnings
    assert "option 'quiet'" in warning.message
    assert checked.serve_problems() == []


def test_schema_problems_come_before_the_model(tmp_path: pathlib.Path) -> None:
    with pytest.raises(SpecError) as caught:
        pipeline.check(write(tmp_path, SPEC.replace("columns:", "colums:")), BTF)
    assert caught.value.problems[0].message.startswith("unknown key 'colums'")


def test_a_parse_error_is_said_with_the_planner_s(tmp_path: pathlib.Path) -> None:
    text = SPEC.replace("args.dport", "args.dport +")
    with pytest.raises(SpecError) as caught:
        pipeline.check(write(tmp_path, text), BTF)
    assert [p.location.line for p in caught.value.problems] == [
        9
    ]  # once: the column naming it stays quiet


def test_validate_plans_a_valid_spec_once(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = planner.plan_with_warnings

    def counted(spec: object, btf: str | None = None) -> object:
        calls.append(spec)
        return real(spec, btf)  # type: ignore[arg-type]

    monkeypatch.setattr(planner, "plan_with_warnings", counted)
    problems = validate.check_path(write(tmp_path, SPEC), BTF)
    assert [p.severity for p in problems] == ["warning"] and len(calls) == 1


def test_verdict_keeps_warnings_for_valid_specs(tmp_path: pathlib.Path) -> None:
    problems, warnings = pipeline.verdict(write(tmp_path, SPEC.replace("quiet", "q")), BTF)
    assert problems == [] and len(warnings) == 1
    problems, warnings = pipeline.verdict(write(tmp_path, SPEC.replace("args.dport", "nope")), BTF)
    assert problems and warnings == []
