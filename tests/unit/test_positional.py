"""Positional options (`flag: min_us`, no dash: bcc's `runqslower [min_us]`): given after SPEC,
before or after flags, with its default when absent; --help and errors name its METAVAR; one
value only (not a switch or a list)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_arith import FIXTURE

SPEC = """\
name: slow
options:
  min_us: {flag: min_us, type: u64, default: 10000, help: smallest latency shown}
  pid: {flag: -p/--pid, type: s32, help: this pid only}
probes:
  - name: p
    attach:
      - tracepoint: sched/sched_process_exit
    fields:
      pid: args.pid
      prio: args.prio
    filter: pid == $pid and prio > $min_us
output:
  columns: [pid, prio]
"""


def engine(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    spec = tmp_path / "slow.yaml"
    spec.write_text(SPEC)
    argv = [sys.executable, "-m", "engine.cli", "render", str(spec), "--btf", FIXTURE, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "value"),
    [((), "10000"), (("77",), "77"), (("-p", "5", "77"), "77"), (("77", "-p", "5"), "77")],
)
def test_the_value_reaches_the_filter(tmp_path: Path, args: tuple[str, ...], value: str) -> None:
    done = engine(tmp_path, *args)
    assert done.returncode == 0, done.stderr
    assert f"> {value}" in done.stdout


def test_help_and_errors_name_the_metavar(tmp_path: Path) -> None:
    help_text = engine(tmp_path, "--help").stdout
    assert "MIN_US" in help_text and "default 10000" in help_text
    bad = engine(tmp_path, "x")
    assert bad.returncode == 2
    assert "argument MIN_US: 'x' is not an integer (u64)" in bad.stderr
    extra = engine(tmp_path, "1", "2")
    assert extra.returncode == 2 and "unrecognized arguments: 2" in extra.stderr


def test_a_positional_switch_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(SPEC.replace("type: u64, default: 10000", "type: bool"))
    argv = [sys.executable, "-m", "engine.cli", "validate", str(spec), "--btf", FIXTURE]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "3:18: error: a positional option (`flag: min_us`, no dash) takes one value" in (
        done.stdout + done.stderr
    )
