"""The kernel's bucket index (bpf_log2l in emit_agg_log2, the s64 bucket math of
emit_agg_linear) agrees with engine.runtime.sinks' bucket functions on chosen values.

A child passes each value as munlock()'s start (an unsigned long) through syscall(2) with a
length of 0, so nothing is unlocked. (kill()'s pid is a pid_t: the engine reads it as the s32
the kernel uses, not the 8-byte slot.) The value i-th in the list is sent i+1 times, so
a value in the wrong bucket changes the counts."""

from __future__ import annotations

import collections
import subprocess
import sys

import pytest

from engine.plan import model as M
from engine.runtime import sinks

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "tests/specs/live/buckets.yaml"
VALUES = [0, 1, 2, 3, 4, 7, 8, 1023, 1024, 2**32, 2**63, 2**64 - 1]
CHILD = f"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
for i, v in enumerate({VALUES!r}):
    for _ in range(i + 1):
        libc.syscall(ctypes.c_long(150), ctypes.c_ulong(v), ctypes.c_ulong(0))  # SYS_munlock
print(os.getpid())
"""
LIN = M.Aggregation("lin", "linear", "value", (), "", "value", 10240, low=0, high=1024, step=8)


def expected(index) -> list[dict[str, int]]:  # type: ignore[no-untyped-def]
    counts: collections.Counter[int] = collections.Counter()
    for i, v in enumerate(VALUES):
        counts[index(v)] += i + 1
    agg = LIN if index is not sinks.log2_index else M.Aggregation(
        "hist", "log2", "value", (), "", "value", 10240
    )  # fmt: skip
    return [sinks.bucket_json(*b) for b in sinks.bucket_rows(agg, dict(counts))]


def test_kernel_buckets_match_the_python_bucket_functions(engine) -> None:
    e = engine(SPEC, "-o", "json")
    done = subprocess.run(
        [sys.executable, "-I", "-c", CHILD], capture_output=True, text=True, timeout=30, check=True
    )
    me = int(done.stdout)
    result = e.stop()
    assert result.code == 0, result.stderr
    mine = {r["aggregation"]: r for r in result.json_rows() if r.get("pid") == me}
    total = sum((i + 1) * v for i, v in enumerate(VALUES))
    assert mine["hist"]["buckets"] == expected(sinks.log2_index)
    assert mine["hist"]["count"] == mine["lin"]["count"] == sum(range(1, len(VALUES) + 1))
    assert mine["hist"]["sum"] == total % 2**64  # a u64 sum wraps
    assert mine["lin"]["buckets"] == expected(lambda v: sinks.linear_index(LIN, v))
    # spelled out, so the Python functions cannot agree with the kernel by sharing a mistake
    assert [b["count"] for b in mine["hist"]["buckets"][:4]] == [1 + 2, 3 + 4, 5 + 6, 7]
    assert mine["hist"]["buckets"][-1] == {"min": 2**63, "max": 2**64 - 1, "count": 11 + 12}
    assert mine["lin"]["buckets"][0] == {"max": -1, "count": 11 + 12}  # 2^63, 2^64-1 as s64
    assert mine["lin"]["buckets"][-1] == {"min": 1024, "count": 9 + 10}  # 1024 and 2^32
