"""`engine run specs/profile.yaml -o flamegraph` on a CPU-bound child: the SVG the engine
writes names the child's functions, and a real browser (chromium, headless) draws them and
runs its search: hot_a's share there is the share of hot_a's samples in the folded output of
the same run's numbers (both come from one aggregation)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import procs
import pytest
import spinprog
from browser import rendered_dom
from conftest import STOP_TIMEOUT

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

WINDOW = 4.0  # seconds of sampling


def test_the_childs_frames_are_drawn_in_a_browser(engine, tmp_path: Path) -> None:
    child = spinprog.start_pinned(spinprog.build(tmp_path))
    ours = engine("specs/profile.yaml", "-p", str(child.pid), "-F", "99", "-o", "flamegraph")
    time.sleep(WINDOW)
    result = ours.stop(timeout=STOP_TIMEOUT)
    procs.kill(child)
    assert result.code == 0, result.stderr
    path = tmp_path / "cpu.svg"
    path.write_text(result.stdout, encoding="utf-8")
    for name in ("spin", "main", "hot_outer", "hot_a", "hot_b"):
        assert f'data-n="{name}"' in result.stdout, name
    total = float(re.search(r'data-total="([0-9.]+)"', result.stdout).group(1))
    hot_a = sum(
        float(v)
        for v in re.findall(r'data-v="([0-9.]+)" data-d="\d+" data-n="hot_a"', result.stdout)
    )
    dom = rendered_dom(path, query="s=^hot_a$")
    for name in ("hot_outer", "hot_a", "hot_b"):
        assert f">{name}<" in dom, name  # drawn as a label: the box is wide enough
    share = f"{100 * hot_a / total:.1f}%"
    assert f"search '^hot_a$' matched {share}" in dom, dom[-3000:]
