"""`print:` on sum/min/max/avg: the kernel keeps nanoseconds, the value prints converted once.

A duration divided per event before it is summed loses up to a unit per event: syscount -L's
getppid total came out 61-95% below bcc's. These tests pin the rule: the plan carries the
divisor, the printed value is the exact total divided once toward zero in integers (every
format the same number), mistakes are located, `engine serve` keeps the kernel's unit, and no
shipped spec sums a per-event divided value."""

from __future__ import annotations

import io
import json
import pathlib

import pytest
import yaml

from engine.plan import model as M
from engine.plan import planner
from engine.plan.bind import bind
from engine.runtime import decoders, sinks
from engine.spec.loader import load_document, load_text
from engine.verbs import serve

ROOT = pathlib.Path(__file__).resolve().parents[2]
BTF = str(ROOT / "tests" / "fixtures" / "btf" / "linux-6.18.44-fc.btf.xz")

SPEC = """\
name: t
probes:
  - name: p
    attach:
      - tracepoint: sock/inet_sock_set_state
    fields:
      port: args.sport
      nsecs: ktime_ns
      delta: args.dport
output:
  aggregations:
    - {name: total, sum: nsecs, unit: ns, print: us, header: TIME(us), by: [port]}
    - {name: mean, avg: nsecs, print: ms, header: AVG(ms), by: [port]}
    - {name: top, max: nsecs, unit: ns, print: s, header: MAX(s), by: [port]}
"""


def program(text: str = SPEC) -> M.Program:
    return bind(planner.plan(load_text(text, "t.yaml"), BTF))


def table(fmt: str, rows: dict[str, list[sinks.Series]]) -> str:
    prog = program()
    p = sinks.AggregatePrinter(prog, fmt, io.StringIO(), decoders.State())
    return p.render_table([(s, rows[s.agg.name]) for s in prog.aggregations])


def test_syscount_sums_nanoseconds_and_prints_us_or_ms() -> None:
    plan = planner.plan(load_document(str(ROOT / "specs" / "syscount.yaml")), BTF)
    got = {a.name: (a.kind, a.value, a.unit, a.divisor) for a in plan.aggregations}
    assert got == {
        "calls": ("count", "", "", 1),
        "time_us": ("sum", "nsecs", "ns", 1000),
        "time_ms": ("sum", "nsecs", "ns", 1000000),
    }


def agg(kind: str, divisor: int) -> M.Aggregation:
    return M.Aggregation("a", kind, "v", (), "H", "ns", 1, divisor=divisor)


def test_printed_is_the_exact_total_with_ns_digits() -> None:
    """bcc's syscount prints TIME(us) with 3 decimals and (ms) with 6: the total in ns, divided
    once. The engine prints the same digits exactly, from the integer, never a float."""
    per_call = [1999, 999, 1500, 3001]  # ns
    assert str(sinks.printed(agg("sum", 1000), sum(per_call))) == "7.499"  # 7499 ns
    assert sum(v // 1000 for v in per_call) == 5  # what dividing each event gave
    assert str(sinks.printed(agg("sum", 1000), -1999)) == "-1.999"  # a signed sum
    assert str(sinks.printed(agg("min", 10**6), 2_999_999)) == "2.999999"
    assert sinks.printed(agg("max", 1), 2_999_999) == 2_999_999
    # avg: the whole-ns average (toward zero, as C), shown the same way: 2999 ns / 2 = 1499
    assert str(sinks.printed(agg("avg", 1000), (2999, 2))) == "1.499"
    assert str(sinks.printed(agg("avg", 1000), (-2999, 2))) == "-1.499"
    assert str(sinks.printed(agg("avg", 1000), (5, 0))) == "0.000"
    assert str(sinks.printed(agg("sum", 10**9), 0)) == "0.000000000"  # never 0E-9
    # exact at any size: a float division would print ...551.616 here
    assert str(sinks.printed(agg("sum", 1000), 2**64 - 1)) == "18446744073709551.615"


def test_every_format_prints_the_converted_value() -> None:
    rows = {
        "total": [sinks.Series((80,), 12_325_999), sinks.Series((22,), 1999)],
        "mean": [sinks.Series((80,), (7_000_000, 3)), sinks.Series((22,), (999_999, 1))],
        "top": [sinks.Series((80,), 2_999_999_999), sinks.Series((22,), 999_999_999)],
    }
    assert table("table", rows) == (
        "\nPORT   TIME(us)         AVG(ms)          MAX(s)\n"
        "80     12325.999        2.333333         2.999999999\n"
        "22     1.999            0.999999         0.999999999\n"
    )
    assert [json.loads(line) for line in table("json", rows).splitlines()] == [
        {"port": 80, "time(us)": 12325.999, "avg(ms)": 2.333333, "max(s)": 2.999999999},
        {"port": 22, "time(us)": 1.999, "avg(ms)": 0.999999, "max(s)": 0.999999999},
    ]
    assert table("csv", rows).splitlines() == [
        "PORT,TIME(us),AVG(ms),MAX(s)",
        "80,12325.999,2.333333,2.999999999",
        "22,1.999,0.999999,0.999999999",
    ]


def problems(tmp_path: pathlib.Path, text: str) -> list[str]:
    from engine.verbs.validate import validate_path

    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    return [
        f"{p.location.line}:{p.location.col}: {p.message}" for p in validate_path(str(spec), BTF)
    ]


TIME = "    - {name: time, sum: nsecs, unit: ns, print: us, header: TIME(us), by: [port]}\n"


@pytest.mark.parametrize(
    ("line", "want"),
    [
        (
            "    - {name: total, hist: nsecs, unit: ns, print: us}\n",
            "12:51: `print` converts a sum, min, max or avg; a histogram buckets each value as "
            "it comes: divide the field instead, e.g. `(ktime_ns - t0) / 1000`",
        ),
        (
            "    - {name: total, count: true, print: us}\n",
            "12:41: `print` converts a sum, min, max or avg; a count has no unit",
        ),
        (
            "    - {name: total, sum: delta, unit: cycle, print: us}\n",
            "12:39: `print: us` converts from the time unit the kernel keeps the value in (ns, "
            "nsecs, us, usecs, ms, msecs, s, secs, seconds); 'cycle' is not one: give "
            "`unit: ns`",
        ),
        (
            "    - {name: total, sum: delta, unit: nsec, print: us}\n",
            "12:39: `print: us` converts from the time unit the kernel keeps the value in (ns, "
            "nsecs, us, usecs, ms, msecs, s, secs, seconds); 'nsec' is not one: give "
            "`unit: ns`; did you mean 'nsecs'?",
        ),
        (
            "    - {name: total, sum: delta, print: us}\n",
            "12:40: `print: us` converts from the time unit the kernel keeps the value in (ns, "
            "nsecs, us, usecs, ms, msecs, s, secs, seconds); without `unit:` it is the field's "
            "name, 'delta': give `unit: ns`",
        ),
        (
            "    - {name: total, sum: nsecs, unit: us, print: ns}\n",
            "12:50: `print: ns` is finer than `unit: us`: the kernel's value has no finer "
            "digits; keep the field in ns (`unit: ns`) or print us",
        ),
        (
            "    - {name: total, sum: nsecs, unit: ns, print: usec}\n",
            "12:50: unknown print 'usec'; expected one of ns, nsecs, us, usecs, ms, msecs, s, "
            "secs, seconds; did you mean 'usecs'?",
        ),
    ],
)
def test_print_mistakes_are_located(tmp_path: pathlib.Path, line: str, want: str) -> None:
    text = SPEC.split("  aggregations:\n")[0] + "  aggregations:\n" + line
    assert problems(tmp_path, text) == [want]


def test_a_field_named_for_its_unit_needs_no_unit_key(tmp_path: pathlib.Path) -> None:
    text = SPEC.split("  aggregations:\n")[0] + "  aggregations:\n"
    text += "    - {name: total, sum: nsecs, print: us}\n"
    assert problems(tmp_path, text) == []
    (a,) = planner.plan(load_text(text, "t.yaml"), BTF).aggregations
    assert (a.unit, a.divisor) == ("nsecs", 1000)


def test_serve_exports_the_kernels_unit_not_the_printed_one(tmp_path: pathlib.Path) -> None:
    """A sum kept in ns and printed in us is served in seconds from the exact nanoseconds."""
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.split("  aggregations:\n")[0] + "  aggregations:\n" + TIME)
    _, _, metrics = serve.plan_spec(str(path), BTF)
    assert (metrics["time"].name, metrics["time"].divisor) == ("t_time_seconds", 1e9)


def shipped_specs() -> list[pathlib.Path]:
    folders = [ROOT / "specs", *(ROOT / "tests" / "specs").iterdir()]
    return sorted(p for d in folders if d.name != "bad" for p in d.glob("*.yaml"))


@pytest.mark.parametrize("path", shipped_specs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_shipped_spec_sums_a_value_divided_per_event(path: pathlib.Path) -> None:
    """A sum or avg of a field that divides (`(ktime_ns - t0) / 1000`) truncates every event
    before adding: keep the field in the kernel's unit and `print:` the unit wanted."""
    data = yaml.safe_load(path.read_text())
    exprs: dict[str, str] = {}
    for probe in data["probes"]:
        for name, field in (probe.get("fields") or {}).items():
            exprs[name] = str(field["value"] if isinstance(field, dict) else field)
    for a in (data.get("output") or {}).get("aggregations") or []:
        for kind in ("sum", "avg"):
            if kind in a:
                assert "/" not in exprs.get(a[kind], ""), (a, exprs[a[kind]])
