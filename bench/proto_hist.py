"""Prototype variants of the engine's BPF C for the histogram bench: what would a codegen change
buy, in BPF run time per connect (kernel.bpf_stats_enabled=1), under the same storm?

    python -m bench.proto_hist [--n 20000] [--repeat 3]

The engine's C for bench/specs/connlat_hist.yaml (`engine render --port 61003`), loaded with
bcc and attached to sock:inet_sock_set_state, in variants made by rewriting the rendered text:

  engine   as rendered: each tracepoint field read with bpf_probe_read_kernel (4 helper calls
           before the filter rejects the event, on every run of the tracepoint);
  ctx      the tracepoint's fields read straight from the context (`v = *(u16 *)(ctx + 30)`,
           as bcc's TRACEPOINT_PROBE and bpftrace do): the verifier checks these loads.

(A third variant, `ctx-sum`, measured the histogram's sum outside its hash; the engine now
keeps a key's buckets and sum in one hash entry, one lookup per update, so it is gone.)

Bench-only: the engine is unchanged; this measures proposals (docs/performance.md).
Each trial checks that the histogram's count equals N.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

from bench import run
from bench.hist import STATS_SYSCTL, bpf_stats, bpftool_json
from bench.run import PY, REPO

PORT = 61003  # not bench.run's storm port: this may run next to bench.hist

SPEC = "bench/specs/connlat_hist.yaml"
PROGS = (
    "p0_connect_tracepoint_sock_inet_sock_set_state",
    "p1_established_tracepoint_sock_inet_sock_set_state",
)
READ = re.compile(
    r"(u8|u16|u32|u64|s8|s16|s32|s64) (v\d+) = 0;\n(\s*)bpf_probe_read_kernel\(&\2, \d+, "
    r"\(void \*\)\(ctx_addr \+ (\d+)\)\);"
)


def rendered() -> str:
    out = subprocess.run(
        [PY, "-m", "engine.cli", "render", SPEC, "--port", str(PORT)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def variant(text: str, name: str) -> str:
    if name == "engine":
        return text
    out, n = READ.subn(r"\1 \2 = *(\1 *)(ctx_addr + \4);", text)
    assert n == 10, f"expected 10 context reads, rewrote {n}"
    return out


def trial(name: str, text: str, n: int) -> dict[str, float]:
    import bcc

    before = set(prog_ids())
    b = bcc.BPF(text=text)
    for fn in PROGS:
        b.attach_tracepoint(tp="sock:inet_sock_set_state", fn_name=fn)
    ids = sorted(set(prog_ids()) - before)
    assert len(ids) == len(PROGS), f"expected {len(PROGS)} attached programs, found {ids}"
    time.sleep(0.5)
    ns0, cnt0 = stats(ids)
    storm = run.run_storm(n, PORT, 120)
    ns1, cnt1 = stats(ids)
    table = b["agg_connlat"]
    count = sum(sum(v.buckets) for per_cpu in table.values() for v in per_cpu)
    b.detach_tracepoint("sock:inet_sock_set_state")
    b.cleanup()
    return {
        "ns_per_connect": (ns1 - ns0) / n,
        "ns_per_run": (ns1 - ns0) / max(cnt1 - cnt0, 1),
        "runs": (cnt1 - cnt0) / n,
        "count": count,
        "rate": storm["rate"],
    }


def prog_ids() -> list[int]:
    """This process's programs on inet_sock_set_state (bpftool perf list, by pid)."""
    links = bpftool_json("perf", "list") or []
    assert isinstance(links, list)
    return sorted(
        p["prog_id"]
        for p in links
        if p.get("pid") == os.getpid() and p.get("tracepoint") == "inet_sock_set_state"
    )


def stats(ids: list[int]) -> tuple[int, int]:
    ns = cnt = 0
    for i in ids:
        info = bpftool_json("prog", "show", "id", str(i))
        assert isinstance(info, dict)
        ns += int(info.get("run_time_ns", 0))
        cnt += int(info.get("run_cnt", 0))
    return ns, cnt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.proto_hist", description=__doc__)
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--variants", default="engine,ctx")
    args = p.parse_args(argv)
    base = rendered()
    names = args.variants.split(",")
    texts = {v: variant(base, v) for v in names}
    results: dict[str, list[dict[str, float]]] = {v: [] for v in names}
    print(f"N={args.n}, repeat {args.repeat}; stats via {STATS_SYSCTL}")
    with bpf_stats():
        for r in range(args.repeat):
            for v in names[r % len(names) :] + names[: r % len(names)]:
                res = trial(v, texts[v], args.n)
                results[v].append(res)
                print(f"  [{r + 1}] {v:<8} " + ", ".join(f"{k} {x:.1f}" for k, x in res.items()))
    print("\nvariant   count=N  BPF ns/connect [min..max]   ns/run  runs/connect")
    ref = statistics.median(x["ns_per_connect"] for x in results[names[0]])
    for v in names:
        xs = [x["ns_per_connect"] for x in results[v]]
        m = statistics.median(xs)
        good = sum(1 for x in results[v] if x["count"] == args.n)
        per_run = statistics.median(x["ns_per_run"] for x in results[v])
        runs = statistics.median(x["runs"] for x in results[v])
        print(
            f"{v:<9} {good}/{len(xs)}  {m:6.0f} [{min(xs):.0f}..{max(xs):.0f}] "
            f"x{m / ref:.2f}   {per_run:6.0f}  {runs:.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
