"""count: one more per event; a u64 per key, CPUs add up."""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

from engine.aggs.base import AggKind, wrap


class Count(AggKind):
    name: ClassVar[str] = "count"
    spec_key: ClassVar[str] = "count"
    words: ClassVar[str] = "a count"
    header: ClassVar[str] = "COUNT"
    takes_value: ClassVar[bool] = False
    zero_is_empty: ClassVar[bool] = True  # `other` keeps no count beside it
    prom_types: ClassVar[tuple[str, ...]] = ("counter", "gauge")

    def merge(self, values: Sequence[Any], signed: bool) -> int:
        return wrap(sum(values), signed)
