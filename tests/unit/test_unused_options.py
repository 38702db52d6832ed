"""An option nothing uses is accepted but does nothing: `engine validate` warns (a located
`warning:` line, exit status 0), in every report format. Planned against the BTF fixture."""

from __future__ import annotations

import io
import json
import pathlib

import pytest

from engine import cli
from engine.plan import planner
from engine.spec.loader import load_text
from engine.verbs.validate import run_validate

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = str(ROOT / "tests" / "fixtures" / "btf" / "linux-6.18.44-fc.btf.xz")
SPEC = """\
name: t
options:
  port: {flag: -P/--port, type: u16}
  low: {flag: -l/--low, type: bool}
  stamp: {flag: -t/--timestamp, type: bool}
  quiet: {flag: -q, type: bool}
probes:
  - name: p
    attach:
      - tracepoint: sock/inet_sock_set_state
        where: args.protocol == IPPROTO_TCP
    fields:
      dport: args.dport
      time: ktime_ns
    filter: FILTER
output:
  columns: [dport, {field: time, if: stamp}]
"""


@pytest.fixture
def spec(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "t.yaml"
    path.write_text(SPEC.replace("FILTER", "dport < 1024"))
    return path


def warnings_of(text: str) -> list[str]:
    _, warnings = planner.plan_with_warnings(load_text(text, "t.yaml"), FIXTURE)
    return [f"{w.location.line}:{w.location.col}: {w.message}" for w in warnings]


def test_each_unused_option_is_one_located_warning() -> None:
    assert warnings_of(SPEC.replace("FILTER", "dport < 1024")) == [
        "3:3: option 'port' (-P/--port) is used by no filter, `where`, column or "
        "aggregation, so it does nothing; use it ($port) or remove it",
        "4:3: option 'low' (-l/--low) is used by no filter, `where`, column or "
        "aggregation, so it does nothing; use it ($low) or remove it",
        "6:3: option 'quiet' (-q) is used by no filter, `where`, column or "
        "aggregation, so it does nothing; use it ($quiet) or remove it",
    ]


def test_uses_in_filters_where_and_columns_count() -> None:
    text = SPEC.replace("FILTER", "dport == $port and ($low and dport < 1024)").replace(
        "IPPROTO_TCP", "IPPROTO_TCP and (not $quiet and args.sport > 0)"
    )
    assert warnings_of(text) == []


def test_validate_text_warns_and_exits_0(spec: pathlib.Path) -> None:
    out = io.StringIO()
    assert run_validate([str(spec)], FIXTURE, "text", out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        f"{spec}:3:3: warning: option 'port' (-P/--port) is used by no filter, `where`, "
        "column or aggregation, so it does nothing; use it ($port) or remove it [$.options.port]"
    )
    assert lines[3:] == [f"{spec}: ok", "1 spec checked: 1 valid, 0 invalid, 3 warnings"]


def test_validate_json_lists_warnings_apart(spec: pathlib.Path) -> None:
    out = io.StringIO()
    assert run_validate([str(spec)], FIXTURE, "json", out) == 0
    (report,) = json.loads(out.getvalue())["specs"]
    assert (report["valid"], report["problems"]) == (True, [])
    assert [(w["line"], w["col"], w["path"]) for w in report["warnings"]] == [
        (3, 3, "$.options.port"),
        (4, 3, "$.options.low"),
        (6, 3, "$.options.quiet"),
    ]


def test_validate_github_annotations_are_warnings(spec: pathlib.Path) -> None:
    out = io.StringIO()
    assert run_validate([str(spec)], FIXTURE, "github", out) == 0
    first = out.getvalue().splitlines()[0]
    assert first.startswith("::warning file=") and ",line=3,col=3," in first


def test_cli_exit_status_stays_0(spec: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", "--btf", FIXTURE, str(spec)]) == 0
    assert capsys.readouterr().out.count(": warning: ") == 3
