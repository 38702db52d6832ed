"""JSON lines: one object per row (led by the engine envelope when asked), one per key of a
histogram with its buckets as bpftrace -f json writes them."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, ClassVar, Mapping, Sequence

from engine.output.base import Renderer
from engine.output.values import Keyed, Number, Stack, Symbol, Text


class JsonRenderer(Renderer):
    name: ClassVar[str] = "json"
    exact_text: ClassVar[bool] = True  # JSON escapes text itself

    def row(self, cells: Sequence[Any]) -> str:
        return self.enveloped_row(cells, {})

    def enveloped_row(self, cells: Sequence[Any], extra: Mapping[str, str]) -> str:
        row: dict[str, Any] = dict(zip((c.key for c in self.columns), cells))
        if self.envelope is not None:
            row = {"engine": {"time": wall_time(), **self.envelope, **extra}, **row}
        return json.dumps(row, separators=(",", ":"), default=_json_value) + "\n"

    def stamp(self, interval: int, clock: bool) -> str:
        """Every interval's print starts with `{"interval": N, "time": ...}`, so a reader
        tells an interval with nothing from no output at all."""
        return json.dumps({"interval": interval, "time": wall_time()}, separators=(",", ":")) + "\n"

    def histograms(self, name: str, keys: Sequence[str], series: Sequence[Keyed]) -> str:
        lines = []
        for s in series:
            h = s.histogram
            obj: dict[str, Any] = {"aggregation": name, **dict(s.key), "unit": h.unit}
            obj["buckets"] = [bucket_json(*b) for b in h.rows()]
            obj["count"] = h.count
            obj["sum"] = h.total
            lines.append(json.dumps(obj, separators=(",", ":")) + "\n")
        return "".join(lines)


def bucket_json(low: int | None, high: int | None, count: int) -> dict[str, int]:
    """A bucket as bpftrace -f json writes one: an unbounded side has no key."""
    obj = {} if low is None else {"min": low}
    if high is not None:
        obj["max"] = high
    obj["count"] = count
    return obj


def _json_value(value: Any) -> Any:
    """A Decimal cell (an aggregation printed in us/ms/s: exact decimals) as a JSON number
    (the shortest float repr gives back the same digits up to 15 significant ones); the
    other values as their plain JSON: a stack is a list of its frames."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Number):
        return _json_value(value.value) if isinstance(value.value, Decimal) else value.value
    if isinstance(value, (Text, Symbol)):
        return str(value)
    if isinstance(value, Stack):
        return value.lines()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def wall_time() -> str:
    """Now, UTC, RFC 3339 with microseconds: when user space read the event."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
