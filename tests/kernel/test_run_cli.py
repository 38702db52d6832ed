"""`engine run SPEC` usage on the running kernel: typed spec flags, help, one-line errors.

`engine run` plans against the running kernel's BTF (it has no --btf: it runs here), so these
need /sys/kernel/btf/vmlinux, not root; nothing is loaded, as a bad flag is refused before
anything is compiled. tests/unit/test_cli_options.py checks the same flags through
`engine render SPEC --btf FIXTURE`, on any machine. The non-root test drops to nobody.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import READY_TIMEOUT

from engine.kernel.btf import VMLINUX

REPO = Path(__file__).resolve().parents[2]
SPEC = "specs/tcpconnect.yaml"
NOBODY = 65534
SETPRIV_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(
        not os.path.exists(VMLINUX),
        reason=f"engine run plans against the running kernel's BTF; no {VMLINUX} here",
    ),
]


def engine(*args: str, prefix: tuple[str, ...] = (), env: dict | None = None):
    return subprocess.run(
        [*prefix, sys.executable, "-m", "engine.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=READY_TIMEOUT,  # it may compile and load: a minute on a loaded machine
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


@pytest.mark.parametrize(("args", "flag", "why"), BAD_FLAGS)
def test_bad_flag_value_is_one_line(args, flag, why):
    """cli.py promises "User mistakes end in one line on stderr": no multi-line usage dump."""
    r = engine("run", SPEC, *args)
    assert r.returncode == 2
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert flag in r.stderr


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
