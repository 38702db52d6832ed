"""SPEC and flags in any order: `engine run -o json SPEC`, `engine render --alternative 2 SPEC`,
`engine run -P 80 SPEC` (a spec option's value before the spec) all find the spec.

The CLI used to take the first token not starting with `-` as the spec (`json: error: no such
file`). Rendering against the committed BTF fixture makes these hermetic; the expected C is
the golden file rendered with the same choices (tests/golden/regenerate.py: -p 1234 -P 80,443).
"""

from __future__ import annotations

import pathlib
import shutil

import pytest

from engine import cli, pipeline

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = str(ROOT / "tests" / "fixtures" / "btf" / "linux-6.18.44-fc.btf.xz")
SPEC = "specs/tcpconnect.yaml"
GOLDEN = ROOT / "tests" / "golden"


@pytest.fixture(autouse=True)
def in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def render(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["render", *argv])
    out, err = capsys.readouterr()
    return code, out, err


ORDERS = [
    pytest.param(
        ["--alternative", "2", "--btf", FIXTURE, "-p", "1234", "-P", "80,443", SPEC], id="spec-last"
    ),
    pytest.param(
        [SPEC, "--alternative", "2", "--btf", FIXTURE, "-p", "1234", "-P", "80,443"],
        id="spec-first",
    ),
    pytest.param(
        ["-P", "80,443", SPEC, "--btf", FIXTURE, "--alternative", "2", "-p", "1234"],
        id="spec-middle",
    ),
    pytest.param(
        ["--btf", FIXTURE, "-p", "1234", "--port=80,443", "--alternative=2", SPEC], id="equals"
    ),
    pytest.param(
        ["--alternative", "2", "--btf", FIXTURE, "-p", "1234", "-P", "80,443", "--", SPEC],
        id="dashdash",
    ),
]


@pytest.mark.parametrize("argv", ORDERS)
def test_any_order_renders_the_golden(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = render(capsys, *argv)
    assert (code, err) == (0, "")
    assert out == (GOLDEN / "tcpconnect.2.events.c").read_text()


def test_count_mode_flag_before_spec(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = render(capsys, "-c", "-p", "1234", "-P", "80,443", "--btf", FIXTURE, SPEC)
    assert (code, err) == (0, "")
    assert out == (GOLDEN / "tcpconnect.1.count.c").read_text()


def test_a_spec_without_yaml_suffix_is_found_as_a_file(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    spec = tmp_path / "tcpconnect"
    shutil.copy(ROOT / SPEC, spec)
    code, out, err = render(capsys, "-p", "1234", "-P", "80,443", "--btf", FIXTURE, str(spec))
    assert (code, err) == (0, "")
    assert out == (GOLDEN / "tcpconnect.1.events.c").read_text()


def test_a_missing_spec_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    # `80` follows a flag the pre-parse does not know (a spec option): not taken as SPEC
    code, out, err = render(capsys, "-P", "80", "--btf", FIXTURE, "nosuch")
    assert (code, out) == (1, "")
    assert err == "nosuch: error: no such file\n"


def test_no_spec_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:  # argparse's exit, as in the console script
        render(capsys, "--alternative", "2", "--btf", FIXTURE)
    out, err = capsys.readouterr()
    assert (done.value.code, out) == (2, "")
    assert err == (
        "engine render: error: the following arguments are required: SPEC "
        "(see engine render --help)\n"
    )


@pytest.mark.parametrize(
    ("argv", "spec"),
    [
        (["-o", "json", "x.yaml"], "x.yaml"),
        (["--duration", "1", "x.yaml"], "x.yaml"),
        (["-P", "80", "x.yaml"], "x.yaml"),
        (["-P", "80", "x"], "x"),  # 80 follows an unknown flag: a value, probably
        (["--wakeup=4", "-c", "x.yml", "-u", "0"], "x.yml"),
        (["-o", "json"], None),
        (["--", "-x.yaml"], "-x.yaml"),
        (["--name", "a.yaml", "b.yaml"], "b.yaml"),  # a.yaml may be --name's value
        (["--name", "a.yaml"], "a.yaml"),
    ],
)
def test_find_spec(argv: list[str], spec: str | None) -> None:
    assert cli.find_spec(cli.spec_parser("run", None), argv) == spec


def test_help_states_the_rule(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert (
        "SPEC may come before, between or after the flags: it is the first argument "
        "ending in .yaml or .yml, else the first naming a file (in each case preferring one "
        "that does not follow a spec option's flag" in text
    )


@pytest.fixture
def run_plans_on_the_fixture(monkeypatch: pytest.MonkeyPatch) -> None:
    """`run` has no --btf (it runs here): plan its spec against the committed fixture as
    `render --btf` does, so the test neither reads nor depends on this kernel's BTF."""
    real = pipeline.check
    monkeypatch.setattr(pipeline, "check", lambda spec, btf=None: real(spec, btf or FIXTURE))


@pytest.mark.usefixtures("run_plans_on_the_fixture")
@pytest.mark.parametrize(
    "argv",
    [
        ["-o", "json", "--ebpf", SPEC],
        ["--duration", "1", "--ebpf", SPEC],
        ["-P", "80", "--ebpf", SPEC],
        ["--ebpf", SPEC, "-o", "json"],
    ],
)
def test_run_finds_the_spec_after_flags(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert cli.main(["run", *argv]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith("// Generated by engine from spec 'tcpconnect' (events mode).")
