"""min: the smallest value of the written per-CPU slots."""

from __future__ import annotations

from typing import Callable, ClassVar

from engine.aggs.extreme import Extreme


class Min(Extreme):
    name: ClassVar[str] = "min"
    spec_key: ClassVar[str] = "min"
    words: ClassVar[str] = "a min"
    pick: ClassVar[Callable[..., int]] = min
