"""engine serve without the kernel: the metric model, the series budget and the exposition.

Specs are planned against the committed BTF fixture; the exposition is prometheus_client's
own text output of Aggregates built by hand (what MapAggregations.read returns), parsed back with
prometheus_client's parser.
"""

from __future__ import annotations

import math
import pathlib
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.errors import SpecError, UsageError
from engine.runtime import decoders
from engine.runtime.aggregates import KINDS, Aggregate, Bucket, Series
from engine.runtime.exposition import render
from engine.verbs import serve

ROOT = pathlib.Path(__file__).resolve().parents[2]
BTF = str(ROOT / "tests" / "fixtures" / "btf" / "linux-6.18.44-fc.btf.xz")
BUDGET_SPEC = (ROOT / "tests" / "specs" / "serve" / "tcpbudget.yaml").read_text()


def write(tmp_path: pathlib.Path, text: str) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return str(path)


def problems_of(tmp_path: pathlib.Path, text: str) -> list[str]:
    """serve's refusal of the spec, each problem as `line:col: message [path]`; and validate
    (the same function) must say exactly the same."""
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as err:
        serve.plan_spec(path, BTF)
    lines = [p.format().split("spec.yaml:", 1)[1] for p in err.value.problems]
    r = subprocess.run(
        [sys.executable, "-m", "engine.cli", "validate", "--btf", BTF, path],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    said = [
        line.split("spec.yaml:", 1)[1] for line in r.stdout.splitlines() if "spec.yaml:" in line
    ]
    assert said == lines
    return lines


def test_count_mode_is_a_counter_named_by_its_header() -> None:
    _, program, metrics = serve.plan_spec(str(ROOT / "specs" / "tcpconnect.yaml"), BTF)
    assert [s.agg.by_count for s in program.aggregations] == [True]
    (m,) = metrics.values()
    assert (m.name, m.type, m.divisor, m.max_series) == ("tcpconnect_connects", "counter", 1, 1000)


def test_declared_budget_and_name(tmp_path: pathlib.Path) -> None:
    text = BUDGET_SPEC.replace("count: {max_series: 5}", "count: {max_series: 5, name: x_total}")
    _, _, metrics = serve.plan_spec(write(tmp_path, text), BTF)
    assert (metrics["count"].name, metrics["count"].max_series) == ("x", 5)


def test_unit_converts_only_when_declared(tmp_path: pathlib.Path) -> None:
    text = BUDGET_SPEC.replace(
        "output:\n",
        "output:\n  aggregations:\n"
        "    - {name: ports, sum: dport, by: [comm], unit: ns}\n"
        "    - {name: plain, max: dport, unit: widgets}\n",
    ).replace("metrics:\n  count: {max_series: 5}\n", "")
    _, _, metrics = serve.plan_spec(write(tmp_path, text), BTF)
    assert (metrics["ports"].name, metrics["ports"].divisor) == ("tcpbudget_ports_seconds", 1e9)
    assert (metrics["plain"].name, metrics["plain"].type, metrics["plain"].divisor) == (
        "tcpbudget_plain",
        "gauge",
        1.0,
    )


def test_metrics_entry_for_no_aggregation_is_located(tmp_path: pathlib.Path) -> None:
    text = BUDGET_SPEC.replace("count: {max_series: 5}", "cuont: {max_series: 5}")
    (p,) = problems_of(tmp_path, text)
    assert p.endswith(
        "22:3: error: metrics: no aggregation 'cuont' (aggregations: count; "
        "output.count is 'count') [$.metrics.cuont]"
    )


def test_wrong_type_is_located(tmp_path: pathlib.Path) -> None:
    """validate said nothing of what serve then refused (issue 17, item 10)."""
    text = BUDGET_SPEC.replace("count: {max_series: 5}", "count: {type: histogram}")
    assert problems_of(tmp_path, text) == [
        "22:17: error: metrics: a count aggregation is a counter or gauge, not a histogram "
        "[$.metrics.count.type]"
    ]


def test_validate_refuses_a_metrics_section_with_nothing_to_serve(
    tmp_path: pathlib.Path,
) -> None:
    text = BUDGET_SPEC.split("  count:\n")[0] + "metrics: {}\n"
    (line,) = problems_of(tmp_path, text)
    assert "spec 'tcpbudget' has no aggregation to serve" in line
    path = write(tmp_path, BUDGET_SPEC.split("  count:\n")[0])  # no metrics: fine for run
    r = subprocess.run(
        [sys.executable, "-m", "engine.cli", "validate", "--btf", BTF, path],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stdout


def test_spec_without_aggregation_refused(tmp_path: pathlib.Path) -> None:
    text = BUDGET_SPEC.split("  count:\n")[0]
    with pytest.raises(SpecError) as err:
        serve.plan_spec(write(tmp_path, text), BTF)
    assert "spec 'tcpbudget' has no aggregation to serve" in err.value.problems[0].message


def test_serve_of_a_bad_spec_is_one_line_exit_1(tmp_path: pathlib.Path) -> None:
    path = write(
        tmp_path,
        BUDGET_SPEC.replace("count: {max_series: 5}", "count: {type: gauge, max_series: 0}"),
    )
    r = subprocess.run(
        [sys.executable, "-m", "engine.cli", "serve", path],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,  # a serve that wrongly started would never end by itself
    )
    assert r.returncode == 1
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.endswith(
        "spec.yaml:22:36: error: max_series must be at least 1, got 0"
        " [$.metrics.count.max_series]\n"
    )


@pytest.mark.parametrize(
    ("text", "want"),
    [("127.0.0.1:9435", ("127.0.0.1", 9435)), ("[::1]:0", ("::1", 0)), ("host:80", ("host", 80))],
)
def test_listen(text: str, want: tuple[str, int]) -> None:
    assert serve.parse_listen(text) == want


@pytest.mark.parametrize("text", ["9435", "::1:80", "a:99999", "a:"])
def test_listen_errors(text: str) -> None:
    with pytest.raises(UsageError, match="--listen"):
        serve.parse_listen(text)


def test_every_aggregation_kind_has_a_converter_and_a_type() -> None:
    from engine.runtime.sinks import KINDS as SINK_KINDS

    assert set(KINDS) == set(SINK_KINDS) == set(serve.TYPES)


# --- budget and exposition ------------------------------------------------------------------


def lab(port: str) -> tuple[tuple[str, str], ...]:
    return (("dport", port),)


def test_budget_keeps_first_keys_and_folds_the_rest() -> None:
    agg = Aggregate(
        "count", "count", ("dport",), "", tuple(Series(lab(str(p)), p) for p in range(1, 8)), 0
    )
    budget = serve.Budget(3)
    first = budget.apply(agg)
    assert [(s.labels, s.value) for s in first] == [
        (lab("1"), 1),
        (lab("2"), 2),
        (lab("3"), 3),
        (lab("other"), 4 + 5 + 6 + 7),
    ]
    assert len(budget.overflowed) == 4
    # A new key later never displaces an admitted one, and an old overflowed one stays out.
    later = Aggregate("count", "count", ("dport",), "", (Series(lab("9"), 9), *agg.series), 0)
    again = budget.apply(later)
    assert [s.labels for s in again][:3] == [lab("1"), lab("2"), lab("3")]
    assert again[-1].value == 9 + 4 + 5 + 6 + 7


def test_the_kernels_other_series_joins_the_budgets_other() -> None:
    """Keys past the map's size arrive already folded by the kernel as `other`: the budget
    adds them to its own `other`, never admits them as a key, and makes one series of both."""
    series = (Series(lab("other"), 10), *(Series(lab(str(p)), p) for p in range(1, 5)))
    agg = Aggregate("count", "count", ("dport",), "", series, 10)
    out = serve.Budget(3).apply(agg)
    assert [(s.labels, s.value) for s in out] == [
        (lab("1"), 1),
        (lab("2"), 2),
        (lab("3"), 3),
        (lab("other"), 10 + 4),
    ]


def test_budget_merges_histograms_bucket_by_bucket() -> None:
    a = Series(lab("1"), buckets=(Bucket(1, 2), Bucket(7, 1)), sum=9, count=3)
    b = Series(lab("2"), buckets=(Bucket(7, 4), Bucket(math.inf, 1)), sum=5000, count=5)
    merged = serve.merge("log2", lab("other"), [a, b])
    assert merged.buckets == (Bucket(1, 2), Bucket(7, 5), Bucket(math.inf, 1))
    assert (merged.sum, merged.count) == (5009, 8)


def exposition(
    metric: serve.Metric, agg: Aggregate, collector: serve.EngineCollector | None = None
) -> dict[str, float]:
    collector = collector or serve.EngineCollector([], {})
    text = render([collector.family(metric, agg, list(agg.series))]).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[s.name + str(sorted(s.labels.items()))] = s.value
    return out


def test_histogram_in_seconds_is_cumulative_and_consistent() -> None:
    """ns buckets -> seconds; _count is the bucket total and _sum the converted sum; every
    log2 bucket from le 1 up to the highest filled is there for every series."""
    metric = serve.Metric("runq", "lat", "runq_lat_seconds", "h", "histogram", 1e9, 10)
    s1 = Series(lab("a"), buckets=(Bucket(1023, 3), Bucket(4095, 1)), sum=6000, count=4)
    s2 = Series(lab("b"), buckets=(Bucket(4095, 2),), sum=5000, count=2)
    got = exposition(metric, Aggregate("lat", "log2", ("dport",), "ns", (s1, s2), 0))
    les = [f"{((1 << i) - 1) / 1e9!r}" for i in range(1, 13)]
    want: dict[str, float] = {}
    for port, filled, total in (("a", {1023: 3, 4095: 1}, 6e-06), ("b", {4095: 2}, 5e-06)):
        running = 0
        for i, le in enumerate(les, start=1):
            running += filled.get((1 << i) - 1, 0)
            want[f"runq_lat_seconds_bucket[('dport', '{port}'), ('le', '{le}')]"] = running
        want[f"runq_lat_seconds_bucket[('dport', '{port}'), ('le', '+Inf')]"] = running
        want[f"runq_lat_seconds_count[('dport', '{port}')]"] = running
        want[f"runq_lat_seconds_sum[('dport', '{port}')]"] = total
    assert got == want


def test_histogram_bucket_series_never_appear_late_or_vanish() -> None:
    """An lhist shows all its buckets from the first scrape; a log2 every bucket up to the
    highest ever filled, kept when a later scrape (a new key, a --clear'd map) fills less: a
    bucket series that appears late loses its first increments to rate()."""
    from engine.runtime.aggregates import linear_bounds
    from tests.unit.test_print_units import agg as _agg

    lin = _agg("linear", 1)
    lin = type(lin)(**{**lin.__dict__, "low": 0, "high": 30, "step": 10})
    metric = serve.Metric("s", "l", "s_l", "h", "histogram", 1.0, 10)
    one = Series(lab("a"), buckets=(Bucket(19, 1),), sum=15, count=1)
    got = exposition(
        metric, Aggregate("l", "linear", ("dport",), "", (one,), 0, bounds=linear_bounds(lin))
    )
    assert sorted(k for k in got if "_bucket" in k) == sorted(
        f"s_l_bucket[('dport', 'a'), ('le', '{le}')]"
        for le in ("-1.0", "9.0", "19.0", "29.0", "+Inf")
    )
    collector = serve.EngineCollector([], {})
    metric = serve.Metric("s", "h", "s_h", "h", "histogram", 1.0, 10)
    high = Series(lab("a"), buckets=(Bucket(7, 2),), sum=10, count=2)
    low = Series(lab("b"), buckets=(Bucket(1, 1),), sum=1, count=1)
    first = exposition(metric, Aggregate("h", "log2", ("dport",), "", (high,), 0), collector)
    later = exposition(metric, Aggregate("h", "log2", ("dport",), "", (low,), 0), collector)
    assert [k for k in first if "_bucket" in k] == [
        f"s_h_bucket[('dport', 'a'), ('le', '{le}')]" for le in ("1.0", "3.0", "7.0", "+Inf")
    ]
    assert [k for k in later if "_bucket" in k] == [
        f"s_h_bucket[('dport', 'b'), ('le', '{le}')]" for le in ("1.0", "3.0", "7.0", "+Inf")
    ]


def test_counter_gets_total_and_gauge_does_not() -> None:
    counter = serve.Metric("s", "c", "s_connects", "h", "counter", 1.0, 10)
    agg = Aggregate("c", "count", ("dport",), "", (Series(lab("80"), 57),), 0)
    assert exposition(counter, agg) == {"s_connects_total[('dport', '80')]": 57}
    gauge = serve.Metric("s", "m", "s_max_bytes", "h", "gauge", 1.0, 10)
    agg = Aggregate("m", "max", ("dport",), "", (Series(lab("80"), 4000),), 0)
    assert exposition(gauge, agg) == {"s_max_bytes[('dport', '80')]": 4000}


def test_kallsyms_refresh_when_modules_change_or_old() -> None:
    decoders.refresh_kallsyms(now=1000.0)
    decoders.ksym(1)
    assert decoders._KSYMS  # read
    assert not decoders.refresh_kallsyms(now=1001.0)  # same modules, fresh: kept
    assert decoders._KSYMS
    decoders._KsymsRead.modules = b"a module that went away\n"
    assert decoders.refresh_kallsyms(now=1002.0)
    assert not decoders._KSYMS
    decoders.ksym(1)
    assert decoders.refresh_kallsyms(now=1002.0 + decoders.KSYMS_MAX_AGE + 1)


# --- what Prometheus would refuse, refused at spec check (serve and validate alike) ---------


@pytest.mark.parametrize("label", ["le", "quantile", "__name__", "__meta_x"])
def test_reserved_label_name_is_refused_where_the_key_is(
    tmp_path: pathlib.Path, label: str
) -> None:
    """A field named __name__ as a label makes Prometheus fail the whole scrape; le and
    quantile would merge with a histogram's or summary's own label."""
    text = BUDGET_SPEC.replace("dport:", f"{label}:").replace("by: [dport]", f"by: [{label}]")
    text = text.replace("columns: [comm, dport]", f"columns: [comm, {label}]")
    (line,) = problems_of(tmp_path, text)
    assert line.startswith(f"19:10: error: metrics: key field '{label}' of aggregation 'count'")
    assert line.endswith("; rename the field [$.output.count.by[0]]")


def test_histogram_and_gauge_whose_names_meet_are_refused(tmp_path: pathlib.Path) -> None:
    text = BUDGET_SPEC.replace(
        "output:\n",
        "output:\n  aggregations:\n"
        "    - {name: ports, hist: dport, by: [comm]}\n"
        "    - {name: ports_count, max: dport}\n",
    ).replace("metrics:\n  count: {max_series: 5}\n", "")
    assert problems_of(tmp_path, text) == [
        "19:7: error: metrics: gauge 'tcpbudget_ports_count' of aggregation 'ports_count' "
        "clashes with the histogram 'tcpbudget_ports' of aggregation 'ports' "
        "(tcpbudget_ports_count); give one another name with metrics.<aggregation>.name "
        "[$.output.aggregations[1]]"
    ]


def test_declared_names_that_clash_are_located_at_the_name(tmp_path: pathlib.Path) -> None:
    text = BUDGET_SPEC.replace(
        "output:\n",
        "output:\n  aggregations:\n"
        "    - {name: a, count: true, by: [comm]}\n"
        "    - {name: b, max: dport}\n",
    ).replace("count: {max_series: 5}", "a: {name: x}\n  b: {name: x_total}")
    assert problems_of(tmp_path, text) == [
        "26:13: error: metrics: gauge 'x_total' of aggregation 'b' clashes with the counter "
        "'x' of aggregation 'a' (x_total); give one another name with "
        "metrics.<aggregation>.name [$.metrics.b.name]"
    ]


def test_engine_prefix_is_the_engines_own(tmp_path: pathlib.Path) -> None:
    text = BUDGET_SPEC.replace("count: {max_series: 5}", "count: {name: engine_specs_loaded}")
    (line,) = problems_of(tmp_path, text)
    assert line.startswith(
        "22:17: error: metrics: metric name 'engine_specs_loaded' starts with 'engine_'"
    )


SIGNED = BUDGET_SPEC.replace("      dport:", "      state: args.newstate\n      dport:").replace(
    "output:\n",
    "output:\n  aggregations:\n    - {name: states, sum: state, by: [comm]}\n",
)


def test_a_sum_of_a_signed_field_is_a_gauge(tmp_path: pathlib.Path) -> None:
    """It can fall, which a counter must not (Prometheus would see a reset)."""
    text = SIGNED.replace("count: {max_series: 5}", "states: {max_series: 5}")
    _, _, metrics = serve.plan_spec(write(tmp_path, text), BTF)
    assert (metrics["states"].name, metrics["states"].type) == ("tcpbudget_states", "gauge")
    text = SIGNED.replace("count: {max_series: 5}", "states: {type: counter}")
    assert problems_of(tmp_path, text) == [
        "25:18: error: metrics: a sum aggregation of a signed field (it can fall; a counter "
        "cannot) is a gauge, not a counter [$.metrics.states.type]"
    ]


def test_two_specs_metrics_may_not_share_a_name(tmp_path: pathlib.Path) -> None:
    a = tmp_path / "a.yaml"
    a.write_text(BUDGET_SPEC.replace("count: {max_series: 5}", "count: {name: connects}"))
    b = tmp_path / "b.yaml"
    b.write_text(
        BUDGET_SPEC.replace("name: tcpbudget", "name: other").replace(
            "count: {max_series: 5}", "count: {name: connects}"
        )
    )
    metrics = [m for p in (a, b) for m in serve.plan_spec(str(p), BTF)[2].values()]
    (problem,) = serve.clashes(metrics)
    assert problem.format().endswith(
        "b.yaml:22:17: error: metrics: counter 'connects' of aggregation 'count' clashes with "
        "the counter 'connects' of spec 'tcpbudget' (aggregation 'count') (connects, "
        "connects_total); give one another name with metrics.<aggregation>.name "
        "[$.metrics.count.name]"
    )


def test_every_exposition_is_strictly_valid() -> None:
    """Every kind, a signed sum below zero (a gauge), an lhist whose buckets start below zero
    (it keeps its _count and _sum), the budget's `other`: prometheus_client's parser with
    Prometheus' rules, and promtool."""
    from tests.promcheck import check_exposition

    lin = Series(
        lab("a"), buckets=(Bucket(-101, 2), Bucket(-1, 1), Bucket(math.inf, 1)), sum=-150, count=4
    )
    cases = [
        (
            serve.Metric("s", "c", "s_connects", "h", "counter", 1.0, 10),
            Aggregate("c", "count", ("dport",), "", (Series(lab("80"), 57),), 0),
        ),
        (
            serve.Metric("s", "t", "s_states", "h", "gauge", 1.0, 10),
            Aggregate("t", "sum", ("dport",), "", (Series(lab("80"), -12),), 0),
        ),
        (
            serve.Metric("s", "l", "s_rets", "h", "histogram", 1.0, 10),
            Aggregate("l", "linear", ("dport",), "", (lin,), 0),
        ),
        (
            serve.Metric("s", "h", "s_lat_seconds", "h", "histogram", 1e9, 1),
            Aggregate(
                "h",
                "log2",
                ("dport",),
                "ns",
                tuple(
                    Series(lab(p), buckets=(Bucket(1023, 3),), sum=900, count=3)
                    for p in ("1", "2", "3")
                ),
                0,
            ),
        ),
    ]

    collector = serve.EngineCollector([], {})
    families = [
        collector.family(metric, agg, serve.Budget(metric.max_series).apply(agg))
        for metric, agg in cases
    ]
    text = render(families).decode()
    check_exposition(text)
    assert 's_rets_count{dport="a"} 4.0' in text.splitlines()
    assert 's_rets_sum{dport="a"} -150.0' in text.splitlines()


# --- the HTTP server: slow and many clients, one snapshot, TLS and basic auth ---------------
# A real server on loopback; `read` stands in for the kernel maps (tests/kernel scrapes the
# real ones). Bounds are configuration, set small here; a slow connection must be *closed*.

import contextlib  # noqa: E402
import re  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from typing import Callable, Iterator  # noqa: E402

from engine.runtime.promhttp import HttpServer, Limits, WebConfig, load_web_config  # noqa: E402

WAIT = 30.0  # generous: what a slow machine could need for a step that takes milliseconds
BODY = b"# HELP up_reads Reads.\n# TYPE up_reads gauge\nup_reads 1.0\n"


@contextlib.contextmanager
def running(
    read: Callable[[], bytes] = lambda: BODY,
    limits: Limits | None = None,
    web: WebConfig | None = None,
) -> Iterator[tuple[HttpServer, int]]:
    server = HttpServer(read, lambda: True, limits, web)
    try:
        yield server, server.start("127.0.0.1", 0)
    finally:
        server.stop()


def request(port: int, path: str = "/metrics", head: str = "", timeout: float = WAIT) -> bytes:
    """One HTTP/1.0-style exchange (Connection: close): the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{head}\r\n".encode())
        return read_all(s)


def read_all(s: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return out
        if not chunk:
            return out
        out += chunk


def closed_by_server(s: socket.socket) -> bool:
    """True when the server ends the connection (EOF or reset) before our generous timeout."""
    s.settimeout(WAIT)
    try:
        while s.recv(65536):
            pass  # a 408/431 first is fine; then the end
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def wait_until(cond: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_slow_clients_are_closed_and_a_scrape_is_answered_meanwhile() -> None:
    """20 connections each with an unfinished request, more than the 8 allowed: the oldest
    waiting ones are closed to admit newer ones, every other one at the request timeout, and
    a well-behaved scrape made while they hang is answered."""
    limits = Limits(request_timeout=1.5, max_header_bytes=8192, max_connections=8)
    with running(limits=limits) as (server, port):
        slow = []
        try:
            for i in range(20):
                s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
                s.sendall(f"GET /metrics HTTP/1.1\r\nX-Slow-{i}: ".encode() + b"a" * 100)
                slow.append(s)
            answer = request(port)
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(BODY)
            assert all(closed_by_server(s) for s in slow)
        finally:
            for s in slow:
                s.close()
        wait_until(lambda: server.stats.open == 0)
        closed = server.stats.closed
        assert closed["timeout"] + closed["evicted"] == 20, closed
        assert closed["evicted"] >= 20 - 8  # the limit held: never more than 8 open


def test_a_too_large_request_head_is_refused_and_closed() -> None:
    """The issue's 60 kB unfinished request: answered 431 at 8 kB, then closed."""
    with running() as (server, port):
        s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        with s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 60_000)
            answer = read_all(s)
        assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        wait_until(lambda: server.stats.closed["header_too_large"] == 1)


def test_concurrent_scrapes_share_one_read() -> None:
    """51 scrapes arrive while a read runs: all are answered from that one read (before,
    each scrape read the maps in turn behind a lock: 50 scrapers pushed one to 16 s)."""
    release = threading.Event()
    reads = []

    def read() -> bytes:
        reads.append(1)
        assert release.wait(WAIT)
        return BODY.replace(b"up_reads 1.0", f"up_reads {len(reads)}.0".encode())

    with running(read) as (server, port):
        answers: list[bytes] = []

        def scrape() -> None:
            try:
                answers.append(request(port))
            except OSError as exc:  # said in the assertion below, not as a thread's traceback
                answers.append(repr(exc).encode())

        threads = [threading.Thread(target=scrape) for _ in range(51)]
        for t in threads:
            t.start()
        try:
            # every request has arrived and waits for the read in progress
            wait_until(lambda: sum(not c.waiting for c in list(server.conns.values())) == 51)
        finally:
            release.set()
            for t in threads:
                t.join(WAIT)
        assert len(answers) == 51
        assert [a for a in answers if not a.endswith(BODY)] == []  # up_reads 1.0: 1st read
        assert len(reads) == 1


def test_keep_alive_head_and_errors() -> None:
    with running() as (_, port):
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nHEAD /metrics HTTP/1.1\r\n\r\n")
            s.sendall(
                b"POST /metrics HTTP/1.1\r\n\r\nGET /nothing HTTP/1.1\r\nConnection: close\r\n\r\n"
            )
            text = read_all(s).decode()
        statuses = re.findall(r"HTTP/1\.1 \d+ [^\r]+", text)
        assert statuses == [
            "HTTP/1.1 200 OK",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 405 Method Not Allowed",
            "HTTP/1.1 404 Not Found",
        ]
        assert "up_reads" not in text  # HEAD has no body
        assert request(port, head="Accept-Encoding: gzip\r\n").endswith(gzip_of(BODY))


def gzip_of(body: bytes) -> bytes:
    import gzip

    return gzip.compress(body, compresslevel=6)


def make_cert(tmp_path: pathlib.Path) -> tuple[str, str]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


def test_tls_and_basic_auth_from_a_web_config_file(tmp_path: pathlib.Path) -> None:
    """exporter-toolkit's format: TLS with the test's own self-signed certificate, a bcrypt
    user; 401 without or with wrong credentials, 200 with them; /healthz stays open."""
    import base64

    import bcrypt

    cert, _ = make_cert(tmp_path)
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    config = tmp_path / "web.yml"
    config.write_text(
        "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n"
        f"basic_auth_users:\n  prom: '{hashed}'\n"
    )
    web = load_web_config(str(config))
    client = ssl.create_default_context(cafile=cert)

    def get(port: int, path: str, user: str = "", password: str = "") -> bytes:
        head = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        if user:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            head += f"Authorization: Basic {token}\r\n"
        with (
            socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw,
            client.wrap_socket(raw, server_hostname="127.0.0.1") as s,
        ):
            s.sendall((head + "\r\n").encode())
            return read_all(s)

    with running(web=web) as (server, port):
        refused = get(port, "/metrics")
        assert refused.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
        assert b'WWW-Authenticate: Basic realm="engine"' in refused
        assert get(port, "/metrics", "prom", "wrong").startswith(b"HTTP/1.1 401 ")
        assert get(port, "/metrics", "nobody", "s3cret").startswith(b"HTTP/1.1 401 ")
        ok = get(port, "/metrics", "prom", "s3cret")
        assert ok.startswith(b"HTTP/1.1 200 OK\r\n") and ok.endswith(BODY)
        assert get(port, "/healthz").startswith(b"HTTP/1.1 200 OK\r\n")
        # plain HTTP to the TLS port: no answer, the connection is closed
        assert b"200 OK" not in request(port)
        wait_until(lambda: server.stats.closed["tls_error"] == 1)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (
            "tls_server_config:\n  cert_file: c.pem\n  key_fil: k.pem\n",
            "web.yml:3:3: error: tls_server_config: unknown key 'key_fil'; keys: cert_file, "
            "key_file, client_auth_type, client_ca_file, min_version, max_version; did you "
            "mean 'key_file'? [$.tls_server_config.key_fil]",
        ),
        (
            "tls_server_config: {cert_file: nothere.pem, key_file: nothere.key}\n",
            "web.yml:1:32: error: tls_server_config: cannot load",
        ),
        (
            "basic_auth_users:\n  prom: plaintext\n",
            "web.yml:2:9: error: basic_auth_users: 'prom': expected a bcrypt hash ($2y$...) "
            "[$.basic_auth_users.prom]",
        ),
        (
            "http_server_config: {http2: false}\n",
            "web.yml:1:1: error: 'http_server_config' is not supported by engine serve "
            "[$.http_server_config]",
        ),
    ],
)
def test_web_config_mistakes_are_located(tmp_path: pathlib.Path, text: str, want: str) -> None:
    config = tmp_path / "web.yml"
    config.write_text(text)
    with pytest.raises(SpecError) as err:
        load_web_config(str(config))
    lines = [p.format().split(str(tmp_path) + "/", 1)[1] for p in err.value.problems]
    assert lines[0].startswith(want), lines


def test_an_empty_web_config_is_plain_http(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "web.yml"
    config.write_text("# nothing\n")
    web = load_web_config(str(config))
    assert web.tls is None and not web.users


def test_a_signed_fields_histogram_sum_is_read_as_twos_complement(tmp_path: pathlib.Path) -> None:
    """The kernel adds into a u64 per CPU: -9 - 9 + 1 + 5 is 2^64 - 12 there (and more than
    2^64 once CPUs are added up); the metric's _sum is -12."""
    from engine.runtime import sinks

    text = SIGNED.replace("sum: state", "lhist: {value: state, min: -4, max: 4, step: 2}")
    text = text.replace("count: {max_series: 5}", "states: {max_series: 5}")
    _, program, _ = serve.plan_spec(write(tmp_path, text), BTF)
    (sink,) = program.aggregations
    from tests.unit.test_sinks import Table, leaf

    fields = {f.name: f for f in program.fields}
    reader = sinks.Reader(sink, fields, decoders.State())
    import struct as st

    from engine.runtime.rows import struct_format

    key = st.pack(struct_format(sink.key)[0], b"x")
    # per CPU as the kernel keeps them (s64, wrapping): two CPUs whose parts add up past
    # 2^63 wrap to -12 as the kernel's own s64 sum would; the Reader merges and wraps as C
    cpus = [leaf(sink, buckets=[0, 2], sum=2**63 - 1), leaf(sink, buckets=[0, 2], sum=2**63 - 11)]
    (series,) = reader.read(
        {sink.map: Table({key: cpus}), f"{sink.map}_other": Table({b"other": []})}
    )
    got = KINDS["linear"](sink, series)
    assert got.sum == -12


def test_listening_on_all_ipv6_addresses_takes_ipv4_too() -> None:
    server = HttpServer(lambda: BODY, lambda: True)
    try:
        port = server.start("::", 0)
        for host in ("127.0.0.1", "::1"):
            with socket.create_connection((host, port), timeout=WAIT) as s:
                s.sendall(b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
                assert read_all(s).endswith(BODY)
    finally:
        server.stop()


@pytest.mark.parametrize(
    "flag", [["--request-timeout", "0"], ["--max-connections", "0"], ["--max-header-bytes", "x"]]
)
def test_bounds_must_be_positive(flag: list[str]) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "engine.cli", "serve", "x.yaml", *flag],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 2
    assert f"argument {flag[0]}: expected" in r.stderr


def test_an_idle_keep_alive_connection_is_closed_quietly() -> None:
    """Prometheus keeps its connection between scrapes: closing it at the timeout is not a
    slow client, and is not counted as one; a connection that never asks anything is."""
    with running(limits=Limits(request_timeout=1.0)) as (server, port):
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as kept:
            kept.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            silent = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            with silent:
                assert read_all(kept).endswith(BODY)  # the answer, then the end at 1 s
                assert closed_by_server(silent)
        wait_until(lambda: server.stats.open == 0)
        assert server.stats.closed["timeout"] == 1  # the silent one only


def test_a_key_is_decoded_once_across_scrapes(tmp_path: pathlib.Path) -> None:
    """The same keys come back at every scrape: their bytes are decoded once and kept, except
    where the text may change for the same bytes (a container's name, a ksym)."""
    import struct as st

    from engine.runtime import sinks
    from engine.runtime.rows import struct_format
    from tests.unit.test_sinks import Table

    text = SIGNED.replace("count: {max_series: 5}", "states: {max_series: 5}")
    _, program, _ = serve.plan_spec(write(tmp_path, text), BTF)
    (sink,) = program.aggregations
    fields = {f.name: f for f in program.fields}
    reader = sinks.Reader(sink, fields, decoders.State())
    assert reader.pure
    calls: list[int] = []
    reader.getters = [lambda t, g=g: calls.append(1) or g(t) for g in reader.getters]
    key = st.pack(struct_format(sink.key)[0], b"x")
    maps = {sink.map: Table({key: [5, 6]}), f"{sink.map}_other": Table({b"other": [0, 0]})}
    first, second = reader.read(maps), reader.read(maps)
    assert first == second and len(calls) == 1
    reader.pure = False  # what a container-decoded key gets
    reader.read(maps)
    assert len(calls) == 2
    assert {"container", "pod", "image", "ksym", "elapsed"} <= sinks.IMPURE


def test_container_listing_failures_are_a_metric(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where containers are read (a flag or a label), a runtime that failed to list is counted
    per source, not silent: the labels would name only what the last good listing knew."""
    from engine.kernel import containers as ct
    from tests.promcheck import check_exposition

    collector = serve.EngineCollector([], {})
    names = {f.name for f in collector.collect()}
    assert "engine_container_list_failures" not in names  # no watch: nothing reads containers
    lists = [ct.Listing(failed={"cri": "down"}), ct.Listing(failed={"cri": "down", "podman": "x"})]
    watch = ct.Watch(source=lambda: lists.pop(0), cgroup2=[], say=lambda text: None)
    watch.list_now()
    watch.list_now()
    monkeypatch.setattr(ct._Shared, "watch", watch)
    text = render(list(collector.collect())).decode()
    check_exposition(text)
    lines = text.splitlines()
    assert 'engine_container_list_failures_total{source="cri"} 2.0' in lines
    assert 'engine_container_list_failures_total{source="podman"} 1.0' in lines
