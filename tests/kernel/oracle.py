"""Oracles running beside the engine on the same workload: bpftrace scripts (bpftrace reads BTF,
so it is right on this kernel where bcc's header-compiled tools are not) and bcc's own tools.

Each is ready on a line it prints once its probes are attached (never after a fixed sleep), is
stopped with SIGINT to print its results, and is started with `procs.spawn`, so it is killed
when the test ends however it ends: an oracle never outlives its test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from typing import Callable, Sequence

import procs
import pytest
from conftest import EVENT_TIMEOUT, LineReader

# bcc's tools compile their C against the whole kernel header tree: ~10 s on a quiet machine,
# minutes with both CPUs busy. bpftrace's scripts are smaller but attach one probe at a time.
READY_TIMEOUT = 600.0
STOP_TIMEOUT = 120.0  # bpftrace detaches its probes on exit; slow on a loaded machine
READY = "READY"


class Oracle:
    """A tracing tool in its own session, both pipes drained on threads (neither can fill and
    stall it); ready once `ready(line)` holds for a line on stdout."""

    name = "oracle"

    def __init__(
        self, argv: Sequence[str], ready: Callable[[str], bool], env: dict[str, str] | None = None
    ) -> None:
        self.argv = list(argv)
        self.proc = procs.spawn(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env,
        )  # fmt: skip
        self.out = LineReader(self.proc.stdout)
        self.err = LineReader(self.proc.stderr)
        if not self.out.wait_for(lambda ls: any(ready(x) for x in ls), READY_TIMEOUT):
            self.kill()
            pytest.fail(
                f"{self.name} was not ready within {READY_TIMEOUT:.0f} s (exit {self.proc.poll()})"
                f": {self.argv}\nstdout:\n{self.out.text()}\nstderr:\n{self.err.text()[-2000:]}"
            )
        self.ready_index = next(i for i, x in enumerate(self.out.lines) if ready(x))

    def wait_line(self, found: Callable[[str], bool], timeout: float = EVENT_TIMEOUT) -> None:
        """Wait until a line after the ready one satisfies `found` (an event it printed)."""
        start = self.ready_index + 1
        if not self.out.wait_for(lambda ls: any(found(x) for x in ls[start:]), timeout):
            pytest.fail(
                f"{self.name} printed no such line within {timeout:.0f} s\n"
                f"stdout:\n{self.out.text()}\nstderr:\n{self.err.text()[-2000:]}"
            )

    def finish(self) -> list[str]:
        """SIGINT (results print at exit), wait for the exit; stdout after the ready line."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.name} did not exit {STOP_TIMEOUT:.0f} s after SIGINT")
        self.close()
        assert self.proc.returncode == 0, f"{self.name} exit {self.proc.returncode}: " + (
            self.err.text()
        )
        return self.out.lines[self.ready_index + 1 :]

    def close(self) -> None:
        """Wait for the pipes' ends (the process is gone) and close them."""
        for reader, stream in ((self.out, self.proc.stdout), (self.err, self.proc.stderr)):
            if reader.join(STOP_TIMEOUT) and stream is not None:
                stream.close()

    def kill(self) -> None:
        """Teardown on any path: make sure it is gone and its pipes are closed."""
        procs.kill(self.proc)


def bpftrace_argv(*args: str) -> list[str]:
    tool = shutil.which("bpftrace")
    if tool is None:
        pytest.fail("bpftrace is missing: scripts/setup.sh installs it")
    return [tool, "-B", "line", *args]


class Bpftrace(Oracle):
    """`bpftrace -e SCRIPT`: BEGIN prints READY, which bpftrace runs after every probe is
    attached ("Attaching N probes" comes before they are). `stop()`: what it printed after."""

    name = "bpftrace"

    def __init__(self, script: str) -> None:
        script = 'BEGIN { printf("' + READY + '\\n"); }\n' + script
        super().__init__(bpftrace_argv("-e", script), lambda line: line == READY)

    def stop(self) -> list[str]:
        return self.finish()

    def dump(self) -> list[str]:
        """What the script's `dump_probe` printed when this process asked (a getppid call),
        then bpftrace killed: 0.17 was seen hanging for over 120 s after SIGINT on a loaded
        machine, and the maps are in by then anyway."""
        os.getppid()
        self.wait_line(lambda line: line == DUMPED)
        lines = self.out.lines[self.ready_index + 1 :]
        self.kill()
        return lines[: lines.index(DUMPED)]


DUMPED = "DUMPED"


def dump_probe(*maps: str) -> str:
    """A bpftrace probe printing `maps` when the test process calls getppid (Bpftrace.dump)."""
    prints = " ".join(f"print({m});" for m in maps)
    return (
        f"tracepoint:syscalls:sys_enter_getppid /pid == {os.getpid()}/ "
        f'{{ {prints} printf("{DUMPED}\\n"); }}'
    )


class BpftraceJson(Oracle):
    """`bpftrace -f json -e SCRIPT`: its maps and printfs as JSON records, one a line (a
    histogram's buckets as {min, max, count}). The script's BEGIN must print READY."""

    name = "bpftrace"

    def __init__(self, script: str) -> None:
        super().__init__(bpftrace_argv("-f", "json", "-e", script), lambda line: READY in line)

    def stop(self) -> list[dict]:
        """SIGINT (maps print at exit); the JSON records it printed."""
        return [json.loads(line) for line in self.finish() if line.startswith("{")]


class BccTool(Oracle):
    """One of bcc's tools (`syscount-bpfcc ...`), ready on its "Tracing" line."""

    def __init__(self, tool: str, *args: str) -> None:
        path = shutil.which(tool)
        if path is None:
            pytest.fail(f"{tool} is missing: scripts/setup.sh installs bpfcc-tools")
        self.name = tool
        # The tools are Python: into a pipe, "Tracing" would wait in a buffer until exit.
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        super().__init__([path, *args], lambda line: line.startswith("Tracing"), env)

    def stop(self) -> list[str]:
        return self.finish()


class ProfileBcc(Oracle):
    """bcc's profile (`profile-bpfcc -F HZ -p PID`), ready on its "Sampling at" line, which it
    prints once its perf events are attached; its stacks print at SIGINT."""

    name = "profile-bpfcc"

    def __init__(self, *args: str) -> None:
        path = shutil.which(self.name)
        if path is None:
            pytest.fail(f"{self.name} is missing: scripts/setup.sh installs bpfcc-tools")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        super().__init__([path, *args], lambda line: line.startswith("Sampling at"), env)

    def stop(self) -> list[str]:
        return self.finish()


def profile_blocks(lines: Sequence[str]) -> dict[tuple[str, ...], int]:
    """bcc profile's stacks (and the engine's table of them, the same layout) as counts by
    (comm, frames innermost first): blocks of `    frame` lines (`    --` between the kernel
    and user stacks dropped), a `    -   comm (pid)` line and an `        N` count."""
    found: dict[tuple[str, ...], int] = {}
    frames: list[str] = []
    comm = ""
    for line in lines:
        text = line.strip()
        if not text:
            frames, comm = [], ""
        elif line.startswith("        ") and text.isdigit():
            key = (comm, *frames)
            found[key] = found.get(key, 0) + int(text)
        elif line.startswith("    -  "):
            comm = text[1:].strip().rsplit(" (", 1)[0]
        elif line.startswith("    ") and text != "--":
            frames.append(text)
    return found


def bpftrace_stacks(lines: Sequence[str]) -> dict[tuple[tuple[str, ...], ...], int]:
    """A bpftrace map keyed by stacks (`@[kstack, ustack] = count()`, text output) as counts
    by a tuple of stacks, each its frames innermost first without `+offset`."""
    found: dict[tuple[tuple[str, ...], ...], int] = {}
    stacks: list[list[str]] = []
    inside = False
    for line in lines:
        text = line.strip()
        if text.startswith("@") and text.endswith("["):
            stacks, inside = [[]], True
        elif inside and text.startswith("]: "):
            key = tuple(tuple(s) for s in stacks)
            found[key] = found.get(key, 0) + int(text[3:])
            inside = False
        elif inside and text == ",":
            stacks.append([])
        elif inside and text:
            stacks[-1].append(text.rsplit("+", 1)[0])
    return found


# Log2 histograms of two tools on the same workload: compared by shape (see test_spec_runqlat).
def by_index(rows: list[dict]) -> dict[int, int]:
    """JSON log2 buckets ({min, max, count}) by bucket index: bcc's `0 -> 1` and bpftrace's
    [0] and [1] are index 0, `2 -> 3` index 1, `2^n .. 2^(n+1)-1` index n."""
    found: dict[int, int] = {}
    for b in rows:
        index = max(int(b["max"]), 1).bit_length() - 1
        found[index] = found.get(index, 0) + int(b["count"])
    return found


def bucket_shift(a: dict[int, int], b: dict[int, int]) -> float:
    """How far, in buckets, the mass of one histogram moves on average to become the other
    (the earth mover's distance of the two as shares of their totals): the sum over bucket
    edges of the difference of their cumulative shares. 0 for the same shape, 1.0 when every
    sample is one bucket off, 0.1 when a tenth of them is."""
    total_a, total_b = sum(a.values()), sum(b.values())
    if not total_a or not total_b:
        return float("inf")
    cum_a = cum_b = 0
    moved = 0.0
    for index in range(min(a | b), max(a | b)):
        cum_a += a.get(index, 0)
        cum_b += b.get(index, 0)
        moved += abs(cum_a / total_a - cum_b / total_b)
    return moved
