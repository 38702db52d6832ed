"""max: the largest value of the written per-CPU slots."""

from __future__ import annotations

from typing import Callable, ClassVar

from engine.aggs.extreme import Extreme


class Max(Extreme):
    name: ClassVar[str] = "max"
    spec_key: ClassVar[str] = "max"
    words: ClassVar[str] = "a max"
    pick: ClassVar[Callable[..., int]] = max
