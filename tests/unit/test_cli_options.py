"""CLI usage: typed, range-checked spec flags, help text, and clean one-line errors.

These run the real CLI in a subprocess and load nothing into the kernel. A spec's flags come
from planning it, here against the committed BTF fixture through `engine render SPEC --btf`;
the same flags of `engine run` (which plans against the running kernel) are checked in
tests/kernel/test_run_cli.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from btf_fixture import BTF

REPO = Path(__file__).resolve().parents[2]
SPEC = "specs/tcpconnect.yaml"


def engine(*args: str, prefix: tuple[str, ...] = (), env: dict | None = None):
    return subprocess.run(
        [*prefix, sys.executable, "-m", "engine.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


SPEC_FLAGS = [
    pytest.param(["-p", "abc"], "-p/--pid", "'abc' is not an integer (u32)", id="pid-not-int"),
    pytest.param(["-P", "70000"], "-P/--port", "70000 is out of range for u16", id="port-range"),
    pytest.param(["-P", "80,,81"], "-P/--port", "'80,,81' has an empty item", id="port-empty"),
    pytest.param(["-u", "-1"], "-u/--uid", "-1 is out of range for u32", id="uid-negative"),
    pytest.param(["--alternative", "x"], "--alternative", "invalid int value: 'x'", id="alt-x"),
    pytest.param(["-p", "٣"], "-p/--pid", "'٣' is not an integer (u32)", id="pid-arabic-digit"),
    pytest.param(["-p", "１２"], "-p/--pid", "'１２' is not an integer", id="pid-fullwidth"),
    pytest.param(["-p", "1\n2"], "-p/--pid", "'1\\n2' is not an integer", id="pid-newline"),
    pytest.param(
        ["-P", ",".join(["80"] * 32769)],
        "-P/--port",
        "32769 values; a list takes at most 32768",
        id="port-list-limit",
    ),
]


@pytest.mark.parametrize(("args", "flag", "why"), SPEC_FLAGS)
def test_bad_flag_value_is_one_line_exit_2(args: list[str], flag: str, why: str) -> None:
    """cli.py promises "User mistakes end in one line on stderr": exit 2, naming the flag."""
    r = engine("render", SPEC, "--btf", BTF, *args)
    assert (r.returncode, r.stdout) == (2, ""), r.stderr
    (line,) = r.stderr.splitlines()
    assert line.startswith(f"engine render: error: argument {flag}: "), r.stderr
    assert why in line, r.stderr


def test_render_spec_help_lists_spec_options() -> None:
    r = engine("render", SPEC, "--btf", BTF, "--help")
    assert (r.returncode, r.stderr) == (0, "")
    text = " ".join(r.stdout.split())  # argparse wraps long help lines
    for expected in [
        "-p PID, --pid PID trace this PID only (u32)",
        "-P PORT[,PORT...], --port PORT[,PORT...] comma-separated list of destination ports "
        "to trace (list of u16)",
        "-U, --print-uid include UID on output",
        "-t, --timestamp include timestamp on output",
        "-u UID, --uid UID trace this UID only (u32)",
        "options of spec 'tcpconnect':",
        "tcpconnect: Trace TCP active connects (connect()), like bcc's tcpconnect.",
    ]:
        assert expected in text, r.stdout


def test_run_missing_spec_file_exit_1():
    r = engine("run", "nonexistent.yaml")
    assert r.returncode == 1
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert "nonexistent.yaml" in lines[0]
    assert "Traceback" not in r.stderr


def test_top_level_help_lists_verbs():
    r = engine("--help")
    assert r.returncode == 0, r.stderr
    verbs = re.findall(r"^ {4}(\w+) {2,}\S", r.stdout, re.MULTILINE)
    assert verbs == ["run", "render", "validate", "explain", "doctor", "serve"], r.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["validate", "--btf", BTF, "--format", "json",
         *map(str, sorted(REPO.glob("tests/specs/bad/*.yaml")))],
        ["render", "specs/tcpconnect.yaml", "--btf", BTF],
        ["explain", "--btf", BTF, "struct sk_buff"],
    ],
    ids=["validate", "render", "explain"],
)  # fmt: skip
def test_closed_stdout_is_quiet(argv: list[str]) -> None:
    """`engine ... | head -c 20`: the reader went away, so the engine stops quietly: exit 0,
    nothing on stderr (no traceback, no 'Exception ignored'). The pipe's read end is closed
    before the engine starts, so its first write fails whatever the output's size."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "engine.cli", *argv],
            stdout=write, stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=60,
        )  # fmt: skip
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (0, "")
