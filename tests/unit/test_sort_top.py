"""--sort COLUMN and --top N on aggregation tables (sinks.AggregatePrinter): rows sorted by the
named aggregation, largest first (ties keep the keys' natural order), at most N of them, the
same in every format; the names --sort answers to; and the usage errors of `engine run`."""

from __future__ import annotations

import io
import json

import pytest

from engine.runtime import decoders, sinks
from tests.unit.test_print_units import program

ROWS = {
    "total": [
        sinks.Series((p,), v) for p, v in ((80, 5_000), (22, 9_000), (443, 1_000), (53, 9_000))
    ],
    "mean": [sinks.Series((p,), (v, 1)) for p, v in ((80, 4), (22, 3), (443, 2), (53, 1))],
    "top": [sinks.Series((p,), v) for p, v in ((80, 1), (22, 7), (443, 9), (53, 3))],
}


def ports(fmt: str, sort: str = "", top: int = 0) -> list[int]:
    prog = program()
    p = sinks.AggregatePrinter(prog, fmt, io.StringIO(), decoders.State(), sort=sort, top=top)
    text = p.render_table([(s, ROWS[s.agg.name]) for s in prog.aggregations])
    if fmt == "json":
        return [json.loads(line)["port"] for line in text.splitlines()]
    lines = [x for x in text.splitlines() if x and x[0].isdigit()]
    return [int(x.split(",")[0].split()[0]) for x in lines]


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_sorted_by_the_named_column_and_cut(fmt: str) -> None:
    assert ports(fmt) == [22, 53, 80, 443]  # the first aggregation; a tie in key order
    assert ports(fmt, sort="MAX(s)") == [443, 22, 53, 80]
    assert ports(fmt, sort="mean", top=2) == [80, 22]
    assert ports(fmt, top=1) == [22]


def test_the_names_sort_answers_to() -> None:
    total = next(s.agg for s in program().aggregations if s.agg.name == "total")
    assert all(total.answers_to(n) for n in ("total", "TIME(us)", "time(US)", "time"))
    assert not total.answers_to("tim") and not total.answers_to("")


def test_usage_errors_name_the_flag_and_the_choices() -> None:
    from argparse import Namespace

    from engine.cli import check_sort
    from engine.errors import UsageError

    prog = program()
    check_sort(Namespace(sort="time", top=3), prog)  # fine
    with pytest.raises(UsageError, match=r"--sort tme: no such aggregation; this run's: "
                       r"TIME\(us\), AVG\(ms\), MAX\(s\)"):  # fmt: skip
        check_sort(Namespace(sort="tme", top=0), prog)
    events = program(
        "name: t\nprobes:\n  - name: p\n    attach:\n      - tracepoint: sock/inet_sock_set_state"
        "\n    fields:\n      port: args.sport\noutput:\n  columns: [port]\n"
    )
    with pytest.raises(UsageError, match="--top orders aggregation tables"):
        check_sort(Namespace(sort=None, top=5), events)
