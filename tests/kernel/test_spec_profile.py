"""`specs/profile.yaml` (profile: hz:N on every CPU, samples counted in the kernel by kernel and
user stack, comm and pid) against bcc's profile on the same CPU-bound child, at the same time.

The child (tests/kernel/spinprog.py, frame pointers everywhere) spends about two thirds of its
time in main -> hot_outer -> hot_a and one third in hot_b, pinned to one CPU. Both tools sample
it at 99 Hz for the same seconds and print the same layout, parsed by oracle.profile_blocks.
Stacks are compared up to `main` (what is below it is libc's start code, which neither names
without libc's debug symbols). Stated tolerance: the hottest stack is the same in both, and
each of the child's two hot stacks' share of its samples differs by at most 0.10 between the
tools (each sees ~500 samples of a split that jitters by a few percent run to run; the two
tools' samplers are not synchronized).
"""

from __future__ import annotations

import time
from pathlib import Path

import procs
import pytest
import spinprog
from conftest import STOP_TIMEOUT
from oracle import ProfileBcc, profile_blocks

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/profile.yaml"
WINDOW = 5.0  # seconds both tools sample the child (a measurement window, not a wait)
TOLERANCE = 0.10
HOT_A = ("main", "hot_outer", "hot_a")
HOT_B = ("main", "hot_outer", "hot_b")


@pytest.fixture
def spin(tmp_path: Path):
    child = spinprog.start_pinned(spinprog.build(tmp_path))
    yield child
    procs.kill(child)


def to_main(stacks: dict[tuple[str, ...], int], comm: str) -> dict[tuple[str, ...], int]:
    """The child's user stacks, outermost first, cut below `main`; kernel frames (an
    interrupt taken in hot_a) kept above them."""
    out: dict[tuple[str, ...], int] = {}
    for (c, *frames), n in stacks.items():
        if c != comm:
            continue
        outer = list(reversed(frames))
        if "main" in outer:
            outer = outer[outer.index("main") :]
        key = tuple(outer)
        out[key] = out.get(key, 0) + n
    return out


def shares(stacks: dict[tuple[str, ...], int]) -> dict[tuple[str, ...], float]:
    total = sum(stacks.values())
    return {k: v / total for k, v in stacks.items()}


def test_hottest_stack_and_shares_agree_with_bcc(engine, spin) -> None:
    ours = engine(SPEC, "-p", str(spin.pid), "-F", "99")
    bcc = ProfileBcc("-F", "99", "-p", str(spin.pid))
    time.sleep(WINDOW)
    theirs_lines = bcc.stop()
    result = ours.stop(timeout=STOP_TIMEOUT)
    assert result.code == 0, result.stderr
    mine = to_main(profile_blocks(result.out_lines), "spin")
    theirs = to_main(profile_blocks(theirs_lines), "spin")
    print(f"engine {sorted(mine.items(), key=lambda kv: -kv[1])[:4]}")
    print(f"bcc    {sorted(theirs.items(), key=lambda kv: -kv[1])[:4]}")
    assert sum(mine.values()) >= 100 and sum(theirs.values()) >= 100, (mine, theirs)
    assert max(mine, key=mine.__getitem__) == max(theirs, key=theirs.__getitem__) == HOT_A
    ours_share, bcc_share = shares(mine), shares(theirs)
    for stack in (HOT_A, HOT_B):
        assert abs(ours_share.get(stack, 0) - bcc_share.get(stack, 0)) <= TOLERANCE, stack


def test_user_only_kernel_only_and_folded(engine, spin) -> None:
    """-U prints no kernel frame, -K no user frame; -f one folded line per stack, root first."""
    runs = {
        flag: engine(SPEC, "-p", str(spin.pid), "-F", "99", flag) for flag in ("-U", "-K", "-f")
    }
    time.sleep(WINDOW)
    out = {flag: p.stop(timeout=STOP_TIMEOUT) for flag, p in runs.items()}
    for flag, result in out.items():
        assert result.code == 0, (flag, result.stderr)
    user = profile_blocks(out["-U"].out_lines)
    assert any("main" in k and "hot_a" in k for k in user), user
    kernel = profile_blocks(out["-K"].out_lines)
    assert not any(f in spinprog.FUNCTIONS for k in kernel for f in k[1:]), kernel
    folded = dict(line.rsplit(" ", 1) for line in out["-f"].out_lines)
    hot = [s for s in folded if s.startswith("spin;") and s.endswith(";main;hot_outer;hot_a")]
    assert hot and all(int(folded[s]) > 0 for s in hot), folded


def test_the_default_rate_is_49_hz(engine, spin) -> None:
    """No -F: 49 samples a second of the pinned child (it runs all the time, unless the machine
    is busy: then fewer), so at most 49 a second, and well over half of that on most runs."""
    started = time.monotonic()
    ours = engine(SPEC, "-p", str(spin.pid), "-f")
    ready = time.monotonic()
    time.sleep(WINDOW)
    result = ours.stop(timeout=STOP_TIMEOUT)
    elapsed = time.monotonic() - started
    assert result.code == 0, result.stderr
    total = sum(int(line.rsplit(" ", 1)[1]) for line in result.out_lines)
    print(f"{total} samples in {elapsed - (ready - started):.1f}..{elapsed:.1f} s")
    assert total <= 49 * elapsed + 5
    assert total >= 49 * WINDOW * 0.3


def test_a_process_that_exited_still_resolves(engine, tmp_path: Path) -> None:
    """The engine reads the mappings of the processes behind its user stacks every second,
    so a child that exits before the stacks print (at the end) still has its frames named."""
    ours = engine(SPEC, "-F", "99", "-U", "-f")
    child = spinprog.start_pinned(spinprog.build(tmp_path), "2")
    assert child.wait(STOP_TIMEOUT) == 0
    result = ours.stop(timeout=STOP_TIMEOUT)
    assert result.code == 0, result.stderr
    mine = [line for line in result.out_lines if line.startswith("spin;")]
    assert any(";main;hot_outer;hot_a " in line for line in mine), mine
