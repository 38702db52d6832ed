"""`engine run`'s own flags refuse what used to run forever or reach clang: --duration nan, inf
and 1e308, --wakeup 2**64; exit 2 with one line naming the flag, nothing loaded (the refusal
comes before anything is compiled). The whole value space is covered in process by
tests/unit/test_cli_options_generated.py; these go through the real command."""

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

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(not os.path.exists(VMLINUX), reason=f"engine run needs {VMLINUX}"),
]

RUN_FLAGS = [
    pytest.param(["--duration", "nan"], "--duration", "'nan' is not a number", id="duration-nan"),
    pytest.param(["--duration", "inf"], "--duration", "'inf' is not a number", id="duration-inf"),
    pytest.param(["--duration", "1e308"], "--duration", "at most 31622400", id="duration-1e308"),
    pytest.param(["--interval", "-1"], "--interval", "'-1' is not a number", id="interval-neg"),
    pytest.param(
        ["--wakeup", "18446744073709551616"],
        "--wakeup",
        "18446744073709551616 is out of range (0..65536)",
        id="wakeup-2**64",
    ),
    pytest.param(["--buffer-pages", "١٦"], "--buffer-pages", "is not a number", id="pages-digit"),
    pytest.param(["-p", "٣"], "-p/--pid", "'٣' is not an integer (u32)", id="pid-arabic-digit"),
]


@pytest.mark.parametrize(("args", "flag", "why"), RUN_FLAGS)
def test_run_flag_value_refused_in_one_line(args: list[str], flag: str, why: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", SPEC, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=READY_TIMEOUT,  # it may compile and load: a minute on a loaded machine
    )
    assert (r.returncode, r.stdout) == (2, ""), r.stderr
    (line,) = r.stderr.splitlines()
    assert line.startswith(f"engine run: error: argument {flag}: "), r.stderr
    assert why in line, r.stderr
