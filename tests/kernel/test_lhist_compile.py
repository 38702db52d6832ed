"""An lhist whose `min` is not 0 compiles and passes the verifier: the bucket is computed
with unsigned arithmetic after the range checks (BPF as clang targets it here has no signed
division; a signed one ends clang's process). Run as `engine validate --compile` in a child,
since a compiler that ends the process would end the test run too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

REPO = Path(__file__).resolve().parents[2]
SPEC = """\
name: lhists
description: kill() signals in linear histograms whose min is not 0.
probes:
  - name: kill
    attach:
      - tracepoint: syscalls/sys_enter_kill
    fields:
      sig: args.sig
      target: args.pid
output:
  aggregations:
    - {name: below, lhist: {value: sig, min: -100, max: 100, step: 10}}
    - {name: above, lhist: {value: target, min: 7, max: 107, step: 5}, by: [sig]}
"""


def test_lhist_with_a_nonzero_min_compiles(tmp_path: Path) -> None:
    spec = tmp_path / "lhists.yaml"
    spec.write_text(SPEC)
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "validate", "--compile", str(spec)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "compiled, verifier ok (1 program)" in done.stdout, done.stdout
