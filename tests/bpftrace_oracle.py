"""bpftrace as an oracle: a script run beside the engine on the same workload.

Where bcc's tool needs kprobes (missing on this project's machines) or reads the kernel
through headers of another kernel, bpftrace (it reads BTF) watches the same tracepoints at the
same time. The script's BEGIN prints READY (BEGIN runs once every probe is attached); `-f json`
makes its maps and printfs one JSON record a line.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading

import pytest


class Bpftrace:
    """A bpftrace script run alongside the engine; ready once its BEGIN printed READY."""

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
