"""avg: a sum and a count per slot; user space divides once, toward zero as C does."""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

from engine.aggs.base import AggKind, Exact, Member, Params, c_div, scaled, wrap


class Avg(AggKind):
    name: ClassVar[str] = "avg"
    spec_key: ClassVar[str] = "avg"
    words: ClassVar[str] = "an average"
    printable: ClassVar[bool] = True

    def members(self, value_ctype: str, buckets: int) -> tuple[Member, ...]:
        return ((value_ctype, "sum", 0), ("u64", "count", 0))

    def merge(self, values: Sequence[Any], signed: bool) -> tuple[int, int] | None:
        count = sum(v.count for v in values)
        return (wrap(sum(v.sum for v in values), signed), count) if count else None

    def number(self, p: Params, merged: Any) -> int | Exact:
        """The whole-unit average (toward zero), shown under `print:` as the others."""
        total, n = merged
        return scaled(c_div(total, n) if n else 0, p.divisor)

    def metric(self, merged: Any) -> tuple[float, float, int]:
        total, n = merged
        return (total / n) if n else 0.0, total, n
