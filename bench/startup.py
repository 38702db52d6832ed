"""The engine's own part of start-up, stage by stage, in fresh processes (no clang).

    python -m bench.startup [--spec specs/tcpconnect.yaml] [--runs 7] [--clang]

Each run is a new interpreter (so no in-process cache survives, as for a user), with the
file cache warm (one discarded run first). Stages, in `engine run` order:

  import      import the engine modules `engine run` needs (yaml, jinja2, jsonschema, ...)
  load        read the YAML with line:col marks
  schema      JSON Schema check
  plan        resolve against kernel BTF (BTF load included) -> the model
  render      bind the chosen alternative and render the BPF C; render + exec the decoder
  own         load + schema + plan + render: the issue's "engine's own part" (target 150 ms)
  probe       (root) kernel probing before load: privileges, ringbuf, each alternative
  clang       (--clang, root) bcc.BPF(text=...): compile + verifier load (not the engine's)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, sys, time
t0 = time.perf_counter()
from engine.plan import planner
from engine.codegen import render
from engine.runtime import runner
from engine.kernel import capabilities
from engine.plan.bind import bind
from engine.plan import model as M
from engine.spec.loader import load_document
from engine.spec.schema import check_schema
from engine.cli import spec_parser
t = {"import": time.perf_counter() - t0}
spec, want_probe, want_clang = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
s = time.perf_counter(); doc = load_document(spec); t["load"] = time.perf_counter() - s
s = time.perf_counter(); problems = check_schema(doc); t["schema"] = time.perf_counter() - s
assert not problems, problems
s = time.perf_counter(); plan = planner.plan(doc, None); t["plan"] = time.perf_counter() - s
s = time.perf_counter()
spec_parser("run", plan)
config = runner.RunConfig()
choices = {p.name: len(p.alternatives) - 1 for p in plan.probes}
if want_probe:
    runner.check_privileges()
    transport = M.Transport.RINGBUF if capabilities.probe("ringbuf").ok else M.Transport.PERF
    t["probe"] = time.perf_counter() - s
    s = time.perf_counter()
    choices = runner.choose(plan, {})
    t["probe"] += time.perf_counter() - s
    s = time.perf_counter()
else:
    transport = M.Transport.RINGBUF
program = bind(plan, kfunc_style="legacy", options={}, choices=choices,
               transport=transport, ringbuf_pages=64, wakeup_batch=0)
text = render.render_c(program)
decoder = render.load_decoder(plan)
t["render"] = time.perf_counter() - s
t["own"] = t["load"] + t["schema"] + t["plan"] + t["render"]
if want_clang:
    s = time.perf_counter()
    import bcc
    fd = os.dup(2); os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    try:
        b = bcc.BPF(text=text)
    finally:
        os.dup2(fd, 2)
    t["clang"] = time.perf_counter() - s
    b.cleanup()
print(json.dumps(t))
"""

ORDER = ("import", "load", "schema", "plan", "render", "own", "probe", "clang")


def env() -> dict[str, str]:
    """The user's environment: bytecode cached (outside the tree), stdout buffered."""
    import os

    e = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED",)}
    e.pop("PYTHONDONTWRITEBYTECODE", None)
    e["PYTHONPYCACHEPREFIX"] = "/tmp/engine-bench-pycache"
    return e


def run_once(spec: str, probe: bool, clang: bool) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, spec, "1" if probe else "0", "1" if clang else "0"],
        cwd=REPO,
        env=env(),
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def measure(spec: str, runs: int, probe: bool, clang: bool) -> dict[str, list[float]]:
    run_once(spec, probe, False)  # warm the file cache and the bytecode cache
    samples: dict[str, list[float]] = {}
    for _ in range(max(1, runs)):
        for k, v in run_once(spec, probe, clang).items():
            samples.setdefault(k, []).append(v)
    return samples


def main(argv: list[str] | None = None) -> int:
    import os

    p = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__)
    p.add_argument("--spec", default="specs/tcpconnect.yaml")
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--clang", action="store_true", help="also time bcc's compile (root)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    probe = os.geteuid() == 0
    samples = measure(args.spec, args.runs, probe, args.clang)
    if args.json:
        print(json.dumps(samples))
        return 0
    print(f"{args.spec}: engine start-up stages, ms, {args.runs} fresh processes")
    for k in ORDER:
        if k in samples:
            v = [x * 1000 for x in samples[k]]
            print(f"  {k:<8} median {statistics.median(v):8.1f}   [{min(v):.1f} .. {max(v):.1f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
