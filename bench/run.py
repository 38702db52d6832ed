"""Side-by-side benchmark: the engine vs bpftrace vs a hand-written bcc script, one run.

    python -m bench.run [--n 100000] [--repeat 3] [--tools engine,bpftrace,bcc] [--quick]
    make bench ARGS="--quick"

For each tool and repeat (tools interleaved, order rotated every repeat):

1. baseline: a storm with no tool running -> connects/s without the tool;
2. the tool starts in its own session (its own autogroup, as from another terminal), its
   stdout to a file; a trickle of connects (one per 5 ms, in a fresh netns) runs until the
   tool prints its first event for the trickle's port -> start-up time (spawn to first line;
   count mode: spawn to the "Tracing" line);
3. after 1 s of quiet, the tool's CPU (utime+stime of its whole process tree, /proc) is read;
   then a storm of exactly N connect()+close() in a fresh netns -> connects/s with the tool;
4. wait until all N rows for the storm port are printed (or no new row for 2 s), read the CPU
   again: CPU per event = delta / events printed in between (count mode: / N);
5. SIGINT; events seen = rows whose DPORT is the storm port (count mode: its CONNECTS);
   lost = N - seen, and what the tool itself reported lost on stderr.

Storms run inside fresh network namespaces (TIME_WAIT sockets from earlier storms would
change the rate) on ports above 61000; the tools trace the host kernel, which sees every
netns. The table gives medians with [min .. max], and ratios engine/peer; --json writes
every trial. See docs/performance.md for the method and results.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
STORM = str(REPO / "bench" / "storm.py")
SPEC = "specs/tcpconnect.yaml"
TICK = os.sysconf("SC_CLK_TCK")

STORM_PORT = 61001
TRICKLE_PORT = 61002
TRICKLE_INTERVAL = 0.005
STARTUP_TIMEOUT = 120.0
SETTLE = 1.0  # after the first event, before the CPU is read
DRAIN_QUIET = 2.0  # no new storm row for this long: the tool has printed all it will
DRAIN_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0


@dataclass(frozen=True)
class Tool:
    name: str
    argv: tuple[str, ...]
    kind: str  # "events" (rows on stdout) or "count" (a table on exit)
    about: str


def engine(*flags: str) -> tuple[str, ...]:
    return (PY, "-m", "engine.cli", "run", SPEC, *flags)


TOOLS: dict[str, Tool] = {
    t.name: t
    for t in (
        Tool("engine", engine(), "events", f"engine run {SPEC} (ring buffer, table to a file)"),
        Tool("engine-w1", engine("--wakeup", "1"), "events", "engine ... --wakeup 1 (per event)"),
        Tool("engine-perf", engine("--perf-buffer"), "events", "engine ... --perf-buffer"),
        Tool("engine-json", engine("-o", "json"), "events", "engine ... -o json"),
        Tool("engine-count", engine("-c"), "count", "engine ... -c (count in the kernel)"),
        Tool(
            "bpftrace",
            ("bpftrace", "bench/peers/tcpconnect.bt"),
            "events",
            "bpftrace bench/peers/tcpconnect.bt (printf per event)",
        ),
        Tool(
            "bcc",
            (PY, "bench/peers/tcpconnect_bcc.py"),
            "events",
            "bench/peers/tcpconnect_bcc.py (perf buffer, callback, print per event)",
        ),
        Tool(
            "bcc-w32",
            (PY, "bench/peers/tcpconnect_bcc.py", "--wakeup", "32"),
            "events",
            "the bcc script, perf buffer woken every 32 events",
        ),
    )
}
for _reader in ("lean", "mmap"):
    for _w in (0, 32):
        _t = Tool(
            f"proto-{_reader}" + (f"-w{_w}" if _w else ""),
            (PY, "-m", "bench.proto_reader", "--reader", _reader, "--wakeup", str(_w)),
            "events",
            f"prototype reader '{_reader}' on the engine's BPF program, wakeup {_w}",
        )
        TOOLS[_t.name] = _t
DEFAULT_TOOLS = "engine,engine-count,bpftrace,bcc"
PEERS = ("bpftrace", "bcc")


# --- environment ----------------------------------------------------------------------------


def tool_env() -> dict[str, str]:
    """A user's shell: Python's stdout buffered, bytecode cached (outside the source tree)."""
    env = dict(os.environ)
    for k in ("PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONPROFILEIMPORTTIME"):
        env.pop(k, None)
    env["PYTHONPYCACHEPREFIX"] = "/tmp/engine-bench-pycache"
    return env


_ns_counter = itertools.count()


@contextlib.contextmanager
def netns() -> Iterator[str]:
    """A fresh network namespace with lo up; deleted afterwards."""
    name = f"enginebench-{os.getpid()}-{next(_ns_counter)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def storm_argv(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, PY, STORM, *args]


def run_storm(n: int, port: int, timeout: float) -> dict[str, float]:
    with netns() as ns:
        proc = subprocess.run(
            storm_argv(ns, "--port", str(port), "--n", str(n), "--timeout", str(timeout)),
            capture_output=True,
            text=True,
            timeout=timeout + 30,
            start_new_session=True,
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"storm failed ({proc.returncode}): {proc.stderr.strip()}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["ok"] != n:
        print(f"  warning: storm made {result['ok']} of {n} connects", file=sys.stderr)
    return dict(result)


# --- /proc ------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2 :].decode().split()


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def tree_cpu(root: int) -> tuple[float, float]:
    """(user, sys) seconds of a process tree, reaped children included."""
    user = system = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields:
            user += int(fields[11]) + int(fields[13])
            system += int(fields[12]) + int(fields[14])
    return user / TICK, system / TICK


def peak_rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


# --- the tool's output ------------------------------------------------------------------------


class Rows:
    """Follows a growing output file; counts rows by their last column (DPORT)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pos = 0
        self.partial = b""
        self.by_port: dict[bytes, int] = {}
        self.lines = 0

    def update(self) -> None:
        with open(self.path, "rb") as f:
            f.seek(self.pos)
            data = f.read()
        if not data:
            return
        self.pos += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        self.lines += len(lines)
        counts = self.by_port
        for line in lines:
            tail = line.rsplit(None, 1)[-1:] if line else []
            if tail:
                counts[tail[0]] = counts.get(tail[0], 0) + 1

    def port(self, port: int) -> int:
        return self.by_port.get(str(port).encode(), 0)


def count_table(path: Path, port: int) -> int:
    """Count mode: the CONNECTS of rows whose RPORT (next to last column) is `port`."""
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        tok = line.split()
        if len(tok) >= 2 and tok[-2] == str(port) and tok[-1].isdigit():
            total += int(tok[-1])
    return total


LOST_TOTAL = re.compile(r"(\d+) events lost in all", re.I)
LOST_ONE = re.compile(r"lost (\d+) events", re.I)


def reported_lost(text: str) -> int:
    total = LOST_TOTAL.findall(text)
    if total:
        return int(total[-1])
    return sum(int(x) for x in LOST_ONE.findall(text))


# --- one trial --------------------------------------------------------------------------------


@dataclass
class Trial:
    tool: str
    repeat: int
    n: int
    startup_s: float = 0.0
    seen: int = 0
    lost: int = 0
    lost_reported: int = 0
    events_in_window: int = 0
    cpu_user_s: float = 0.0
    cpu_sys_s: float = 0.0
    us_per_event: float = 0.0
    user_us_per_event: float = 0.0
    sys_us_per_event: float = 0.0
    rate_base: float = 0.0
    rate_tool: float = 0.0
    slowdown_pct: float = 0.0
    drain_s: float = 0.0
    rss_mb: float = 0.0
    error: str = ""
    notes: list[str] = field(default_factory=list)


class ToolProcess:
    """The tool in its own session, stdout/stderr to files; stopped with SIGINT."""

    def __init__(self, tool: Tool, workdir: Path, tag: str) -> None:
        self.tool = tool
        self.out_path = workdir / f"{tag}.out"
        self.err_path = workdir / f"{tag}.err"
        self.out_f = open(self.out_path, "wb")  # noqa: SIM115 (closed in stop)
        self.err_f = open(self.err_path, "wb")  # noqa: SIM115
        self.t_spawn = time.monotonic()
        self.proc = subprocess.Popen(
            list(tool.argv),
            cwd=REPO,
            env=tool_env(),
            stdin=subprocess.DEVNULL,
            stdout=self.out_f,
            stderr=self.err_f,
            start_new_session=True,
        )

    def err_text(self) -> str:
        return self.err_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.out_f.close()
        self.err_f.close()
        return self.proc.returncode


def wait_startup(tp: ToolProcess, rows: Rows) -> float:
    """Seconds from spawn to the first printed trickle event (count mode: "Tracing")."""
    deadline = tp.t_spawn + STARTUP_TIMEOUT
    with netns() as ns:
        trickle = None
        if tp.tool.kind == "events":
            trickle = subprocess.Popen(
                storm_argv(ns, "--port", str(TRICKLE_PORT), "--trickle", str(TRICKLE_INTERVAL)),
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            while time.monotonic() < deadline:
                if tp.tool.kind == "events":
                    rows.update()
                    if rows.port(TRICKLE_PORT):
                        return time.monotonic() - tp.t_spawn
                elif "Tracing" in tp.err_text():
                    return time.monotonic() - tp.t_spawn
                if not tp.alive():
                    raise RuntimeError(f"{tp.tool.name} exited: {tp.err_text().strip()[-500:]}")
                time.sleep(0.002)
            raise RuntimeError(f"{tp.tool.name}: no first event in {STARTUP_TIMEOUT:.0f} s")
        finally:
            if trickle is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(trickle.pid, signal.SIGTERM)
                trickle.wait(10)


def wait_drain(tp: ToolProcess, rows: Rows, n: int, storm_end: float) -> float:
    """Wait until every storm row is printed or none came for DRAIN_QUIET; last row's lag."""
    last_count, last_change = rows.port(STORM_PORT), time.monotonic()
    lag = 0.0
    while time.monotonic() - storm_end < DRAIN_TIMEOUT:
        rows.update()
        count = rows.port(STORM_PORT)
        now = time.monotonic()
        if count != last_count:
            last_count, last_change = count, now
            lag = now - storm_end
        if count >= n or now - last_change >= DRAIN_QUIET or not tp.alive():
            break
        time.sleep(0.02)
    return lag


Hook = Callable[["ToolProcess"], Callable[[], None]]


def trial(
    tool: Tool,
    repeat: int,
    n: int,
    workdir: Path,
    storm_timeout: float,
    around_storm: Hook | None = None,
) -> Trial:
    t = Trial(tool.name, repeat, n)
    base = run_storm(n, STORM_PORT, storm_timeout)
    t.rate_base = base["rate"]
    tp = ToolProcess(tool, workdir, f"{tool.name}-r{repeat}")
    rows = Rows(tp.out_path)
    try:
        t.startup_s = wait_startup(tp, rows)
        time.sleep(SETTLE)
        rows.update()
        lines0 = rows.lines
        finish = around_storm(tp) if around_storm else None
        user0, sys0 = tree_cpu(tp.proc.pid)
        storm = run_storm(n, STORM_PORT, storm_timeout)
        storm_end = time.monotonic()
        t.rate_tool = storm["rate"]
        if tool.kind == "events":
            t.drain_s = wait_drain(tp, rows, n, storm_end)
        else:
            time.sleep(SETTLE)
        user1, sys1 = tree_cpu(tp.proc.pid)
        if finish:
            finish()
        rows.update()
        t.rss_mb = peak_rss_mb(tp.proc.pid)
        t.events_in_window = rows.lines - lines0 if tool.kind == "events" else n
        alive = tp.alive()
    except Exception as exc:
        t.error = str(exc)
        tp.stop()
        return t
    code = tp.stop()
    if not alive:
        t.notes.append(f"exited before SIGINT (code {code})")
    rows.update()
    if tool.kind == "events":
        if rows.port(STORM_PORT) > t.events_in_window:
            t.notes.append(f"{rows.port(STORM_PORT) - t.events_in_window} rows only at exit")
        t.seen = rows.port(STORM_PORT)
    else:
        t.seen = count_table(tp.out_path, STORM_PORT)
    t.lost = n - t.seen
    t.lost_reported = reported_lost(tp.err_text())
    t.cpu_user_s, t.cpu_sys_s = user1 - user0, sys1 - sys0
    per = max(t.events_in_window, 1)
    t.user_us_per_event = t.cpu_user_s / per * 1e6
    t.sys_us_per_event = t.cpu_sys_s / per * 1e6
    t.us_per_event = t.user_us_per_event + t.sys_us_per_event
    t.slowdown_pct = (1 - t.rate_tool / t.rate_base) * 100
    return t


# --- extra measurements -----------------------------------------------------------------------


def lost_check(n: int, workdir: Path, storm_timeout: float) -> list[dict[str, Any]]:
    """A 1-page ring buffer should lose events, and the engine must say how many:
    seen + reported lost == N. Each variant is tried up to 3 times until a storm overflows.

    Wake-ups per event and batched (the default)."""
    results = []
    for flags in (("--wakeup", "1"), ()):
        argv = engine("--buffer-pages", "1", *flags)
        name = "engine-1page" + ("-w1" if flags else "")
        tool = Tool(name, argv, "events", "engine with a 1-page ring buffer")
        for attempt in range(3):
            t = trial(tool, attempt, n, workdir, storm_timeout)
            if t.error or t.seen < n:
                break
        consistent = t.seen + t.lost_reported == n
        verdict = (
            "error"
            if t.error
            else "no overflow (inconclusive)"
            if t.seen == n
            else "reported exactly"
            if consistent
            else "silent loss"
        )
        results.append(
            {
                "tool": name,
                "n": n,
                "seen": t.seen,
                "lost_reported": t.lost_reported,
                "ok": not t.error and consistent and t.seen < n,
                "verdict": verdict,
                "error": t.error,
            }
        )
    return results


def profile_reader(n: int, workdir: Path, storm_timeout: float, flags: tuple[str, ...]) -> str:
    """cProfile of the engine's reader loop (EventLoop.run) under one storm: top functions.

    cProfile measures wall time: the time ring_buffer_poll spends blocked in epoll_wait is in
    its tottime. Call counts are exact (polls per event = events per wake-up)."""
    import pstats
    from io import StringIO

    prof = workdir / ("reader" + "".join(flags).replace("-", "_") + ".prof")
    argv = (PY, "-m", "bench.engine_wrap", "--profile", str(prof), "--", "run", SPEC, *flags)
    t = trial(Tool("engine-cprofile", argv, "events", "cProfile"), 0, n, workdir, storm_timeout)
    if t.error or not prof.exists():
        return f"profile failed: {t.error}"
    buf = StringIO()
    stats = pstats.Stats(str(prof), stream=buf)
    stats.sort_stats("tottime").print_stats(16)
    head = (
        f"cProfile of EventLoop.run (wall time), engine run {SPEC} {' '.join(flags)}: "
        f"N={n}, seen {t.seen}, {t.us_per_event:.1f} us/event under the profiler\n"
    )
    text = buf.getvalue()
    start = text.find("   ncalls")
    return head + (text[start:] if start >= 0 else text)


def pyspy_reader(
    pyspy: str, n: int, workdir: Path, storm_timeout: float, flags: tuple[str, ...]
) -> str:
    """py-spy (sampling, native frames, on-CPU samples only) of `engine run` during a storm."""
    raw = workdir / ("pyspy" + "".join(flags).replace("-", "_") + ".txt")

    def hook(tp: ToolProcess) -> Callable[[], None]:
        argv = [pyspy, "record", "--pid", str(tp.proc.pid), "--native", "--rate", "250"]
        argv += ["--format", "raw", "--output", str(raw)]
        spy = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # py-spy attaches

        def finish() -> None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)

        return finish

    tool = Tool("engine-pyspy", engine(*flags), "events", "py-spy")
    t = trial(tool, 0, n, workdir, storm_timeout, around_storm=hook)
    if t.error or not raw.exists():
        return f"py-spy failed: {t.error}"
    return f"py-spy of engine run {SPEC} {' '.join(flags)} (N={n}, seen {t.seen}):\n" + (
        collapse(raw.read_text())
    )


def collapse(raw: str, top: int = 14) -> str:
    """Self and inclusive sample shares from py-spy's raw (collapsed stack) output."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        total += k
        frames = [
            re.sub(r"^0x[0-9a-f]+ ", "", re.sub(r":\d+\)$", ")", f)) for f in stack.split(";")
        ]
        own[frames[-1]] = own.get(frames[-1], 0) + k
        for f in set(frames):
            incl[f] = incl.get(f, 0) + k
    if not total:
        return "  (no samples)"
    lines = [f"  {total} on-CPU samples; self:"]
    for f, k in sorted(own.items(), key=lambda x: -x[1])[:top]:
        lines.append(f"  {100 * k / total:5.1f}%  {f}")
    lines.append("  inclusive (below EventLoop.run):")
    skip = ("runpy", "cli.py", "runner.py:run", "(libc.so.6)")
    for f, k in sorted(incl.items(), key=lambda x: -x[1]):
        if k == total or any(s in f for s in skip):
            continue
        lines.append(f"  {100 * k / total:5.1f}%  {f}")
        if len(lines) > 2 * top + 2:
            break
    return "\n".join(lines)


# --- summary ----------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    m = format(med(values), fmt)
    if len(values) == 1:
        return m
    return f"{m} [{format(min(values), fmt)}..{format(max(values), fmt)}]"


def summarize(trials: list[Trial], tools: list[str]) -> dict[str, dict[str, list[float]]]:
    by: dict[str, dict[str, list[float]]] = {}
    for t in trials:
        if t.error:
            continue
        d = by.setdefault(t.tool, {})
        for k in (
            "lost",
            "lost_reported",
            "us_per_event",
            "user_us_per_event",
            "sys_us_per_event",
            "startup_s",
            "rate_tool",
            "rate_base",
            "slowdown_pct",
            "drain_s",
            "rss_mb",
        ):
            d.setdefault(k, []).append(float(getattr(t, k)))
    return by


def table(by: dict[str, dict[str, list[float]]], tools: list[str], n: int) -> str:
    head = (
        f"{'tool':<13} {'lost/N':>9} {'CPU us/event':>20} {'user':>6} {'sys':>6} "
        f"{'start-up s':>18} {'connects/s':>8} {'slowdown %':>18} {'pooled':>6} "
        f"{'drain s':>7} {'RSS MB':>6}"
    )
    pooled = med([r for d in by.values() for r in d["rate_base"]])
    lines = [head, "-" * len(head)]
    for name in tools:
        d = by.get(name)
        if not d:
            lines.append(f"{name:<13} (no successful trial)")
            continue
        lost = f"{med(d['lost']):.0f}/{n}"
        lines.append(
            f"{name:<13} {lost:>9} {spread(d['us_per_event'], '.1f'):>20} "
            f"{med(d['user_us_per_event']):>6.1f} {med(d['sys_us_per_event']):>6.1f} "
            f"{spread(d['startup_s'], '.2f'):>18} {med(d['rate_tool']):>8.0f} "
            f"{spread(d['slowdown_pct'], '.1f'):>18} "
            f"{(1 - med(d['rate_tool']) / pooled) * 100:>6.1f} {med(d['drain_s']):>7.2f} "
            f"{med(d['rss_mb']):>6.0f}"
        )
    base = [r for d in by.values() for r in d["rate_base"]]
    lines.append(f"baseline storm (no tool): {spread(base, '.0f')} connects/s")
    lines.append(
        "slowdown %: median of each trial's 1 - with/without (baseline run just before it);"
        " pooled: 1 - median with / median of all baselines"
    )
    return "\n".join(lines)


def ratios(by: dict[str, dict[str, list[float]]], tools: list[str]) -> str:
    out = []
    for name in tools:
        if not name.startswith("engine") or name not in by:
            continue
        for peer in PEERS:
            if peer not in by:
                continue
            e, p = by[name], by[peer]
            cpu = med(e["us_per_event"]) / med(p["us_per_event"])
            start = med(e["startup_s"]) / med(p["startup_s"])
            slow = med(e["slowdown_pct"]) - med(p["slowdown_pct"])
            out.append(
                f"{name + '/' + peer:<24} CPU/event x{cpu:5.2f}   start-up x{start:5.2f}"
                f"   slowdown {slow:+5.1f} points"
            )
    return "\n".join(out)


def targets(
    by: dict[str, dict[str, list[float]]], n: int, own_ms: float | None, lost: list[dict]
) -> str:
    lines = []

    def check(label: str, ok: bool | None, detail: str) -> None:
        mark = "n/a " if ok is None else ("MEET" if ok else "MISS")
        lines.append(f"  [{mark}] {label}: {detail}")

    e = by.get("engine")
    if e:
        lost_med = med(e["lost"])
        check(
            f"0 events lost at N={n}" + ("" if n >= 100000 else " (target is at N=100000)"),
            max(e["lost"]) == 0,
            f"median {lost_med:.0f}, max {max(e['lost']):.0f}",
        )
        if "bpftrace" in by:
            r = med(e["us_per_event"]) / med(by["bpftrace"]["us_per_event"])
            check("CPU/event <= 0.3x bpftrace", r <= 0.3, f"x{r:.2f}")
        check(
            "storm slowdown <= 3%",
            med(e["slowdown_pct"]) <= 3,
            f"{med(e['slowdown_pct']):.1f}%",
        )
        if "bcc" in by:
            r = med(e["startup_s"]) / med(by["bcc"]["startup_s"])
            check("start-up <= 1.1x the bcc script", r <= 1.1, f"x{r:.2f}")
    if own_ms is not None:
        check("engine's own start-up <= 150 ms warm", own_ms <= 150, f"{own_ms:.0f} ms")
    c = by.get("engine-count")
    if c:
        check(
            "count mode ~0 user CPU per event",
            med(c["user_us_per_event"]) < 0.5,
            f"{med(c['user_us_per_event']):.2f} us user, {med(c['sys_us_per_event']):.2f} us sys",
        )
    for r in lost:
        check(
            f"lost events reported, 1-page ring buffer ({r['tool']})",
            None if r["verdict"].startswith("no overflow") else r["ok"],
            f"seen {r['seen']} + reported lost {r['lost_reported']} = "
            f"{r['seen'] + r['lost_reported']} of {r['n']}: {r['verdict']}",
        )
    return "\n".join(lines)


def machine() -> str:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = Path("/proc/loadavg").read_text().split()[:3]
    return (
        f"{os.cpu_count()} CPUs ({model}), kernel {platform.release()}, "
        f"load average before the run {' '.join(load)}"
    )


def check_tools(names: list[str]) -> None:
    for name in names:
        exe = TOOLS[name].argv[0]
        if shutil.which(exe) is None and not Path(exe).exists():
            sys.exit(f"bench: {name} needs {exe} (make bench installs bpftrace)")
    if os.geteuid() != 0:
        sys.exit("bench: needs root (loads BPF programs, creates network namespaces)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="tools: " + ", ".join(f"{t.name} ({t.about})" for t in TOOLS.values()),
    )
    p.add_argument("--n", type=int, default=100000, help="connects per storm (>= 20000)")
    p.add_argument("--repeat", type=int, default=3, help="trials per tool (interleaved)")
    p.add_argument("--tools", default=DEFAULT_TOOLS, help=f"default: {DEFAULT_TOOLS}")
    p.add_argument("--quick", action="store_true", help="smoke run: N=20000, repeat 1")
    p.add_argument("--storm-timeout", type=float, default=120.0, help="bound of one storm, s")
    p.add_argument("--no-startup", action="store_true", help="skip the in-process start-up")
    p.add_argument("--no-lost-check", action="store_true", help="skip the 1-page buffer check")
    p.add_argument(
        "--profile",
        action="store_true",
        help="profile the engine's reader loop under a storm (cProfile; py-spy if found)",
    )
    p.add_argument("--py-spy", metavar="PATH", help="py-spy executable (default: on PATH)")
    p.add_argument("--json", metavar="FILE", help="write every trial and the summary here")
    p.add_argument("--keep", action="store_true", help="keep the tools' output files")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.repeat = 20000, 1
    if args.n < 20000:
        print("bench: note: N < 20000 makes 10 ms CPU ticks coarse", file=sys.stderr)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [t for t in tools if t not in TOOLS]
    if unknown:
        p.error(f"unknown tool(s) {', '.join(unknown)}; known: {', '.join(TOOLS)}")
    check_tools(tools)

    results_root = REPO / "bench" / "results"
    results_root.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=results_root))
    about = machine()
    print(f"machine: {about}")
    print(f"N={args.n}, repeat {args.repeat}, tools {', '.join(tools)}; files in {workdir}")

    own_ms = None
    startup_stages: dict[str, list[float]] = {}
    if not args.no_startup:
        from bench import startup

        startup_stages = startup.measure(SPEC, 7, os.geteuid() == 0, True)
        own_ms = med(startup_stages["own"]) * 1000
        parts = ", ".join(
            f"{k} {med(v) * 1000:.0f}" for k, v in startup_stages.items() if k in startup.ORDER
        )
        print(f"engine start-up stages (ms, median of 7 fresh processes): {parts}")

    trials: list[Trial] = []
    t_begin = time.monotonic()
    for r in range(args.repeat):
        order = tools[r % len(tools) :] + tools[: r % len(tools)]
        for name in order:
            t = trial(TOOLS[name], r, args.n, workdir, args.storm_timeout)
            trials.append(t)
            status = t.error or (
                f"seen {t.seen}/{t.n} (reported lost {t.lost_reported}), "
                f"{t.us_per_event:.1f} us/event ({t.user_us_per_event:.1f} user), "
                f"start-up {t.startup_s:.2f} s, {t.rate_tool:.0f} vs {t.rate_base:.0f} conn/s "
                f"({t.slowdown_pct:+.1f}%), drain {t.drain_s:.2f} s"
                + (f"; {'; '.join(t.notes)}" if t.notes else "")
            )
            print(f"  [{r + 1}/{args.repeat}] {name:<13} {status}", flush=True)

    lost: list[dict[str, Any]] = []
    if not args.no_lost_check:
        lost = lost_check(20000, workdir, args.storm_timeout)
        for x in lost:
            print(f"  lost-check {x['tool']}: {x}")

    profile_text = ""
    if args.profile:
        texts = [profile_reader(args.n, workdir, args.storm_timeout, ())]
        pyspy = args.py_spy or shutil.which("py-spy")
        if pyspy:
            for flags in ((), ("--wakeup", "32")):
                texts.append(pyspy_reader(pyspy, args.n, workdir, args.storm_timeout, flags))
        else:
            texts.append("(py-spy not found: pass --py-spy PATH for a native profile)")
        profile_text = "\n\n".join(texts)

    by = summarize(trials, tools)
    print(f"\nResults: N={args.n}, median [min..max] of {args.repeat} ({about})")
    print(table(by, tools, args.n))
    print("\nRatios (medians), engine / peer:")
    print(ratios(by, tools))
    print("\nTargets:")
    print(targets(by, args.n, own_ms, lost))
    if profile_text:
        print("\n" + profile_text)
    print(f"\n(total {time.monotonic() - t_begin:.0f} s)")

    if not args.keep:
        for f in workdir.glob("*.out"):
            f.unlink()
    summary = {
        "machine": about,
        "n": args.n,
        "repeat": args.repeat,
        "tools": tools,
        "startup_stages_s": startup_stages,
        "trials": [asdict(t) for t in trials],
        "lost_check": lost,
        "summary": by,
        "profile": profile_text,
    }
    path = Path(args.json) if args.json else workdir / "results.json"
    path.write_text(json.dumps(summary, indent=1))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
