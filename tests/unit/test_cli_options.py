"""`engine run` usage: typed, range-checked spec flags, help text, and clean one-line errors.

These run the real CLI in a subprocess but load nothing into the kernel: a bad flag is refused
before anything is compiled. The spec's flags come from planning it against kernel BTF, so
they need /sys/kernel/btf/vmlinux (not root). The non-root test drops to nobody with setpriv.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPEC = "specs/tcpconnect.yaml"
NOBODY = 65534
SETPRIV_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]

needs_btf = pytest.mark.skipif(
    not os.path.exists("/sys/kernel/btf/vmlinux"),
    reason="needs kernel BTF at /sys/kernel/btf/vmlinux",
)


def engine(*args: str, prefix: tuple[str, ...] = (), env: dict | None = None):
    return subprocess.run(
        [*prefix, sys.executable, "-m", "engine.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


BAD_FLAGS = [
    pytest.param(["-p", "abc"], "-p/--pid", "'abc' is not an integer (u32)", id="pid-not-int"),
    pytest.param(["-P", "70000"], "-P/--port", "70000 is out of range for u16", id="port-range"),
    pytest.param(["-P", "80,,81"], "-P/--port", "'80,,81' has an empty item", id="port-empty"),
    pytest.param(["-u", "-1"], "-u/--uid", "-1 is out of range for u32", id="uid-negative"),
    pytest.param(["-o", "xml"], "-o/--output", "invalid choice: 'xml'", id="output-xml"),
    pytest.param(["--duration", "0"], "--duration", "must be above 0", id="duration-zero"),
]


@needs_btf
@pytest.mark.parametrize(("args", "flag", "why"), BAD_FLAGS)
def test_bad_flag_value_exit_2_names_flag(args, flag, why):
    r = engine("run", SPEC, *args)
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    assert "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1, r.stderr
    assert errors[0].startswith(f"engine run: error: argument {flag}: "), r.stderr
    assert why in errors[0], r.stderr


@needs_btf
@pytest.mark.parametrize(("args", "flag", "why"), BAD_FLAGS)
def test_bad_flag_value_is_one_line(args, flag, why):
    """cli.py promises "User mistakes end in one line on stderr": no multi-line usage dump."""
    r = engine("run", SPEC, *args)
    assert r.returncode == 2
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert flag in r.stderr


@needs_btf
def test_run_spec_help_lists_spec_options():
    r = engine("run", SPEC, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    text = " ".join(r.stdout.split())  # argparse wraps long help lines
    for expected in [
        "-p PID, --pid PID trace this PID only (u32)",
        "-P PORT[,PORT...], --port PORT[,PORT...] comma-separated list of destination ports "
        "to trace (list of u16)",
        "-U, --print-uid include UID on output",
        "-t, --timestamp include timestamp on output",
        "-u UID, --uid UID trace this UID only (u32)",
        "-c, --count count events in the kernel by the spec's count keys; print the table on "
        "exit (and every --interval)",
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
    assert verbs == ["run", "render", "validate", "explain", "doctor"], r.stdout


@needs_btf
def test_run_not_root_exit_1_one_line():
    if os.geteuid() == 0:
        probe = subprocess.run(
            [*SETPRIV_NOBODY, sys.executable, "-c", f"import os; os.listdir({str(REPO)!r})"],
            capture_output=True,
            timeout=30,
        )
        if probe.returncode != 0:
            pytest.skip(f"nobody cannot use {sys.executable} or read {REPO}")
        prefix: tuple[str, ...] = tuple(SETPRIV_NOBODY)
    else:
        prefix = ()
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": "/nonexistent"}
    r = engine("run", SPEC, prefix=prefix, env=env)
    assert r.returncode == 1, r.stderr
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert "root" in lines[0] and "CAP_BPF" in lines[0], r.stderr
    assert lines[0].startswith("engine: error: "), r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["validate", "--format", "json", *map(str, sorted(REPO.glob("tests/specs/bad/*.yaml")))],
        ["render", "specs/tcpconnect.yaml"],
        ["explain", "struct sk_buff"],
    ],
)  # fmt: skip
def test_closed_stdout_is_quiet(argv: list[str]) -> None:
    """`engine ... | head -c 20`: no traceback, no 'Exception ignored' noise."""
    engine = [sys.executable, "-m", "engine.cli", *argv]
    done = subprocess.run(
        ["bash", "-c", 'set -o pipefail; "$@" | head -c 20 >/dev/null', "sh", *engine],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert "Traceback" not in done.stderr and "Exception" not in done.stderr, done.stderr
