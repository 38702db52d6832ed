"""log2 (a spec's `hist`): bcc's bucket layout, bpf_log2l: 0 and 1 share bucket 1, bucket n
holds 2^(n-1) .. 2^n - 1; 65 buckets cover a u64."""

from __future__ import annotations

from typing import ClassVar

from engine.aggs.base import Params
from engine.aggs.histogram import Histogram
from engine.output.values import Log2Scale


class Log2(Histogram):
    name: ClassVar[str] = "log2"
    spec_key: ClassVar[str] = "hist"

    def buckets(self, p: Params) -> int:
        return 65

    def index(self, p: Params, v: int) -> int:
        return log2_index(v)

    def scale(self, p: Params) -> Log2Scale:
        return Log2Scale()


def log2_bounds(i: int) -> tuple[int, int]:
    """bcc's bucket i (bpf_log2l): 1 holds 0 and 1, then 2^(i-1) .. 2^i - 1, inclusive."""
    return Log2Scale().bounds(i)


def log2_index(v: int) -> int:
    """bcc's bpf_log2l(v), the kernel's bucket of a u64: 0 and 1 go to 1, else bit_length."""
    return max(1, (v & 0xFFFFFFFFFFFFFFFF).bit_length())
