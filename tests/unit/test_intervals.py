"""What an --interval run prints besides the values: each print stamped (JSON: an
`{"interval": N, "time": ...}` line, so a reader tells an empty interval from no output;
tables with --clock: the time, as bcc's -T), an unkeyed aggregation that saw nothing prints
zero (a count, a sum, an empty histogram), and `by: [{field, header}]` labels histograms."""

from __future__ import annotations

import io
import json
import re

from engine.output.json import JsonRenderer
from engine.output.table import TableRenderer
from engine.runtime import decoders, sinks
from tests.unit.test_print_units import program

HIST = """\
name: t
probes:
  - name: p
    attach:
      - tracepoint: sock/inet_sock_set_state
    fields:
      port: args.sport
      nsecs: ktime_ns
output:
  aggregations:
    - {name: lat, hist: nsecs, by: [{field: port, header: local_port}]}
    - {name: calls, count: true}
    - {name: slowest, max: nsecs}
    - {name: every, hist: nsecs}
"""


def test_stamps() -> None:
    line = json.loads(JsonRenderer(()).stamp(3, clock=False))
    assert line["interval"] == 3 and re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", line["time"])
    assert TableRenderer(()).stamp(1, clock=False) == ""
    assert re.fullmatch(r"\n\d\d:\d\d:\d\d", TableRenderer(()).stamp(1, clock=True))


def test_an_unkeyed_aggregation_with_nothing_prints_zero() -> None:
    prog = program(HIST)
    readers = {s.agg.name: sinks.Reader(s, {f.name: f for f in prog.fields}, decoders.State())
               for s in prog.aggregations}  # fmt: skip
    assert readers["calls"].nothing() == [sinks.Series((), 0)]
    assert readers["slowest"].nothing() == []  # no maximum of nothing
    assert readers["every"].nothing() == [sinks.Series((), buckets={}, total=0)]


def test_a_by_header_labels_the_histogram() -> None:
    prog = program(HIST)
    lat = next(s for s in prog.aggregations if s.agg.name == "lat")
    series = [sinks.Series((80,), buckets={3: 2}, total=20)]
    # the table says the header; JSON keys by the field, as every JSON row does
    for fmt, want in (("table", "local_port = 80"), ("json", '"port":80'), ("csv", "local_port,")):
        p = sinks.AggregatePrinter(prog, fmt, io.StringIO(), decoders.State())
        assert want in p.render_hist(lat, series)
