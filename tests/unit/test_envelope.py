"""JSON rows with and without the log shippers' envelope (engine.runtime.output.Printer)."""

from __future__ import annotations

import io
import json
import re

from engine.runtime.output import Printer

COLUMNS = [("pid", "PID", 6, False), ("time", "TIME(s)", 9, True)]


def rows(envelope: dict[str, str] | None) -> list[str]:
    out = io.StringIO()
    p = Printer("json", COLUMNS, out, envelope)
    p.row([42, 1.5])
    p.flush()
    return out.getvalue().splitlines()


def test_plain_rows_unchanged() -> None:
    assert rows(None) == ['{"pid":42,"time":1.5}']


def test_envelope_leads_and_fields_stay_on_top() -> None:
    (line,) = rows({"host": "h", "spec": "s", "probe": "p"})
    assert re.fullmatch(
        r'\{"engine":\{"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z","host":"h","spec":"s",'
        r'"probe":"p"\},"pid":42,"time":1\.5\}',
        line,
    ), line
    assert list(json.loads(line)) == ["engine", "pid", "time"]


def test_each_rows_own_envelope_keys_follow_the_constant_ones() -> None:
    """--envelope's container and pod are the row's own: one row's never shows in another's."""
    out = io.StringIO()
    p = Printer("json", COLUMNS, out, {"host": "h"})
    p.row([1, 0.5], {"container": "a", "pod": "shop/web-1"})
    p.row([2, 0.5], {"container": "host", "pod": "host"})
    p.row([3, 0.5])
    p.flush()
    engines = [json.loads(line)["engine"] for line in out.getvalue().splitlines()]
    assert [{k: v for k, v in e.items() if k != "time"} for e in engines] == [
        {"host": "h", "container": "a", "pod": "shop/web-1"},
        {"host": "h", "container": "host", "pod": "host"},
        {"host": "h"},
    ]


def test_other_formats_print_the_row_without_its_envelope_keys() -> None:
    out = io.StringIO()
    p = Printer("csv", COLUMNS, out)
    p.row([1, 0.5], {"container": "a"})
    p.flush()
    assert out.getvalue().splitlines()[-1] == "1,0.500"
