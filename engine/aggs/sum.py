"""sum: the field added, in its signedness; CPUs add up and wrap as the C type does."""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

from engine.aggs.base import AggKind, wrap


class Sum(AggKind):
    name: ClassVar[str] = "sum"
    spec_key: ClassVar[str] = "sum"
    words: ClassVar[str] = "a sum"
    printable: ClassVar[bool] = True
    zero_is_empty: ClassVar[bool] = True
    prom_types: ClassVar[tuple[str, ...]] = ("counter", "gauge")

    def metric_types(self, signed: bool) -> tuple[str, ...]:
        """A signed field's sum can fall, which a counter must not: a gauge only."""
        return ("gauge",) if signed else self.prom_types

    def merge(self, values: Sequence[Any], signed: bool) -> int:
        return wrap(sum(values), signed)
