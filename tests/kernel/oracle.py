"""Oracles running beside the engine on the same workload: a bpftrace script (it reads BTF, so
it is right on this kernel where bcc's header-compiled tools are not)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from typing import IO

import pytest

STOP_TIMEOUT = 90.0  # bpftrace detaches its probes on exit; slow on a loaded machine


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


class BpftraceJson:
    """`bpftrace -f json -e SCRIPT`: its maps and printfs as JSON records, one a line (a
    histogram's buckets as {min, max, count}). Ready once the script's BEGIN printed READY:
    BEGIN runs after every probe is attached, where "Attaching N probes" comes before."""

    def __init__(self, script: str) -> None:
        tool = shutil.which("bpftrace")
        if tool is None:
            pytest.fail("bpftrace is missing: scripts/setup.sh installs it")
        self.proc = subprocess.Popen(
            [tool, "-B", "line", "-f", "json", "-e", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        self.ready = threading.Event()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        # both pipes are drained on threads, so neither can fill and stall bpftrace
        self.pumps = [
            threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True),
        ]
        for pump in self.pumps:
            pump.start()
        if not self.ready.wait(60):
            self.kill()
            pytest.fail(f"bpftrace did not start: {''.join(self.errors)[-2000:]}")

    def _read(self, stream: IO[str], out: bool) -> None:
        for line in stream:
            (self.lines if out else self.errors).append(line)
            if out and "READY" in line:
                self.ready.set()

    def stop(self) -> list[dict]:
        """SIGINT (maps print at exit); the JSON records it printed."""
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"bpftrace did not exit {STOP_TIMEOUT:.0f} s after SIGINT")
        self.close()
        assert self.proc.returncode == 0, "".join(self.errors)
        return [json.loads(line) for line in self.lines if line.startswith("{")]

    def close(self) -> None:
        """Wait for the pipes' ends and close them."""
        for pump in self.pumps:
            pump.join(timeout=STOP_TIMEOUT)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.stdout.close()
        self.proc.stderr.close()

    def kill(self) -> None:
        """Teardown: make sure it is gone and its pipes are closed."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT)
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.close()
