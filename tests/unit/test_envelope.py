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
