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
        self.ready = threading.Event()
        self.pump = threading.Thread(target=self._read, daemon=True)
        self.pump.start()
        if not self.ready.wait(60):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
            pytest.fail(f"bpftrace did not start: {self.close()[-2000:]}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "READY" in line:
                self.ready.set()

    def stop(self) -> list[dict]:
        """SIGINT (maps print at exit); the JSON records it printed."""
        os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(timeout=30)
        self.pump.join(timeout=30)
        err = self.close()
        assert self.proc.returncode == 0, err
        return [json.loads(line) for line in self.lines if line.startswith("{")]

    def close(self) -> str:
        """Close the pipes; what bpftrace said on stderr."""
        assert self.proc.stdout is not None and self.proc.stderr is not None
        err = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return err

    def kill(self) -> None:
        """Teardown: make sure it is gone and its pipes are closed."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.close()
