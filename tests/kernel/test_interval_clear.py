"""`--interval 1 --clear` loses nothing: a child calls kill() without pause while the engine
prints and clears every second, and the printed intervals add up to exactly the calls it
made, for a count and for the histograms.

The child runs until the engine has printed at least three intervals (so prints and clears
happen while events arrive, whatever the machine's speed), then stops and says how many calls
it made. Its calls target KEYS pids past pid_max (so they fail with ESRCH) in turn, so each
print reads and clears many keys while events keep arriving; every call carries signal 0 or
28, so the sums are known too."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "tests/specs/live/interval.yaml"
KEYS = 500
CHILD = f"""
import ctypes, select, sys
kill = ctypes.CDLL(None).kill
sys.stdin.readline()
n = with28 = 0
while not select.select([sys.stdin], [], [], 0)[0]:
    for _ in range(2000):
        sig = 28 if n % 3 == 0 else 0
        kill(4200000 + n % {KEYS}, sig)  # past pid_max (at most 2^22): ESRCH
        n += 1
        with28 += sig == 28
print(n, with28, flush=True)
"""
PRINTS = 3  # interval prints seen while the child runs


def test_intervals_add_up_to_every_event(engine) -> None:
    argv = [sys.executable, "-I", "-c", CHILD]
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        e = engine(SPEC, "-p", str(child.pid), "-o", "json", "--interval", "1", "--clear")
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write("go\n")
        child.stdin.flush()
        e.wait_stdout(lambda lines: sum('"calls"' in x for x in lines) >= PRINTS * KEYS, 120)
        child.stdin.write("stop\n")
        child.stdin.close()
        calls, with28 = map(int, child.stdout.readline().split())
        assert child.wait(timeout=30) == 0
        result = e.stop()
    finally:
        child.kill()
        child.wait()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
    assert result.code == 0, result.stderr
    rows = result.json_rows()
    table = [r for r in rows if "calls" in r]
    assert len(table) > PRINTS * KEYS  # the intervals seen, and the final print
    assert sum(r["calls"] for r in table) == calls
    assert sum(r["total"] for r in table) == 28 * with28
    assert {r["least"] for r in table} <= {0, 28} and {r["most"] for r in table} <= {0, 28}
    for name in ("spread", "lin"):
        hists = [r for r in rows if r.get("aggregation") == name]
        assert sum(h["count"] for h in hists) == calls, name
        assert sum(h["sum"] for h in hists) == 28 * with28, name
