"""engine.output: the value model and one renderer per format, chosen from the registry;
sorting and the top-N cut are rendering arguments."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from engine.output import FORMATS, RENDERERS
from engine.output import prom as output_prom
from engine.output.values import (
    Column,
    Histogram,
    Keyed,
    LinearScale,
    Log2Scale,
    Number,
    Order,
    Stack,
    Symbol,
    Table,
    Text,
    ordered,
)

COLS = (Column("comm", "COMM", 8), Column("n", "N", 4))
TABLE = Table(COLS, (("b", Number(3)), ("a", Number(3)), ("c", Number(9)), ("d", Number(1))))


def test_registry_has_one_renderer_per_format() -> None:
    assert set(RENDERERS) == {"table", "json", "csv", "prom", "folded", "flamegraph"}
    assert FORMATS == ("table", "json", "csv")  # prom prints no events, folded only stacks
    assert all(RENDERERS[name].name == name for name in RENDERERS)


def test_order_sorts_by_a_column_then_cuts() -> None:
    by_value = Order(column=1, natural=(0,))
    assert [r[0] for r in ordered(TABLE.rows, by_value)] == ["c", "a", "b", "d"]
    assert [r[0] for r in ordered(TABLE.rows, Order(column=1, natural=(0,), top=2))] == ["c", "a"]
    assert [r[0] for r in ordered(TABLE.rows, None)] == ["b", "a", "c", "d"]


@pytest.mark.parametrize(
    ("fmt", "want"),
    [
        ("table", "\nCOMM     N\nc        9\na        3\n"),
        ("json", '{"comm":"c","n":9}\n{"comm":"a","n":3}\n'),
        ("csv", "COMM,N\nc,9\na,3\n"),
        ("prom", 'n{comm="c"} 9\nn{comm="a"} 3\n'),
    ],
)
def test_each_renderer_renders_a_table(fmt: str, want: str) -> None:
    text = RENDERERS[fmt](()).table(TABLE, Order(column=1, natural=(0,), top=2))
    assert text == want


def test_cells_of_every_value_type() -> None:
    stack = Stack((Symbol("tcp_sendmsg", 0x1F), Symbol("sock_sendmsg"), Text("[unknown]")))
    row = ["x", stack]
    table = RENDERERS["table"](COLS).row(row)
    assert table == "x        tcp_sendmsg+0x1f\n         sock_sendmsg\n         [unknown]\n"
    doc = json.loads(RENDERERS["json"](COLS).row(row))
    assert doc == {"comm": "x", "n": ["tcp_sendmsg+0x1f", "sock_sendmsg", "[unknown]"]}
    assert RENDERERS["csv"](COLS).row(row) == "x,tcp_sendmsg+0x1f;sock_sendmsg;[unknown]\n"
    assert RENDERERS["json"](COLS).row(["y", Number(Decimal("1.500"))]) == '{"comm":"y","n":1.5}\n'


def test_histograms_in_each_format() -> None:
    h = Histogram({1: 2, 3: 1}, 9, "usecs", Log2Scale())
    keyed = [Keyed((("pid", 7),), h)]
    table = RENDERERS["table"](()).histograms("lat", ["pid"], keyed)
    assert table.startswith("\npid = 7\n     usecs               : count     distribution\n")
    assert "         4 -> 7          : 1        |********************                    |" in table
    line = json.loads(RENDERERS["json"](()).histograms("lat", ["pid"], keyed))
    assert line["buckets"] == [
        {"min": 0, "max": 1, "count": 2},
        {"min": 2, "max": 3, "count": 0},
        {"min": 4, "max": 7, "count": 1},
    ]
    assert RENDERERS["csv"](()).histograms("lat", ["pid"], []) == "pid,min,max,count\n"
    prom = RENDERERS["prom"](()).histograms("lat", ["pid"], keyed)
    assert 'lat_bucket{pid="7",le="+Inf"} 3' in prom and 'lat_count{pid="7"} 3' in prom


def test_linear_scale_bounds_and_prom_buckets() -> None:
    scale = LinearScale(0, 30, 10)
    assert [scale.bounds(i) for i in range(5)] == [
        (None, -1),
        (0, 9),
        (10, 19),
        (20, 29),
        (30, None),
    ]
    h = output_prom.cumulative(Histogram({1: 2, 4: 1}, 35, "", scale))
    assert h.buckets == ((-1.0, 0), (9.0, 2), (19.0, 2), (29.0, 2), (float("inf"), 3))
