"""Sampling bench: CPU of the engine's profile vs bpftrace's, over the same seconds.

    python -m bench.profile [--seconds 30] [--repeat 3] [--hz 99] [--quick]
    make bench ARGS="--quick"       (runs bench.run, bench.hist, then this)

Both sample every CPU at --hz and count samples by kernel stack in the kernel, printing once at
exit: the engine runs bench/specs/profile_kstack.yaml, bpftrace `profile:hz:N { @[kstack] =
count(); }`. A CPU-bound load runs on every CPU meanwhile, so every sample has a stack. For
each tool and repeat (tools interleaved, order rotated every repeat): the tool starts in its
own session; once it is ready (the engine's "Tracing" line, bpftrace's BEGIN line) its process
tree's CPU (utime+stime, /proc) is read, again --seconds later, then SIGINT; the samples it
printed are summed (the check: about hz x CPUs x seconds). Nothing is sent to user space per
sample, so the CPU over the window is the tools' fixed cost (polling, timers): per-sample work
in user space would show as CPU growing with --hz.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.run import PY, REPO, Tool, ToolProcess, med, spread, tree_cpu

SPEC = "bench/specs/profile_kstack.yaml"
READY_TIMEOUT = 300.0
LOAD = "while True: pass"


def tools(hz: int) -> list[Tool]:
    script = f'BEGIN {{ printf("READY\\n"); }} profile:hz:{hz} {{ @[kstack] = count(); }}'
    return [
        Tool(
            "engine",
            (PY, "-m", "engine.cli", "run", SPEC, "-F", str(hz), "-o", "folded"),
            "count",
            "the engine: samples by kstack in the kernel",
        ),
        Tool("bpftrace", ("bpftrace", "-e", script), "count", "bpftrace: @[kstack] = count()"),
    ]


def ready(tp: ToolProcess) -> bool:
    if tp.tool.name == "engine":
        return "Tracing" in tp.err_text()
    return "READY" in tp.out_path.read_text(errors="replace")


def samples(tp: ToolProcess) -> int:
    text = tp.out_path.read_text(errors="replace")
    if tp.tool.name == "engine":
        return sum(int(line.rsplit(" ", 1)[1]) for line in text.splitlines() if " " in line)
    return sum(int(n) for n in re.findall(r"\]: (\d+)$", text, re.M))  # `@[]: N`: no kstack


def trial(tool: Tool, seconds: float, workdir: Path, tag: str) -> dict[str, float]:
    tp = ToolProcess(tool, workdir, tag)
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready(tp):
        if not tp.alive() or time.monotonic() > deadline:
            tp.stop()
            raise SystemExit(f"{tool.name} did not start:\n{tp.err_text()[-2000:]}")
        time.sleep(0.05)
    time.sleep(1.0)  # start-up work (bcc's compile, bpftrace's attach) settles
    u0, s0 = tree_cpu(tp.proc.pid)
    t0 = time.monotonic()
    time.sleep(seconds)
    u1, s1 = tree_cpu(tp.proc.pid)
    elapsed = time.monotonic() - t0
    tp.stop()
    cpu = (u1 - u0) + (s1 - s0)
    return {"cpu_ms": 1000 * cpu, "cpu_pct": 100 * cpu / elapsed, "samples": samples(tp)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.profile", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--hz", type=int, default=99)
    p.add_argument("--quick", action="store_true", help="5 s, one repeat")
    p.add_argument("--json", metavar="FILE", help="write every trial here")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.repeat = 5.0, 1
    cpus = len(os.sched_getaffinity(0))
    load = [subprocess.Popen([sys.executable, "-c", LOAD]) for _ in range(cpus)]
    results: dict[str, list[dict[str, float]]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
            order = tools(args.hz)
            for r in range(args.repeat):
                for tool in order[r % len(order) :] + order[: r % len(order)]:
                    out = trial(tool, args.seconds, Path(tmp), f"{tool.name}-{r}")
                    results.setdefault(tool.name, []).append(out)
    finally:
        for proc in load:
            proc.kill()
            proc.wait()
    print(f"profile at {args.hz} Hz on {cpus} CPUs, {args.seconds:g} s, {args.repeat} repeat(s)")
    print(f"{'tool':<10} {'CPU ms':>18} {'% of one CPU':>20} {'samples':>18}")
    for name, rows in results.items():
        cpu = [x["cpu_ms"] for x in rows]
        pct = [x["cpu_pct"] for x in rows]
        n = [x["samples"] for x in rows]
        print(
            f"{name:<10} {spread(cpu, '.0f'):>18} {spread(pct, '.3f'):>20} {spread(n, '.0f'):>18}"
        )
    engine, bpftrace = (med([x["cpu_ms"] for x in results[k]]) for k in ("engine", "bpftrace"))
    print(f"engine/bpftrace CPU: {engine / bpftrace:.2f}" if bpftrace else "bpftrace: 0 ms")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main())
