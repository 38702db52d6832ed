"""When no attach alternative of a probe works on this kernel, `engine run` exits 1 with one
line per alternative and its measured reason, and leaves nothing loaded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

ROOT = Path(__file__).resolve().parents[2]
HAS_KPROBES = os.path.isdir("/sys/bus/event_source/devices/kprobe")


@pytest.mark.skipif(HAS_KPROBES, reason="this kernel has kprobes: the kprobe-only spec attaches")
def test_kprobe_only_spec_fails_with_each_reason(tmp_path: Path) -> None:
    text = (ROOT / "specs" / "icmp.yaml").read_text()
    spec = tmp_path / "kprobe-only.yaml"
    # keep only the kprobe alternative (the tracepoint one is four lines plus its where)
    start = text.index("      # Where kprobes are missing")
    end = text.index("    let:\n      icmp:")
    spec.write_text(text[:start] + text[end:])
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", str(spec), "--duration", "1"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0] == "engine: error: probe 'echo': no attach alternative works on this kernel:"
    assert lines[1].startswith("  1. kprobe icmp_echo: kprobe icmp_echo: ")
    assert "CONFIG_KPROBES" in lines[1]
    assert len(lines) == 2
    assert "Traceback" not in done.stderr
