"""`engine serve`: specs' in-kernel aggregations as Prometheus metrics.

Each spec gets its own bcc session; its aggregations stay in the kernel and a collector reads
the maps at scrape time (engine.runtime.aggregates), so there is no copy loop and a scrape
shows the maps as they are; engine.runtime.exposition writes the text. Policy:

- A spec mistake (schema, names, no aggregation, a bad `metrics:` entry) refuses to start,
  with the spec's located lines: it is the user's typing and would never serve.
- A spec that fails to load in the kernel (compile, verifier, no attach alternative) is
  reported on stderr, counted in engine_spec_load_errors_total{spec}, and the others serve;
  if none loads, serve exits 1.
- SIGTERM/SIGINT stop the HTTP server and detach every session.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import platform
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from engine import aggs
from engine.errors import EngineError, SpecError, UsageError
from engine.kernel import containers
from engine.pipeline import check
from engine.plan import model as M
from engine.runtime import decoders, runner
from engine.runtime.aggregates import Aggregate, Bucket, Series
from engine.runtime.exposition import Family, LabelText, render
from engine.runtime.loop import MapAggregations
from engine.runtime.prom import (  # noqa: F401  (the metric model, re-exported for tests)
    DEFAULT_MAX_SERIES,
    TYPES,
    UNITS,
    Metric,
    clashes,
    metric_models,
    no_aggregation_problem,
    sanitize,
    serving_program,
)
from engine.runtime.promhttp import HttpServer, Limits, Stats, WebConfig, load_web_config

DEFAULT_LISTEN = "127.0.0.1:9435"
OTHER = "other"


# --- the cardinality budget (user-space stopgap; the kernel's overflow comes with the sinks) ---


def merge(kind: str, labels: tuple[tuple[str, str], ...], parts: Sequence[Series]) -> Series:
    """Series folded into one, so totals are kept: counts and buckets add up."""
    k = aggs.KINDS[kind]
    if isinstance(k, aggs.Histogram):
        per_le: dict[float, int] = {}
        for s in parts:
            for b in s.buckets:
                per_le[b.le] = per_le.get(b.le, 0) + b.count
        buckets = tuple(Bucket(le, n) for le, n in sorted(per_le.items()))
        return Series(
            labels,
            buckets=buckets,
            sum=sum(s.sum for s in parts),
            count=sum(s.count for s in parts),
        )
    if k is aggs.AVG:
        total, n = sum(s.sum for s in parts), sum(s.count for s in parts)
        return Series(labels, value=total / n if n else 0.0, sum=total, count=n)
    return Series(labels, value=k.fold([s.value for s in parts]))


@dataclass
class Budget:
    """At most `max_series` keyed series, plus one `other` that carries every later key.

    Keys are admitted first come, first kept, across scrapes: a counter never moves between
    a key's series and `other`, so both only rise. `overflowed` counts keys sent to `other`."""

    max_series: int
    admitted: set[tuple[tuple[str, str], ...]] = field(default_factory=set)
    overflowed: set[tuple[tuple[str, str], ...]] = field(default_factory=set)

    def apply(self, agg: Aggregate) -> list[Series]:
        kept, rest = [], []
        for s in agg.series:
            if agg.key_fields and all(v == OTHER for _, v in s.labels):
                rest.append(s)  # the kernel's own overflow series: the same `other`
                continue
            if s.labels in self.admitted:
                kept.append(s)
            elif s.labels not in self.overflowed and len(self.admitted) < self.max_series:
                self.admitted.add(s.labels)
                kept.append(s)
            else:
                self.overflowed.add(s.labels)
                rest.append(s)
        if rest:
            labels = tuple((k, OTHER) for k in agg.key_fields)
            kept.append(merge(agg.kind, labels, rest))
        return kept


# --- BPF program statistics (kernel.bpf_stats_enabled) -------------------------------------


BPF_OBJ_GET_INFO_BY_FD = 15
SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "s390x": 351, "ppc64le": 361}
RUN_TIME_NS_AT, RUN_CNT_AT, INFO_SIZE = 192, 200, 256  # struct bpf_prog_info offsets


def stats_enabled() -> bool:
    try:
        with open("/proc/sys/kernel/bpf_stats_enabled") as f:
            return f.read().strip() == "1"
    except OSError:
        return False


def prog_stats(fd: int) -> tuple[int, int]:
    """(run count, run time in ns) of a BPF program fd, via BPF_OBJ_GET_INFO_BY_FD."""
    number = SYS_BPF.get(platform.machine())
    if number is None:
        raise OSError(f"bpf syscall number unknown on {platform.machine()}")
    info = ctypes.create_string_buffer(INFO_SIZE)

    class Attr(ctypes.Structure):
        _fields_ = (
            ("bpf_fd", ctypes.c_uint32),
            ("info_len", ctypes.c_uint32),
            ("info", ctypes.c_uint64),
        )

    attr = Attr(fd, INFO_SIZE, ctypes.addressof(info))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(number, BPF_OBJ_GET_INFO_BY_FD, ctypes.byref(attr), ctypes.sizeof(attr)):
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    raw = info.raw
    run_time = int.from_bytes(raw[RUN_TIME_NS_AT : RUN_TIME_NS_AT + 8], sys.byteorder)
    run_cnt = int.from_bytes(raw[RUN_CNT_AT : RUN_CNT_AT + 8], sys.byteorder)
    return run_cnt, run_time


# --- the collector ----------------------------------------------------------------------------


@dataclass
class Served:
    """One loaded spec: its session, metric models and budgets."""

    spec: str
    session: Any  # runner.Session
    metrics: dict[str, Metric]
    budgets: dict[str, Budget]
    # keys each LRU state map evicted, the most yet read (a counter never goes down; a read
    # while probes run can only come out low: runner.Session.evicted)
    evicted: dict[str, int] = field(default_factory=dict)
    aggregations: MapAggregations = field(init=False)  # the runtime sink scrapes read

    def __post_init__(self) -> None:
        self.aggregations = MapAggregations(self.session)


def le_text(le: float) -> str:
    return "+Inf" if math.isinf(le) else repr(float(le))


# The engine's own metric families: name -> (counter?, help, labels); PER_SPEC ones get a
# row per served spec. Scrapes list the spec metrics first, then these in this order.
OWN: dict[str, tuple[bool, str, tuple[str, ...]]] = {
    "engine_series_overflow": (
        True, "Keys folded into the 'other' series by the metric's series budget.",
        ("spec", "metric"),
    ),
    "engine_aggregation_dropped_events": (
        True, "Events the kernel dropped: their key did not fit the aggregation's map.",
        ("spec", "metric"),
    ),
    "engine_state_update_failures": (
        True, "Failed state-map updates in the kernel (map full).", ("spec", "state"),
    ),
    "engine_state_evictions": (
        True,
        "Keys an LRU state map evicted (map full): events that found nothing to pair with.",
        ("spec", "state"),
    ),
    "engine_spec_load_errors": (
        True, "Specs that failed to load into the kernel at start (they are not served).",
        ("spec",),
    ),
    "engine_specs_loaded": (False, "Specs being served.", ()),
    "engine_scrape_errors": (True, "Scrapes where reading a spec's maps failed.", ()),
    "engine_http_connections": (
        False, "HTTP connections open (this scrape's included).", (),
    ),
    "engine_http_connections_closed": (
        True,
        "HTTP connections the server closed: the client was too slow (timeout), sent "
        "too large a head, waited for its request when the limit was reached (evicted), "
        "came over the limit, sent a bad request, or failed the TLS handshake.",
        ("reason",),
    ),
    "engine_bpf_program_runs": (
        True, "BPF program runs (kernel.bpf_stats_enabled=1 only).", ("spec", "program"),
    ),
    "engine_bpf_program_run_seconds": (
        True, "Time spent in the BPF program (kernel.bpf_stats_enabled=1 only).",
        ("spec", "program"),
    ),
    "engine_container_list_failures": (
        True,
        "Listings of the node's containers where a runtime failed to answer (by source: "
        "podman, cri, containerd; listing: the listing itself raised). Container labels "
        "name what the last good listing knew.",
        ("source",),
    ),
    "engine_scrape_duration_seconds": (
        False, "How long reading the maps took for this scrape (up to this line).", (),
    ),
}  # fmt: skip
PER_SPEC = (
    "engine_series_overflow",
    "engine_aggregation_dropped_events",
    "engine_state_update_failures",
    "engine_state_evictions",
    "engine_bpf_program_runs",
    "engine_bpf_program_run_seconds",
)
OWN_ORDER = {name: i for i, name in enumerate(OWN)}


def own_family(name: str) -> Any:
    """An empty family of the engine's own metric `name` (OWN)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    counter, help_text, labels = OWN[name]
    family = CounterMetricFamily if counter else GaugeMetricFamily
    return family(name, help_text, labels=list(labels))


@dataclass(frozen=True)
class Read:
    """What one scrape read of a served spec: its aggregations and its kernel counters."""

    aggregates: list[Aggregate]
    errors: list[int]
    evicted: list[int]


class EngineCollector:
    """Reads every served spec's maps at each scrape: its families are the spec metrics'
    (engine.runtime.exposition.Family) and the engine's own (prometheus_client families),
    printed by exposition.render."""

    def __init__(
        self, served: list[Served], load_errors: dict[str, int], http: Stats | None = None
    ) -> None:
        self.served = served
        self.load_errors = load_errors
        self.http = http or Stats()
        self.lock = threading.Lock()  # bcc map reads are not meant to run concurrently
        self.last_duration = 0.0
        self.scrape_errors = 0
        self.log2_top: dict[str, float] = {}  # metric -> the highest log2 `le` ever filled
        self.label_texts = LabelText()  # a series' label text, kept across scrapes

    def describe(self) -> list[Any]:
        return []  # unchecked collector: the families are known only at scrape time

    def collect(self) -> Iterator[Any]:
        with self.lock:
            start = time.perf_counter()
            decoders.refresh_kallsyms()
            own = {name: own_family(name) for name in PER_SPEC}
            families: list[Any] = []
            with_stats = stats_enabled()
            for served in self.served:
                try:
                    read = Read(
                        served.aggregations.read(),
                        served.session.errors(),
                        served.session.evicted(),
                    )
                except Exception as exc:  # a map read failing must not end the daemon
                    self.scrape_errors += 1
                    print(f"engine serve: reading {served.spec}: {exc}", file=sys.stderr)
                    continue
                families += self.collect_spec(served, read, own, with_stats)
            if not with_stats:
                del own["engine_bpf_program_runs"], own["engine_bpf_program_run_seconds"]
            load = own_family("engine_spec_load_errors")
            for spec, n in sorted(self.load_errors.items()):
                load.add_metric([spec], n)
            loaded = own_family("engine_specs_loaded")
            loaded.add_metric([], len(self.served))
            scrape_err = own_family("engine_scrape_errors")
            scrape_err.add_metric([], self.scrape_errors)
            conns = own_family("engine_http_connections")
            conns.add_metric([], self.http.open)
            closed = own_family("engine_http_connections_closed")
            for reason, n in self.http.closed.items():
                closed.add_metric([reason], n)
            families += [*own.values(), load, loaded, scrape_err, conns, closed]
            watch = containers.current()
            if watch is not None:  # only where a flag or a label reads containers
                listed = own_family("engine_container_list_failures")
                for source, n in sorted(watch.failed.items()):
                    listed.add_metric([source], n)
                families.append(listed)
            last = own_family("engine_scrape_duration_seconds")
            last.add_metric([], time.perf_counter() - start)
            families.append(last)
        yield from sorted(families, key=lambda f: OWN_ORDER.get(f.name, -1))

    def collect_spec(
        self, served: Served, read: Read, own: dict[str, Any], stats: bool
    ) -> list[Any]:
        """One spec's metrics from what its runtime sink (MapAggregations) and counters read
        at this scrape, and its rows of the engine's own families. Only the reads may fail
        and skip a spec: what is built from them is the engine's, and a bug there fails the
        scrape rather than showing part of a spec."""
        families = []
        for agg in read.aggregates:
            metric = served.metrics[agg.name]
            budget = served.budgets[agg.name]
            families.append(self.family(metric, agg, budget.apply(agg)))
            own["engine_series_overflow"].add_metric(
                [served.spec, metric.name], len(budget.overflowed)
            )
            own["engine_aggregation_dropped_events"].add_metric(
                [served.spec, metric.name], agg.dropped
            )
        program = served.session.program
        for st, n, gone in zip(program.states, read.errors, read.evicted):
            own["engine_state_update_failures"].add_metric([served.spec, st.name], n)
            if st.lru:
                most = served.evicted[st.name] = max(served.evicted.get(st.name, 0), gone)
                own["engine_state_evictions"].add_metric([served.spec, st.name], most)
        if stats:
            for raw, fn in sorted(getattr(served.session.bpf, "funcs", {}).items()):
                name = raw.decode() if isinstance(raw, bytes) else str(raw)
                with contextlib.suppress(OSError):
                    count, ns = prog_stats(fn.fd)
                    own["engine_bpf_program_runs"].add_metric([served.spec, name], count)
                    own["engine_bpf_program_run_seconds"].add_metric([served.spec, name], ns / 1e9)
        return families

    def bounds(self, metric: Metric, agg: Aggregate, series: list[Series]) -> list[float]:
        """The `le`s of every series of a histogram at this scrape, +Inf last: an lhist's
        all; a log2's bucket 1 (le 1) up to the highest ever filled, which never shrinks, so a
        bucket series once shown stays, and every one below the top is there from the start."""
        seen = {b.le for s in series for b in s.buckets if not math.isinf(b.le)}
        if aggs.KINDS[agg.kind] is not aggs.LOG2:
            return sorted(set(agg.bounds) | seen | {math.inf})
        top = max(seen | {self.log2_top.get(metric.name, 0.0)})
        self.log2_top[metric.name] = top
        les = []
        i = 1
        while (1 << i) - 1 <= top:
            les.append(float((1 << i) - 1))
            i += 1
        return sorted(set(les) | seen | {math.inf})

    def family(self, metric: Metric, agg: Aggregate, series: list[Series]) -> Family:
        """The metric's family at this scrape, its sample lines written here (each series'
        label text is made once and kept: engine.runtime.exposition)."""
        d = metric.divisor
        fam = Family(metric.name, metric.type, metric.help)
        texts = self.label_texts
        if metric.type == "histogram":
            bounds = self.bounds(metric, agg, series)
            les = [le_text(le / d) for le in bounds]
            for s in series:
                raw = {b.le: b.count for b in s.buckets}
                cumulative, running = [], 0
                for le, text in zip(bounds, les):
                    running += raw.get(le, 0)
                    cumulative.append((text, running))
                fam.histogram(s.labels, texts, cumulative, running, s.sum / d)
            return fam
        for s in series:
            fam.value(texts(s.labels), s.value / d if d != 1.0 else s.value)
        return fam


# --- HTTP (engine.runtime.promhttp) -------------------------------------------------------


def parse_listen(text: str) -> tuple[str, int]:
    """ADDR:PORT or [V6ADDR]:PORT; a usage error naming --listen otherwise."""
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d+)|([^:\[\]]+):(\d+)", text)
    if not m:
        raise UsageError(f"--listen: '{text}' is not ADDR:PORT (e.g. {DEFAULT_LISTEN})")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if port > 65535:
        raise UsageError(f"--listen: port {port} is out of range (0..65535)")
    return host, port


# --- the verb ---------------------------------------------------------------------------------


def plan_spec(path: str, btf: str | None = None) -> tuple[M.Plan, M.Program, dict[str, Metric]]:
    """Load, check and bind one spec for serving: its aggregations, or output.count. The
    metric checks are `engine validate`'s (engine.runtime.prom.metric_models)."""
    checked = check(path, btf)
    plan = checked.plan
    program = serving_program(plan)
    if not program.aggregations:
        raise SpecError([no_aggregation_problem(checked.spec, plan)])
    return plan, program, metric_models(plan, program, checked.spec)


def run_serve(
    specs: Sequence[str],
    listen: str,
    verbose: bool,
    limits: Limits | None = None,
    web_config: str | None = None,
    scope: runner.Scope | None = None,
) -> int:
    host, port = parse_listen(listen)
    web = load_web_config(web_config) if web_config else WebConfig()
    planned = [plan_spec(p) for p in specs]  # every spec mistake before touching the kernel
    names = [p.name for p, _, _ in planned]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise UsageError(f"spec name '{dup}' is given twice; each served spec needs its own name")
    # Two specs' metrics may not share a name either: one scrape would carry both.
    problems = clashes([m for _, _, metrics in planned for m in metrics.values()])
    if problems:
        raise SpecError(problems)
    runner.check_privileges()
    stop = runner.Stop()
    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    served: list[Served] = []
    load_errors: dict[str, int] = {}
    server = None
    watch: containers.Watch | None = None
    scope = scope or runner.Scope()
    try:
        for (plan, program, metrics), path in zip(planned, specs):
            counted = any(s.agg.by_count for s in program.aggregations)
            config = runner.RunConfig(verbose=verbose, count=counted, scope=scope)
            load_errors[plan.name] = 0
            try:
                session = runner.start(plan, config, M.Transport.RINGBUF)
            except EngineError as exc:
                load_errors[plan.name] = 1
                runner.say(f"engine serve: {path}: not served: {exc}")
                continue
            budgets = {n: Budget(m.max_series) for n, m in metrics.items()}
            served.append(Served(plan.name, session, metrics, budgets))
            for m in metrics.values():
                runner.say(f"{plan.name}: {m.type} {m.name}")
        if not served:
            raise EngineError("engine serve: no spec loaded; nothing to serve")
        if scope.selectors:  # containers started later join every spec's cgroup array
            watch = containers.shared()
            for s in served:
                runner.keep_scope(watch, s.session, scope)
        stats = Stats()
        collector = EngineCollector(served, load_errors, stats)
        server = HttpServer(
            lambda: render(collector.collect()), lambda: bool(served), limits, web, stats
        )
        try:
            bound = server.start(host, port)
        except OSError as exc:
            server = None
            raise UsageError(f"--listen {listen}: {exc.strerror or exc}") from None
        shown = f"[{host}]" if ":" in host else host
        scheme = "https" if web.tls is not None else "http"
        runner.say(
            f"serving {scheme}://{shown}:{bound}/metrics ({len(served)} specs"
            f"{', basic auth' if web.users else ''}); Ctrl-C to end"
        )
        while not stop.requested:
            time.sleep(runner.POLL_MS / 1000)
        return 0
    finally:
        if server is not None:
            server.stop()
        if watch is not None:
            watch.stop()  # before the sessions close: its thread writes their arrays
        for s in served:
            s.session.close()
        for sig, handler in old.items():
            signal.signal(sig, handler)
