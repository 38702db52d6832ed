"""engine serve without the kernel: the metric model, the series budget and the exposition.

Specs are planned against the committed BTF fixture; the exposition is prometheus_client's
own text output of Aggregates built by hand (what read_aggregates returns), parsed back with
prometheus_client's parser.
"""

from __future__ import annotations

import math
import pathlib
import subprocess
import sys

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from engine.errors import SpecError, UsageError
from engine.runtime import decoders
from engine.runtime.aggregates import KINDS, Aggregate, Bucket, Series
from engine.verbs import serve

ROOT = pathlib.Path(__file__).resolve().parents[2]
BTF = str(ROOT / "tests" / "fixtures" / "btf" / "linux-6.18.44-fc.btf.xz")
BUDGET_SPEC = (ROOT / "tests" / "specs" / "serve" / "tcpbudget.yaml").read_text()


def write(tmp_path: pathlib.Path, text: str) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return str(path)


def test_count_mode_is_a_counter_named_by_its_header() -> None:
    _, program, metrics = serve.plan_spec(str(ROOT / "specs" / "tcpconnect.yaml"), BTF)
    assert program.mode == "count"
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
    with pytest.raises(SpecError) as err:
        serve.plan_spec(write(tmp_path, text), BTF)
    (p,) = err.value.problems
    assert p.format().endswith(
        "spec.yaml:22:3: error: metrics: no aggregation 'cuont' (aggregations: count; "
        "output.count is 'count') [$.metrics.cuont]"
    )


def test_wrong_type_is_located(tmp_path: pathlib.Path) -> None:
    text = BUDGET_SPEC.replace("count: {max_series: 5}", "count: {type: histogram}")
    with pytest.raises(SpecError) as err:
        serve.plan_spec(write(tmp_path, text), BTF)
    assert [p.format().split("spec.yaml:")[1] for p in err.value.problems] == [
        "22:17: error: metrics: a count aggregation is a counter or gauge, not a histogram "
        "[$.metrics.count.type]"
    ]


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


def exposition(metric: serve.Metric, agg: Aggregate) -> dict[str, float]:
    class One:
        def collect(self):  # type: ignore[no-untyped-def]
            yield serve.EngineCollector.family(metric, agg, list(agg.series))

    registry = CollectorRegistry(auto_describe=False)
    registry.register(One())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[s.name + str(sorted(s.labels.items()))] = s.value
    return out


def test_histogram_in_seconds_is_cumulative_and_consistent() -> None:
    """ns buckets -> seconds; _count is the bucket total and _sum the converted sum."""
    metric = serve.Metric("runq", "lat", "runq_lat_seconds", "h", "histogram", 1e9, 10)
    s1 = Series(lab("a"), buckets=(Bucket(1023, 3), Bucket(4095, 1)), sum=6000, count=4)
    s2 = Series(lab("b"), buckets=(Bucket(4095, 2),), sum=5000, count=2)
    got = exposition(metric, Aggregate("lat", "log2", ("dport",), "ns", (s1, s2), 0))
    assert got == {
        "runq_lat_seconds_bucket[('dport', 'a'), ('le', '1.023e-06')]": 3,
        "runq_lat_seconds_bucket[('dport', 'a'), ('le', '4.095e-06')]": 4,
        "runq_lat_seconds_bucket[('dport', 'a'), ('le', '+Inf')]": 4,
        "runq_lat_seconds_count[('dport', 'a')]": 4,
        "runq_lat_seconds_sum[('dport', 'a')]": 6e-06,
        "runq_lat_seconds_bucket[('dport', 'b'), ('le', '1.023e-06')]": 0,
        "runq_lat_seconds_bucket[('dport', 'b'), ('le', '4.095e-06')]": 2,
        "runq_lat_seconds_bucket[('dport', 'b'), ('le', '+Inf')]": 2,
        "runq_lat_seconds_count[('dport', 'b')]": 2,
        "runq_lat_seconds_sum[('dport', 'b')]": 5e-06,
    }


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
