"""Histogram bench: connect latency into an in-kernel log2 histogram, engine vs bpftrace hist().

    python -m bench.hist [--n 100000] [--repeat 3] [--tools engine-hist,bpftrace-hist,...]
    make bench ARGS="--quick"       (runs bench.run, then this)

Both sides keep state keyed by the socket (sock/inet_sock_set_state CLOSE->SYN_SENT stores the
time, SYN_SENT->ESTABLISHED takes it) and add (now - t0) / 1000 to a log2 histogram in the
kernel, for connects to the storm port only: bench/specs/connlat_hist.yaml and
bench/peers/connlat_hist.bt. Nothing is sent to user space per event; the histogram prints
once, at exit. For each tool and repeat (tools interleaved, order rotated every repeat), with
bench.run's helpers (fresh netns per storm, the tool in its own session, /proc CPU):

1. baseline: a storm with no tool -> connects/s without the tool;
2. start-up: spawn to ready (the engine's "Tracing" line on stderr, bpftrace's
   "attached_probes" line, its JSON form of "Attaching N probes", on stdout);
3. after 1 s, CPU of the tool's process tree (utime+stime) and the BPF run time of the
   programs it attached (`bpftool perf list` -> prog ids; run_time_ns/run_cnt from
   `bpftool prog show` with kernel.bpf_stats_enabled=1, set for the run, restored after);
   then a storm of N connects; 1 s later both again -> CPU and BPF ns per connect;
4. SIGINT: the histogram's total must equal N (engine: the JSON "count"; bpftrace: the sum of
   its hist buckets) -> the check column.

Tools from bench.run (`engine`, `engine-count`, `bcc`, ...) may be listed too: they run
bench.run's own trial in the same loop, so the start-up ratio to the bcc script is of this run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from bench import run
from bench.run import PY, REPO, STORM_PORT, Tool, ToolProcess, med, spread

HIST_SPEC = "bench/specs/connlat_hist.yaml"
HIST_BT = "bench/peers/connlat_hist.bt"
STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")
IDLE = 3.0  # s of no storm before it: the tool's time-based CPU (timers, polling)


@dataclass(frozen=True)
class HistTool:
    tool: Tool
    ready_stream: str  # "err" or "out": where the ready marker is printed
    ready: str  # marker text
    total: str  # how the histogram's total is read: "engine" or "bpftrace"


HIST_TOOLS: dict[str, HistTool] = {
    h.tool.name: h
    for h in (
        HistTool(
            Tool(
                "engine-hist",
                (PY, "-m", "engine.cli", "run", HIST_SPEC, "--port", str(STORM_PORT), "-o", "json"),
                "hist",
                f"engine run {HIST_SPEC} -o json (log2 histogram in the kernel)",
            ),
            "err",
            "Tracing",
            "engine",
        ),
        HistTool(
            Tool(
                "bpftrace-hist",
                ("bpftrace", "-f", "json", HIST_BT),
                "hist",
                f"bpftrace -f json {HIST_BT} (hist())",
            ),
            "out",
            '"attached_probes"',
            "bpftrace",
        ),
    )
}
DEFAULT_TOOLS = "engine-hist,bpftrace-hist,engine-count,bcc"


# --- BPF run time of a tool's programs ---------------------------------------------------------


def bpftool_json(*args: str) -> object:
    out = subprocess.run(["bpftool", "-j", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout or "null")


def tool_progs(root: int) -> list[int]:
    """Ids of the BPF programs attached (perf events) by the tool's process tree."""
    pids = set(run.process_tree(root))
    links = bpftool_json("perf", "list") or []
    assert isinstance(links, list)
    return sorted({p["prog_id"] for p in links if p.get("pid") in pids})


def prog_stats(ids: list[int]) -> tuple[int, int]:
    """(run_time_ns, run_cnt) summed over the programs (0 while stats are off)."""
    ns = cnt = 0
    for i in ids:
        info = bpftool_json("prog", "show", "id", str(i))
        assert isinstance(info, dict)
        ns += int(info.get("run_time_ns", 0))
        cnt += int(info.get("run_cnt", 0))
    return ns, cnt


@contextlib.contextmanager
def bpf_stats() -> Iterator[None]:
    """kernel.bpf_stats_enabled=1 for the run (it costs every program ~2 clock reads a run)."""
    before = STATS_SYSCTL.read_text().strip()
    STATS_SYSCTL.write_text("1")
    try:
        yield None
    finally:
        STATS_SYSCTL.write_text(before)


def tree_runtime_ns(root: int) -> int:
    """On-CPU ns of every thread of the tool's live process tree (/proc/*/task/*/schedstat):
    exact, where utime/stime move in 10 ms ticks."""
    total = 0
    for pid in run.process_tree(root):
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError, ValueError):
                    total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
    return total


# --- the histogram's total ------------------------------------------------------------------


def engine_total(out: str) -> tuple[int, int]:
    """(count, sum of bucket counts) of the engine's JSON histogram object."""
    for line in out.splitlines():
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict) and obj.get("aggregation") == "connlat":
                return int(obj["count"]), sum(int(b["count"]) for b in obj["buckets"])
    raise RuntimeError(f"engine printed no histogram: {out[-300:]!r}")


def bpftrace_total(out: str) -> tuple[int, int]:
    """(sum of @connlat's bucket counts, the same): bpftrace prints no separate count."""
    for line in out.splitlines():
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict) and obj.get("type") == "hist":
                total = sum(int(b["count"]) for b in obj["data"]["@connlat"])
                return total, total
    raise RuntimeError(f"bpftrace printed no histogram: {out[-300:]!r}")


# --- one trial --------------------------------------------------------------------------------


@dataclass
class HistTrial:
    tool: str
    repeat: int
    n: int
    startup_s: float = 0.0
    count: int = 0
    bucket_sum: int = 0
    cpu_user_s: float = 0.0
    cpu_sys_s: float = 0.0
    us_per_event: float = 0.0
    idle_ms_per_s: float = 0.0
    storm_ms_per_s: float = 0.0
    excess_ns_per_event: float = 0.0
    bpf_ns_per_event: float = 0.0
    bpf_runs_per_event: float = 0.0
    bpf_ns_per_run: float = 0.0
    progs: int = 0
    rate_base: float = 0.0
    rate_tool: float = 0.0
    slowdown_pct: float = 0.0
    rss_mb: float = 0.0
    error: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.error and self.count == self.n == self.bucket_sum


def wait_ready(tp: ToolProcess, h: HistTool) -> float:
    path = tp.err_path if h.ready_stream == "err" else tp.out_path
    deadline = tp.t_spawn + run.STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if h.ready in path.read_text(errors="replace"):
            return time.monotonic() - tp.t_spawn
        if not tp.alive():
            raise RuntimeError(f"{h.tool.name} exited: {tp.err_text().strip()[-500:]}")
        time.sleep(0.002)
    raise RuntimeError(f"{h.tool.name}: not ready in {run.STARTUP_TIMEOUT:.0f} s")


def hist_trial(h: HistTool, repeat: int, n: int, workdir: Path, storm_timeout: float) -> HistTrial:
    t = HistTrial(h.tool.name, repeat, n)
    t.rate_base = run.run_storm(n, STORM_PORT, storm_timeout)["rate"]
    tp = ToolProcess(h.tool, workdir, f"{h.tool.name}-r{repeat}")
    try:
        t.startup_s = wait_ready(tp, h)
        time.sleep(run.SETTLE)
        progs = tool_progs(tp.proc.pid)
        t.progs = len(progs)
        i0, w0 = tree_runtime_ns(tp.proc.pid), time.monotonic()
        time.sleep(IDLE)
        i1, w1 = tree_runtime_ns(tp.proc.pid), time.monotonic()
        user0, sys0 = run.tree_cpu(tp.proc.pid)
        ns0, cnt0 = prog_stats(progs)
        t.rate_tool = run.run_storm(n, STORM_PORT, storm_timeout)["rate"]
        time.sleep(run.SETTLE)
        user1, sys1 = run.tree_cpu(tp.proc.pid)
        ns1, cnt1 = prog_stats(progs)
        i2, w2 = tree_runtime_ns(tp.proc.pid), time.monotonic()
        idle_rate = (i1 - i0) / (w1 - w0)  # ns on CPU per s, no events
        t.idle_ms_per_s = idle_rate / 1e6
        t.storm_ms_per_s = (i2 - i1) / (w2 - w1) / 1e6
        t.excess_ns_per_event = ((i2 - i1) - idle_rate * (w2 - w1)) / n
        t.rss_mb = run.peak_rss_mb(tp.proc.pid)
        alive = tp.alive()
    except Exception as exc:
        t.error = str(exc)
        tp.stop()
        return t
    code = tp.stop()
    if not alive:
        t.notes.append(f"exited before SIGINT (code {code})")
    out = tp.out_path.read_text(errors="replace")
    try:
        total = engine_total if h.total == "engine" else bpftrace_total
        t.count, t.bucket_sum = total(out)
    except RuntimeError as exc:
        t.error = str(exc)
    t.cpu_user_s, t.cpu_sys_s = user1 - user0, sys1 - sys0
    t.us_per_event = (t.cpu_user_s + t.cpu_sys_s) / n * 1e6
    t.bpf_ns_per_event = (ns1 - ns0) / n
    t.bpf_runs_per_event = (cnt1 - cnt0) / n
    t.bpf_ns_per_run = (ns1 - ns0) / max(cnt1 - cnt0, 1)
    t.slowdown_pct = (1 - t.rate_tool / t.rate_base) * 100
    return t


# --- summary ----------------------------------------------------------------------------------

KEYS = (
    "us_per_event",
    "idle_ms_per_s",
    "storm_ms_per_s",
    "excess_ns_per_event",
    "bpf_ns_per_event",
    "bpf_ns_per_run",
    "bpf_runs_per_event",
    "startup_s",
    "rate_base",
    "rate_tool",
    "slowdown_pct",
    "rss_mb",
)


def summarize(trials: list[HistTrial | run.Trial]) -> dict[str, dict[str, list[float]]]:
    by: dict[str, dict[str, list[float]]] = {}
    for t in trials:
        if t.error:
            continue
        d = by.setdefault(t.tool, {})
        for k in KEYS:
            if hasattr(t, k):
                d.setdefault(k, []).append(float(getattr(t, k)))
    return by


def check(trials: list[HistTrial | run.Trial], name: str) -> str:
    """'3/3 = N' style: trials whose histogram total (or events seen) equals N."""
    mine = [t for t in trials if t.tool == name]
    good = sum(
        1 for t in mine if (t.ok if isinstance(t, HistTrial) else not t.error and t.lost == 0)
    )
    return f"{good}/{len(mine)}"


def table(by: dict[str, dict[str, list[float]]], trials: list, tools: list[str], n: int) -> str:
    head = (
        f"{'tool':<14} {'total=N':>7} {'CPU us/event':>17} {'idle ms/s':>9} {'storm ms/s':>10} "
        f"{'user ns/event':>18} {'BPF ns/connect':>18} {'ns/run':>6} {'runs':>4} "
        f"{'start-up s':>17} {'connects/s':>10} {'slowdown %':>17}"
    )
    lines = [head, "-" * len(head)]

    def col(d: dict[str, list[float]], key: str, fmt: str, whole: bool = False) -> str:
        if key not in d:
            return "-"
        return spread(d[key], fmt) if whole else format(med(d[key]), fmt)

    for name in tools:
        d = by.get(name)
        if not d:
            lines.append(f"{name:<14} (no successful trial)")
            continue
        lines.append(
            f"{name:<14} {check(trials, name):>7} {col(d, 'us_per_event', '.2f', True):>17} "
            f"{col(d, 'idle_ms_per_s', '.2f'):>9} {col(d, 'storm_ms_per_s', '.2f'):>10} "
            f"{col(d, 'excess_ns_per_event', '.1f', True):>18} "
            f"{col(d, 'bpf_ns_per_event', '.0f', True):>18} {col(d, 'bpf_ns_per_run', '.0f'):>6} "
            f"{col(d, 'bpf_runs_per_event', '.0f'):>4} {col(d, 'startup_s', '.2f', True):>17} "
            f"{med(d['rate_tool']):>10.0f} {col(d, 'slowdown_pct', '.1f', True):>17}"
        )
    base = [r for d in by.values() for r in d["rate_base"]]
    lines.append(f"baseline storm (no tool): {spread(base, '.0f')} connects/s")
    lines.append(
        "CPU us/event: utime+stime ticks of the tool's tree over the storm / N (bench.run's "
        "measure); idle/storm ms/s: on-CPU time (schedstat) per second without and during the "
        "storm; user ns/event: the storm's excess over the idle rate / N; BPF: run_time_ns of "
        "the tool's programs / N connects (runs: program runs per connect)"
    )
    return "\n".join(lines)


def ratios(by: dict[str, dict[str, list[float]]]) -> str:
    lines = []

    def ratio(a: str, b: str, key: str) -> float | None:
        if a in by and b in by and key in by[a] and key in by[b] and med(by[b][key]):
            return med(by[a][key]) / med(by[b][key])
        return None

    for a, b, key, label in (
        ("engine-hist", "bpftrace-hist", "bpf_ns_per_event", "BPF ns/connect"),
        ("engine-hist", "bpftrace-hist", "bpf_ns_per_run", "BPF ns/run"),
        ("engine-hist", "bpftrace-hist", "us_per_event", "process CPU/event"),
        ("engine-hist", "bpftrace-hist", "startup_s", "start-up"),
        ("engine-hist", "bcc", "startup_s", "start-up"),
        ("engine", "bcc", "startup_s", "start-up"),
        ("engine-count", "bcc", "startup_s", "start-up"),
    ):
        r = ratio(a, b, key)
        if r is not None:
            lines.append(f"  {a + ' / ' + b:<30} {label:<18} x{r:.2f}")
    if "engine-hist" in by and "bpftrace-hist" in by:
        eng, bt = by["engine-hist"], by["bpftrace-hist"]
        lines.append(
            f"  slowdown engine-hist - bpftrace-hist: "
            f"{med(eng['slowdown_pct']) - med(bt['slowdown_pct']):+.1f} points"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.hist",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="tools: "
        + ", ".join(f"{h.tool.name} ({h.tool.about})" for h in HIST_TOOLS.values())
        + "; and bench.run's: "
        + ", ".join(run.TOOLS),
    )
    p.add_argument("--n", type=int, default=100000, help="connects per storm")
    p.add_argument("--repeat", type=int, default=3, help="trials per tool (interleaved)")
    p.add_argument("--tools", default=DEFAULT_TOOLS, help=f"default: {DEFAULT_TOOLS}")
    p.add_argument("--quick", action="store_true", help="smoke run: N=20000, repeat 1")
    p.add_argument("--storm-timeout", type=float, default=120.0, help="bound of one storm, s")
    p.add_argument("--json", metavar="FILE", help="write every trial and the summary here")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.repeat = 20000, 1
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [t for t in tools if t not in HIST_TOOLS and t not in run.TOOLS]
    if unknown:
        p.error(f"unknown tool(s) {', '.join(unknown)}")
    run.check_tools([t for t in tools if t in run.TOOLS])
    for exe in ("bpftrace", "bpftool"):
        if shutil.which(exe) is None:
            sys.exit(f"bench: the histogram bench needs {exe}")

    results_root = REPO / "bench" / "results"
    results_root.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=time.strftime("hist-%Y%m%d-%H%M%S-"), dir=results_root))
    about = run.machine()
    print(f"machine: {about}")
    print(f"histograms: N={args.n}, repeat {args.repeat}, tools {', '.join(tools)}; {workdir}")

    trials: list[HistTrial | run.Trial] = []
    t_begin = time.monotonic()
    with bpf_stats():
        for r in range(args.repeat):
            order = tools[r % len(tools) :] + tools[: r % len(tools)]
            for name in order:
                if name in HIST_TOOLS:
                    ht = hist_trial(HIST_TOOLS[name], r, args.n, workdir, args.storm_timeout)
                    trials.append(ht)
                    status = ht.error or (
                        f"total {ht.count}/{ht.n} (buckets {ht.bucket_sum}), "
                        f"{ht.us_per_event:.2f} us/event (ticks), on-CPU {ht.idle_ms_per_s:.2f} "
                        f"ms/s idle, {ht.storm_ms_per_s:.2f} in the storm: "
                        f"{ht.excess_ns_per_event:.1f} ns/event more; "
                        f"BPF {ht.bpf_ns_per_event:.0f} ns/connect"
                        f" ({ht.bpf_runs_per_event:.1f} runs of {ht.bpf_ns_per_run:.0f} ns, "
                        f"{ht.progs} progs), start-up {ht.startup_s:.2f} s, "
                        f"{ht.rate_tool:.0f} vs {ht.rate_base:.0f} conn/s "
                        f"({ht.slowdown_pct:+.1f}%)"
                    )
                else:
                    rt = run.trial(run.TOOLS[name], r, args.n, workdir, args.storm_timeout)
                    trials.append(rt)
                    status = rt.error or (
                        f"seen {rt.seen}/{rt.n}, {rt.us_per_event:.1f} us/event, "
                        f"start-up {rt.startup_s:.2f} s, "
                        f"{rt.rate_tool:.0f} vs {rt.rate_base:.0f} conn/s "
                        f"({rt.slowdown_pct:+.1f}%)"
                    )
                print(f"  [{r + 1}/{args.repeat}] {name:<14} {status}", flush=True)

    by = summarize(trials)
    print(f"\nHistograms: N={args.n}, median [min..max] of {args.repeat} ({about})")
    print(table(by, trials, tools, args.n))
    print("\nRatios (medians):")
    print(ratios(by))
    print(f"\n(total {time.monotonic() - t_begin:.0f} s)")
    for f in workdir.glob("*.out"):
        f.unlink()
    summary = {
        "machine": about,
        "n": args.n,
        "repeat": args.repeat,
        "tools": tools,
        "trials": [asdict(t) for t in trials],
        "summary": by,
    }
    path = Path(args.json) if args.json else workdir / "results.json"
    path.write_text(json.dumps(summary, indent=1))
    print(f"results: {path}")
    bad = [t for t in trials if isinstance(t, HistTrial) and not t.ok]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
