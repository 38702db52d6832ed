"""Oracles running beside the engine on the same workload: a bpftrace script (it reads BTF, so
it is right on this kernel where bcc's header-compiled tools are not)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest


class Bpftrace:
    """`bpftrace -e SCRIPT`, started and waited for until its probes are attached."""

    def __init__(self, script: str) -> None:
        tool = shutil.which("bpftrace")
        if tool is None:
            pytest.fail("bpftrace is missing: scripts/setup.sh installs it")
        self.proc = subprocess.Popen(
            [tool, "-e", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        self.head: list[str] = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.head.append(line)
            if line.startswith("Attaching"):
                return
        self.stop()
        pytest.fail(f"bpftrace did not attach: {''.join(self.head)}{self.proc.stderr.read()}")

    def stop(self) -> list[str]:
        """SIGINT, then everything it printed after attaching."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        out, _ = self.proc.communicate(timeout=60)
        return out.splitlines()
