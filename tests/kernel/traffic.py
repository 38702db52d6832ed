"""Traffic the kernel tests make: a connect storm to one loopback port (bench/storm.py, in a
fresh network namespace), its summary returned."""

from __future__ import annotations

import json
import subprocess
import sys


def storm(port: int, n: int) -> dict:
    """`n` connect()+close() to `port`; bench.storm's JSON summary (connects, rate, ...)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.storm", "--port", str(port), "--n", str(n),
         "--timeout", "60"],
        capture_output=True, text=True, timeout=90, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])
