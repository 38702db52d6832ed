"""min, max, avg, sum and histogram sums of a signed field, exact, in maps of 2 keys.

Three processes call kill() with known signals, one after another, each pinned to one CPU (so
the other CPUs' per-CPU slots of its key are never written): B with -5, -7, -100, then A with
17, 23, 28 (both kept in the maps), then C with -7 and 0 (folded into `other`). An unwritten
slot must not merge as a 0, a negative sum must print negative, and `other` must hold C's values
for min and max too."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "tests/specs/live/signed.yaml"
CHILD = """
import os, sys
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
sys.stdin.readline()
for sig in map(int, sys.argv[1:]):  # negative: EINVAL; 0: a check; 17, 23, 28: ignored
    try:
        os.kill(os.getpid(), sig)
    except OSError:
        pass
"""
B, A, C = (-5, -7, -100), (17, 23, 28), (-7, 0)


def child(sigs: tuple[int, ...]) -> subprocess.Popen[str]:
    argv = [sys.executable, "-I", "-c", CHILD, *map(str, sigs)]
    return subprocess.Popen(argv, stdin=subprocess.PIPE, text=True)


def test_signed_values_and_unwritten_cpus(engine) -> None:
    kids = [child(sigs) for sigs in (B, A, C)]
    try:
        e = engine(SPEC, "-p", ",".join(str(k.pid) for k in kids), "-o", "json")
        for k in kids:  # one after another: B and A take the 2 keys, C folds
            assert k.stdin is not None
            k.stdin.write("go\n")
            k.stdin.close()
            assert k.wait(timeout=30) == 0
        result = e.stop()
    finally:
        for k in kids:
            k.kill()
            k.wait()
            if k.stdin is not None:
                k.stdin.close()
    assert result.code == 0, result.stderr
    b, a = kids[0].pid, kids[1].pid
    rows = result.json_rows()
    table = {r["tgid"]: r for r in rows if "aggregation" not in r}
    assert table == {
        b: {"tgid": b, "least": -100, "most": -5, "mean": -37, "total": -112},
        a: {"tgid": a, "least": 17, "most": 28, "mean": 22, "total": 68},
        "other": {"tgid": "other", "least": -7, "most": 0, "mean": -3, "total": -7},
    }
    hists = {(r["aggregation"], r["tgid"]): r for r in rows if "aggregation" in r}
    assert {k: (h["count"], h["sum"]) for k, h in hists.items()} == {
        (name, key): (len(vals), sum(vals))
        for name in ("spread", "lin")
        for key, vals in ((b, B), (a, A), ("other", C))
    }
    assert hists[("lin", b)]["buckets"][0] == {"min": -100, "max": -91, "count": 1}
    assert hists[("lin", b)]["buckets"][-1] == {"min": -10, "max": -1, "count": 2}
    assert hists[("lin", "other")]["buckets"] == [
        {"min": -10, "max": -1, "count": 1},
        {"min": 0, "max": 9, "count": 1},
    ]
    folded = dict(re.findall(r"aggregation '(\w+)': events past 2 keys, folded into 'other': (\d+)",
                             result.stderr))  # fmt: skip
    assert folded == dict.fromkeys(("least", "most", "mean", "total", "spread", "lin"), "2")
