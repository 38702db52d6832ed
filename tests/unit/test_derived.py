"""`output.derived`: columns computed when a table prints from its aggregations (biopattern's
%RND = 100 * random / (random + sequential)); `hide: true` keeps an operand out of the table.
Integers as C computes them (truncation toward zero; / and % by 0 give 0), located errors."""

from __future__ import annotations

import io

import pytest

from engine.errors import SpecError
from engine.plan import planner
from engine.runtime import decoders, derive, sinks
from engine.spec import expr as E
from engine.spec.loader import load_text
from tests.unit.test_print_units import BTF, program

SPEC = """\
name: t
probes:
  - name: p
    attach:
      - tracepoint: sock/inet_sock_set_state
    fields:
      port: args.sport
      seq: args.newstate == 1
      rnd: args.newstate != 1
      bytes: args.family
output:
  aggregations:
    - {name: seq, sum: seq, by: [port], hide: true}
    - {name: rnd, sum: rnd, by: [port], hide: true}
    - {name: kb, sum: bytes, by: [port], hide: true}
  derived:
    - {name: pct_rnd, header: "%RND", value: 100 * rnd / (rnd + seq), width: 5}
    - {name: pct_seq, header: "%SEQ", value: 100 * seq / (rnd + seq), width: 5}
    - {name: count, header: COUNT, value: rnd + seq}
    - {name: kbytes, header: KBYTES, value: kb / 1024}
"""


@pytest.mark.parametrize(
    ("text", "want"),
    [("7 / 2", 3), ("-7 / 2", -3), ("-7 % 2", -1), ("5 / (a - a)", 0), ("5 % b", 0), ("-a", -3)],
)
def test_integers_as_c(text: str, want: int) -> None:
    assert derive.evaluate(E.parse(text), {"a": 3}) == want  # b: a key without it counts 0


def test_the_table_prints_the_derived_columns_not_the_hidden() -> None:
    prog = program(SPEC)
    rows = {
        "seq": [sinks.Series((80,), 3), sinks.Series((22,), 0)],
        "rnd": [sinks.Series((80,), 1), sinks.Series((22,), 0)],
        "kb": [sinks.Series((80,), 4096), sinks.Series((22,), 1023)],
    }
    p = sinks.AggregatePrinter(prog, "table", io.StringIO(), decoders.State())
    text = p.render_table([(s, rows[s.agg.name]) for s in prog.aggregations])
    assert text == (
        "\nPORT   %RND  %SEQ  COUNT    KBYTES\n"
        "80     25    75    4        4\n"
        "22     0     0     0        0\n"
    )


@pytest.mark.parametrize(
    ("old", "new", "want"),
    [
        ("100 * rnd", "100 * rdn", "17:52: 'rdn' is not an aggregation a derived column can read"),
        ("kb / 1024", "kb << 2", "20:48: a derived column is integers and aggregation names"),
        ("    - {name: kb, sum: bytes, by: [port], hide: true}\n", "", "19:45: 'kb' is not"),
        (
            "{name: seq, sum: seq, by: [port], hide: true}",
            "{name: seq, sum: seq, by: [bytes], hide: true}",
            "17:46: derived column 'pct_rnd' reads aggregations keyed differently",
        ),
    ],
)
def test_mistakes_are_located(old: str, new: str, want: str) -> None:
    with pytest.raises(SpecError) as info:
        planner.plan(load_text(SPEC.replace(old, new), "t.yaml"), BTF)
    got = [f"{p.location.line}:{p.location.col}: {p.message}" for p in info.value.problems]
    assert any(g.startswith(want) for g in got), got
