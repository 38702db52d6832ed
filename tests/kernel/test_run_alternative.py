"""`engine run --alternative N`: force each probe's N-th attach alternative, never fall back.

The VM suite (tests/vm) uses it to run a spec's kprobe and tracepoint paths side by side; here
the kprobe one cannot attach, which must be an error naming why, not a silent fallback.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kernel.conftest import REPO

HAS_KPROBES = os.path.isdir("/sys/bus/event_source/devices/kprobe")


def engine(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_out_of_range_is_a_usage_error_before_anything_loads() -> None:
    result = engine("specs/icmp.yaml", "--alternative", "3")
    assert result.returncode == 2, result.stderr
    assert result.stderr == "engine: error: --alternative 3: probe 'echo' has 2 alternatives\n"
    assert result.stdout == ""
    result = engine("specs/icmp.yaml", "--alternative", "-1")
    assert result.returncode == 2, result.stderr
    assert "--alternative -1: probe 'echo' has 2 alternatives" in result.stderr


@pytest.mark.kernel
@pytest.mark.usefixtures("kernel_env")
@pytest.mark.skipif(HAS_KPROBES, reason="this kernel has kprobes: alternative 1 attaches here")
def test_forced_kprobe_without_kprobes_fails_and_does_not_fall_back() -> None:
    result = engine("specs/icmp.yaml", "--alternative", "1", "--duration", "1")
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(
        "engine: error: probe 'echo': alternative 1 (kprobe icmp_echo) cannot attach on this "
        "kernel: kprobe icmp_echo: "
    ), result.stderr
    assert "Tracing" not in result.stderr
    assert result.stdout == ""


@pytest.mark.kernel
@pytest.mark.usefixtures("kernel_env")
def test_forced_tracepoint_says_it_was_forced() -> None:
    result = engine("specs/icmp.yaml", "--alternative", "2", "--duration", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == (
        "probe 'echo': using tracepoint net/net_dev_queue (forced: --alternative 2)"
    ), result.stderr
    assert lines[1] == "Tracing echo ... Hit Ctrl-C to end."


@pytest.mark.kernel
@pytest.mark.usefixtures("kernel_env")
@pytest.mark.parametrize("spec", ["specs/tcpconnect.yaml", "specs/icmp.yaml"])
def test_matrix_prediction_is_what_attaches_here(spec: str, tmp_path: Path) -> None:
    """`engine validate`'s "would use" for this kernel's BTF is what `engine run` picks here.

    (tests/vm checks the same on Debian 6.1 and 6.12, where the kprobes attach.)
    """
    kernels = tmp_path / "kernels"
    kernels.mkdir()
    (kernels / "live.btf").symlink_to("/sys/kernel/btf/vmlinux")
    check = subprocess.run(
        [sys.executable, "-m", "engine.cli", "validate", "--btf", str(kernels), "--format",
         "json", spec],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    (cell,) = json.loads(check.stdout)["specs"][0]["kernels"]
    (probe,) = cell["probes"]
    result = engine(spec, "--duration", "1")
    assert result.returncode == 0, result.stderr
    using = re.search(r"^probe '[^']+': using (.+?)(?: \(skipped .*)?$", result.stderr, re.M)
    assert using, result.stderr
    assert using.group(1) == probe["attach"]
