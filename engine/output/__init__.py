"""Output as values (engine.output.values) and one renderer per format, chosen by name from
RENDERERS: no caller compares format names."""

from __future__ import annotations

from engine.output.base import Renderer
from engine.output.csv import CsvRenderer
from engine.output.flamegraph import FlameGraphRenderer
from engine.output.folded import FoldedRenderer
from engine.output.json import JsonRenderer
from engine.output.prom import PromRenderer
from engine.output.table import TableRenderer

RENDERERS: dict[str, type[Renderer]] = {
    r.name: r
    for r in (
        TableRenderer,
        JsonRenderer,
        CsvRenderer,
        PromRenderer,
        FoldedRenderer,
        FlameGraphRenderer,
    )
}
# what `engine run -o` offers: the formats that print events, then those printing stacks only
FORMATS: tuple[str, ...] = tuple(name for name, r in RENDERERS.items() if r.events)
STACK_FORMATS: tuple[str, ...] = tuple(name for name, r in RENDERERS.items() if r.stacks)

__all__ = ["FORMATS", "RENDERERS", "STACK_FORMATS", "Renderer"]
