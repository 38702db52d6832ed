"""What min and max share: the value and a count beside it, so a CPU's slot that was never
written (per-CPU hashes zero the other CPUs' slots of a new key) is left out of the merge."""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Sequence

from engine.aggs.base import AggKind, Member


class Extreme(AggKind):
    printable: ClassVar[bool] = True
    pick: ClassVar[Callable[..., int]]

    def members(self, value_ctype: str, buckets: int) -> tuple[Member, ...]:
        return ((value_ctype, "value", 0), ("u64", "count", 0))

    def merge(self, values: Sequence[Any], signed: bool) -> int | None:
        written = [v.value for v in values if v.count]
        return type(self).pick(written) if written else None

    def fold(self, values: Sequence[Any]) -> Any:
        return type(self).pick(values)
