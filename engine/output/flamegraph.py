"""`-o flamegraph`: one self-contained interactive SVG of an aggregation keyed by stacks.

The folded stacks (engine.output.folded) merge by prefix into a tree under `all`; each frame
is a box as wide as its share of the samples, the root at the bottom (flamegraph.pl's
layout). The file needs nothing else (no script, font or style from elsewhere) and is the same
bytes for the same input: children sorted by name, colours from a CRC of the name. Every text
is XML-escaped. Its script: hover shows a frame's samples and share; a click zooms into a
frame (the reset button undoes it); the search button (or `?s=REGEX` in the address) marks
matching frames and says their share, nested matches counted once; `#zoom=fN` zooms on load.
The script writes what it did into the element `status`, which tests read in a browser.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence
from xml.sax.saxutils import escape, quoteattr

from engine.output.base import Renderer
from engine.output.folded import folded_lines
from engine.output.values import Keyed, Order, Table

WIDTH, ROW, PAD_TOP, PAD_BOTTOM, SIDE = 1200, 16, 40, 30, 10
FONT = 12
CHAR = 7.0  # a monospace character's width at FONT px, to fit names into their boxes


@dataclass
class Node:
    """One frame of the merged tree: its samples (own and below) and its callees by name."""

    name: str
    value: float = 0
    children: dict[str, Node] = field(default_factory=dict)


def tree(lines: Sequence[tuple[list[str], Any]]) -> Node:
    root = Node("all")
    for frames, value in lines:
        node = root
        node.value += float(value)
        for frame in frames:
            node = node.children.setdefault(frame, Node(frame))
            node.value += float(value)
    return root


def colour(name: str) -> str:
    """flamegraph.pl's warm palette, from a CRC of the name (stable across runs)."""
    h = zlib.crc32(name.encode("utf-8", "surrogateescape"))
    return f"rgb({205 + h % 50},{(h >> 8) % 230},{(h >> 16) % 55})"


@dataclass(frozen=True)
class Box:
    """One frame placed: its id, parent's id, offset (in samples) and depth."""

    ident: int
    node: Node
    x: float
    depth: int
    parent: int


def place(root: Node) -> list[Box]:
    """Every frame, parents before children, callees in name order (depth first)."""
    out: list[Box] = []
    todo: list[tuple[Node, float, int, int]] = [(root, 0.0, 0, -1)]
    while todo:
        node, x, depth, parent = todo.pop()
        me = len(out)
        out.append(Box(me, node, x, depth, parent))
        kids, offset = [], x
        for name in sorted(node.children):
            kid = node.children[name]
            kids.append((kid, offset, depth + 1, me))
            offset += kid.value
        todo.extend(reversed(kids))
    return out


def label(name: str, width: float) -> str:
    """The name as it fits a box `width` px wide (cut with `..`, or nothing)."""
    fit = int((width - 6) // CHAR)
    if fit >= len(name):
        return name
    return name[: fit - 2] + ".." if fit > 2 else ""


def draw(box: Box, total: float, height: int) -> str:
    """One frame's <g>: where the script finds its numbers, and its drawing without a script."""
    node = box.node
    scale = (WIDTH - 2 * SIDE) / total if total else 0
    share = 100 * node.value / total if total else 0
    value = f"{node.value:g}"
    title = f"{node.name} ({value} samples, {share:.2f}%)"
    attrs = (
        f'id="f{box.ident}" class="f" data-p="f{box.parent}" data-x="{box.x:g}" '
        f'data-v="{value}" data-d="{box.depth}" data-n={quoteattr(node.name)}'
    )
    x, w = SIDE + box.x * scale, node.value * scale
    y = height - PAD_BOTTOM - (box.depth + 1) * ROW
    fill = colour(node.name) if box.depth else "rgb(240,240,240)"
    return (
        f"<g {attrs}><title>{escape(title)}</title>"
        f'<rect x="{x:.2f}" y="{y}" width="{w:.2f}" height="{ROW - 1}" fill="{fill}" rx="2"/>'
        f'<text x="{x + 3:.2f}" y="{y + ROW - 4}">{escape(label(node.name, w))}</text></g>'
    )


def svg(table: Table, order: Order | None = None, title: str = "Flame Graph") -> str:
    root = tree(folded_lines(table, order))
    placed = place(root)
    height = PAD_TOP + (max(b.depth for b in placed) + 1) * ROW + PAD_BOTTOM
    parts = [draw(b, root.value, height) for b in placed]
    return TEMPLATE.format(
        width=WIDTH,
        height=height,
        title=escape(title),
        total=f"{root.value:g}",
        frames="\n".join(parts),
        row=ROW,
        side=SIDE,
        font=FONT,
        char=CHAR,
        top=PAD_TOP,
        bottom=PAD_BOTTOM,
        details_y=height - 10,
        script=SCRIPT,
    )


class FlameGraphRenderer(Renderer):
    name: ClassVar[str] = "flamegraph"
    events: ClassVar[bool] = False
    stacks: ClassVar[bool] = True

    def row(self, cells: Sequence[Any]) -> str:
        raise NotImplementedError("a flame graph draws aggregations keyed by stacks only")

    def table(self, table: Table, order: Order | None = None) -> str:
        return svg(table, order)

    def histograms(self, name: str, keys: Sequence[str], series: Sequence[Keyed]) -> str:
        return ""  # a histogram has no stack to draw (runs refuse such specs: engine.cli)


TEMPLATE = """<?xml version="1.0" standalone="no"?>
<svg version="1.1" width="{width}" height="{height}" viewBox="0 0 {width} {height}" \
xmlns="http://www.w3.org/2000/svg" data-total="{total}" data-row="{row}" data-side="{side}" \
data-char="{char}" data-top="{top}" data-bottom="{bottom}">
<style>
text {{ font-family: monospace; font-size: {font}px; fill: rgb(0,0,0); }}
.f:hover rect {{ stroke: rgb(0,0,0); stroke-width: 0.5; }}
.hidden {{ display: none; }}
.button {{ cursor: pointer; fill: rgb(0,0,160); }}
</style>
<rect x="0" y="0" width="{width}" height="{height}" fill="rgb(250,250,250)"/>
<text x="{side}" y="20" style="font-size: 16px">{title}</text>
<text id="reset" class="button hidden" x="{side}" y="34">Reset Zoom</text>
<text id="search" class="button" x="1090" y="20">Search</text>
<text id="matched" x="1090" y="34"></text>
<text id="details" x="{side}" y="{details_y}"> </text>
<text id="status" x="600" y="34"></text>
<g id="frames">
{frames}
</g>
<script type="text/ecmascript"><![CDATA[
{script}
]]></script>
</svg>
"""

SCRIPT = r"""
(function () {
"use strict";
var svg = document.documentElement;
var total = parseFloat(svg.getAttribute("data-total"));
function attr(name) { return parseFloat(svg.getAttribute(name)); }
var ROW = attr("data-row"), SIDE = attr("data-side"), CHAR = attr("data-char");
var WIDTH = attr("width"), HEIGHT = attr("height"), BOTTOM = attr("data-bottom");
var frames = Array.prototype.slice.call(document.querySelectorAll("g.f"));
var byId = {};
frames.forEach(function (g) { byId[g.id] = g; });
var statusText = document.getElementById("status");
var details = document.getElementById("details");
var said = [];
function say(text) { said.push(text); statusText.textContent = said.join("; "); }
function num(g, a) { return parseFloat(g.getAttribute(a)); }
function isUnder(g, top) {
  for (var n = g; n; n = byId[n.getAttribute("data-p")]) { if (n === top) return true; }
  return false;
}
function draw(top) {
  var x0 = num(top, "data-x"), span = num(top, "data-v"), scale = (WIDTH - 2 * SIDE) / span;
  frames.forEach(function (g) {
    var rect = g.querySelector("rect"), text = g.querySelector("text");
    var show = isUnder(g, top) || isUnder(top, g);
    if (!show) { g.classList.add("hidden"); return; }
    g.classList.remove("hidden");
    var x = isUnder(g, top) ? SIDE + (num(g, "data-x") - x0) * scale : SIDE;
    var w = isUnder(g, top) ? num(g, "data-v") * scale : WIDTH - 2 * SIDE;
    var y = HEIGHT - BOTTOM - (num(g, "data-d") + 1) * ROW;
    rect.setAttribute("x", x.toFixed(2)); rect.setAttribute("width", w.toFixed(2));
    rect.setAttribute("y", y); text.setAttribute("x", x + 3); text.setAttribute("y", y + ROW - 4);
    var name = g.getAttribute("data-n"), fit = Math.floor((w - 6) / CHAR);
    text.textContent = fit >= name.length ? name : (fit > 2 ? name.slice(0, fit - 2) + ".." : "");
  });
}
function zoom(g) {
  draw(g);
  document.getElementById("reset").classList.toggle("hidden", g === frames[0]);
  if (g !== frames[0]) say("zoom " + g.id + " " + g.getAttribute("data-n"));
}
function search(pattern) {
  var re;
  try { re = new RegExp(pattern); } catch (e) { say("search: bad pattern " + pattern); return; }
  var matched = 0;
  frames.forEach(function (g) {
    var rect = g.querySelector("rect"), hit = re.test(g.getAttribute("data-n"));
    if (!rect.hasAttribute("data-fill")) rect.setAttribute("data-fill", rect.getAttribute("fill"));
    rect.setAttribute("fill", hit ? "rgb(230,0,230)" : rect.getAttribute("data-fill"));
    if (!hit) return;
    for (var p = byId[g.getAttribute("data-p")]; p; p = byId[p.getAttribute("data-p")]) {
      if (re.test(p.getAttribute("data-n"))) return;  // counted with its matching caller
    }
    matched += num(g, "data-v");
  });
  var share = (100 * matched / total).toFixed(1) + "%";
  document.getElementById("matched").textContent = "Matched: " + share;
  say("search '" + pattern + "' matched " + share);
}
frames.forEach(function (g) {
  g.addEventListener("mouseover", function () {
    details.textContent = g.querySelector("title").textContent;
  });
  g.addEventListener("mouseout", function () { details.textContent = " "; });
  g.addEventListener("click", function () { zoom(g); });
});
document.getElementById("reset").addEventListener("click", function () {
  zoom(frames[0]); say("reset");
});
document.getElementById("search").addEventListener("click", function () {
  var pattern = window.prompt("Search for (a regular expression):", "");
  if (pattern) search(pattern);
});
draw(frames[0]);
var query = new URLSearchParams(window.location.search).get("s");
var hash = /zoom=(f[0-9]+)/.exec(window.location.hash);
if (hash && byId[hash[1]]) zoom(byId[hash[1]]);
if (query) search(query);
say("drawn " + frames.length + " frames");
})();
"""
