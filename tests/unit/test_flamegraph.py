"""`-o flamegraph` (engine.output.flamegraph): the SVG from a table keyed by stacks is the same
bytes for the same input, escapes every name, sizes each frame by its share, and its script
hovers, zooms and searches in a real browser (chromium, headless)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from browser import rendered_dom

from engine.output import RENDERERS
from engine.output.flamegraph import SIDE, WIDTH
from engine.output.values import Column, Number, Order, Stack, Symbol, Table

SVG_NS = "{http://www.w3.org/2000/svg}"
COLS = (
    Column("ustack", "USTACK", 24, stack=True),
    Column("comm", "COMM", 16),
    Column("count", "COUNT", 8),
)


def user(*frames: str) -> Stack:
    return Stack(tuple(Symbol(f) for f in reversed(frames)), "user")  # given root first


TABLE = Table(
    COLS,
    (
        (user("main", "hot_outer", "hot_a"), "spin", Number(60)),
        (user("main", "hot_outer", "hot_b"), "spin", Number(30)),
        (user("main", '<odd> & "name" ü'), "spin", Number(10)),
    ),
    keys=2,
)


def svg(table: Table = TABLE) -> str:
    return RENDERERS["flamegraph"](()).table(table, Order(column=2))


def frames(text: str) -> dict[str, ET.Element]:
    root = ET.fromstring(text)
    return {
        g.get("data-n"): g for g in root.iter(f"{SVG_NS}g") if "f" in (g.get("class") or "").split()
    }


def test_same_input_same_bytes_and_names_escaped() -> None:
    text = svg()
    assert text == svg(Table(COLS, tuple(reversed(TABLE.rows)), keys=2))
    found = frames(text)  # parses: every name was escaped
    assert set(found) == {"all", "spin", "main", "hot_outer", "hot_a", "hot_b", '<odd> & "name" ü'}
    assert "<odd>" not in text


def test_widths_are_shares_of_the_samples() -> None:
    found = frames(svg())
    full = WIDTH - 2 * SIDE
    for name, samples in (("all", 100), ("main", 100), ("hot_outer", 90), ("hot_a", 60)):
        rect = found[name].find(f"{SVG_NS}rect")
        assert float(rect.get("width")) == round(full * samples / 100, 2), name
        assert found[name].get("data-v") == str(samples)
    title = found["hot_b"].find(f"{SVG_NS}title").text
    assert title == "hot_b (30 samples, 30.00%)"


def status(dom: str) -> str:
    match = re.search(r'id="status"[^>]*>([^<]*)<', dom)
    assert match, dom[:2000]
    return match.group(1)


def test_search_and_zoom_in_a_real_browser(tmp_path: Path) -> None:
    path = tmp_path / "flame.svg"
    path.write_text(svg(), encoding="utf-8")
    dom = rendered_dom(path, query="s=hot_", fragment="")
    assert "hot_outer" in dom and "hot_a" in dom
    # hot_outer matches and holds hot_a and hot_b: 90%, each sample counted once
    assert status(dom) == "search 'hot_' matched 90.0%; drawn 7 frames", status(dom)
    zoom_id = frames(svg())["hot_outer"].get("id")
    dom = rendered_dom(path, fragment=f"zoom={zoom_id}")
    assert status(dom) == f"zoom {zoom_id} hot_outer; drawn 7 frames"
    zoomed = frames(dom)
    assert zoomed["hot_outer"].find(f"{SVG_NS}rect").get("width") == f"{WIDTH - 2 * SIDE:.2f}"
    assert "hidden" in (zoomed['<odd> & "name" ü'].get("class") or "")
