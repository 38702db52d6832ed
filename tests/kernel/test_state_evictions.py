"""Keys an LRU state map evicts are counted and reported (tests/specs/live/lru_evict.yaml):
1,000 keys stored into a map of 100, then each taken back. The kernel tells no one about an
eviction; the engine counts the keys inserted and deleted in the kernel and the keys held, so
the keys evicted are exactly the takes that found nothing: 1,000 - the rows printed. Storing
over a key that is there is not a new key: ten stores of one key, one take, no eviction."""

from __future__ import annotations

import ctypes
import re

import pytest
from test_serve_prometheus import Serve  # at collection: its `conftest` is tests/kernel's

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "tests/specs/live/lru_evict.yaml"
PUT, TAKE = 127218, 127219  # no such syscalls (ENOSYS): raw_syscalls/sys_enter sees them
LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.syscall.restype = ctypes.c_long
KEYS = 1000


def call(nr: int, key: int) -> None:
    assert LIBC.syscall(ctypes.c_long(nr), ctypes.c_ulong(key)) == -1
    assert ctypes.get_errno() == 38  # ENOSYS: nothing happened but the tracepoint


def test_evicted_keys_are_reported_exactly(engine) -> None:
    e = engine(SPEC, "-o", "json")
    for key in range(KEYS):
        call(PUT, key)
    for key in range(KEYS):
        call(TAKE, key)
    for _ in range(10):
        call(PUT, 5000)  # one new key, then nine stores over it
    call(TAKE, 5000)
    result = e.stop()
    assert result.code == 0, result.stderr
    taken = [row["key"] for row in result.json_rows()]
    assert taken[-1] == 5000 and 0 < len(taken) - 1 <= 100, taken
    evicted = KEYS - (len(taken) - 1)
    lines = [x for x in result.err_lines if "evicted" in x]
    assert lines == [f"state 'held': keys evicted (LRU map full, size 100): {evicted}"]
    assert not re.search(r"failed updates", result.stderr)


def test_serve_counts_evictions() -> None:
    """engine serve: engine_state_evictions_total{state="held"} and the takes that found
    their key (the `takes` count) add up to the 1,000 keys stored."""
    serve = Serve("tests/specs/serve/lru_evict.yaml")
    try:
        for key in range(KEYS):
            call(PUT, key)
        for key in range(KEYS):
            call(TAKE, key)
        status, text = serve.get("/metrics")
        assert status == 200
        takes = int(float(re.findall(r"^lru_evict_serve_takes_total (\S+)$", text, re.M)[0]))
        evicted = int(
            float(
                re.findall(
                    r'^engine_state_evictions_total\{spec="lru_evict_serve",state="held"\} (\S+)$',
                    text,
                    re.M,
                )[0]
            )
        )
        assert 0 < takes <= 100 and takes + evicted == KEYS, text
        assert serve.stop() == 0
    finally:
        serve.kill()
