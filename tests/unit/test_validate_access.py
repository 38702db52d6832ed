"""`engine validate` is what CI pipelines run: it needs neither root nor bcc, and with
`--btf FILE` it checks specs against another kernel's BTF, offline (tests/unit/test_btf_flag.py
checks against a synthetic kernel that the file is what is used)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from btf_fixture import BTF

from tests.live_specs import offline

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted(str(p.relative_to(ROOT)) for p in offline((ROOT / "specs").glob("*.yaml")))
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/"}
    return subprocess.run(
        [*NOBODY, sys.executable, "-m", "engine.cli", *args],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )  # fmt: skip


def test_validate_specs_as_nobody() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to become nobody")
    probe = as_nobody("--version")
    if probe.returncode != 0:
        pytest.skip(f"nobody cannot run the engine from {ROOT}: {probe.stderr.strip()[-200:]}")
    done = as_nobody("validate", "--btf", BTF, *SPECS)
    assert done.returncode == 0, done.stdout + done.stderr
    n = len(SPECS)
    assert done.stdout.splitlines()[-1] == f"{n} specs checked: {n} valid, 0 invalid"
    assert "Traceback" not in done.stderr


def test_missing_btf_file_is_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "validate", "--btf", "/nonexistent", *SPECS],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "/nonexistent" in lines[0], done.stderr
