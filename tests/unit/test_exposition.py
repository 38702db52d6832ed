"""engine.runtime.exposition writes the bytes prometheus_client's generate_latest writes for
the same families: counters, gauges and histograms, labels in any order (one sorting after
`le`), label values with quotes, backslashes, newlines and any Unicode, values from 0 to
beyond Go's switch to exponents, negative, fractional and infinite."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from engine.runtime.exposition import Family, LabelText, go_float, render
from engine.verbs.serve import le_text

NAMES = ("daddr", "dport", "name", "comm")  # `name` and `comm` sort on both sides of `le`
values = st.text(max_size=12)
numbers = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, width=64),
)


def theirs(families: list) -> bytes:
    class All:
        def collect(self):  # type: ignore[no-untyped-def]
            return families

    registry = CollectorRegistry(auto_describe=False)
    registry.register(All())  # type: ignore[arg-type]
    return bytes(generate_latest(registry))


@given(st.lists(st.tuples(st.lists(values, min_size=2, max_size=2), numbers), max_size=8))
@settings(max_examples=200, deadline=None)
def test_counters_and_gauges_match_generate_latest(rows: list) -> None:
    texts = LabelText()
    labels = ("dport", "comm")
    for kind, family in (("counter", CounterMetricFamily), ("gauge", GaugeMetricFamily)):
        ours = Family("s_m", kind, 'help with \\ and \n and "')
        theirs_family = family("s_m", 'help with \\ and \n and "', labels=list(labels))
        for vals, value in rows:
            ours.value(texts(tuple(zip(labels, vals))), value)
            theirs_family.add_metric(vals, value)
        assert render([ours]) == theirs([theirs_family])


@given(
    st.lists(values, min_size=len(NAMES), max_size=len(NAMES)),
    st.lists(st.integers(min_value=0, max_value=5000), min_size=1, max_size=6),
    numbers,
)
@settings(max_examples=200, deadline=None)
def test_histograms_match_generate_latest(vals: list, counts: list, total: float) -> None:
    bounds = [float((1 << i) - 1) for i in range(1, len(counts))] + [math.inf]
    cumulative, running = [], 0
    for le, n in zip(bounds, counts):
        running += n
        cumulative.append((le_text(le), running))
    labels = tuple(zip(NAMES, vals))
    ours = Family("s_h", "histogram", "h")
    ours.histogram(labels, LabelText(), cumulative, running, total)
    theirs_family = HistogramMetricFamily("s_h", "h", labels=list(NAMES))
    theirs_family.add_metric(vals, cumulative, total)
    assert render([ours]) == theirs([theirs_family])


def test_own_families_print_as_generate_latest_prints_them() -> None:
    c = CounterMetricFamily("engine_x", "x", labels=["spec", "metric"])
    c.add_metric(['a"b', "m\n"], 3)
    g = GaugeMetricFamily("engine_y", "y\\z")
    g.add_metric([], 0.25)
    assert render([c, g]) == theirs([c, g])


def test_go_float_is_prometheus_clients() -> None:
    from prometheus_client.utils import floatToGoString

    for v in (0, 7, 999_999, 1_000_000, 12_345_678, -5, 0.1, 1e-9, 1e300, math.inf, -math.inf):
        assert go_float(v) == floatToGoString(v), v
    assert go_float(math.nan) == "NaN"
