"""Symbol wildcards in uprobe targets and `func` naming the symbol that fired, against bpftrace.

The test builds tests/kernel/uprog.py's program beside a spec `uprobe: "./prog:work_*"` (the
binary relative to the spec's folder); the pattern expands against the binary's ELF symbols
(work_a, work_b, work_c; not `other`). The program calls them N_A, N_B and N_C times once every
tracer is attached; `count by func` must give exactly those, as bpftrace's
`uprobe:PROG:work_* { @[probe] = count(); }` on the same run. A uretprobe pattern counts the
returns the same way.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import procs
import pytest
import uprog
from conftest import CHILD_TIMEOUT, STOP_TIMEOUT
from oracle import BpftraceJson

from engine.errors import SpecError
from engine.pipeline import check

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

N_A, N_B, N_C = 3, 5, 7
EXPECTED = {"work_a": N_A, "work_b": N_B, "work_c": N_C}
SPEC = """\
name: ucount
probes:
  - name: calls
    attach:
      - {kind}: "./prog:work_*"
    fields:
      func: func
output:
  aggregations:
    - {{name: calls, count: true, by: [func]}}
"""


def bt_map(records: list[dict]) -> dict[str, int]:
    """bpftrace's `@[probe]` by symbol (`uprobe:PATH:work_a` -> work_a). Its `func` is no
    oracle for a uretprobe: there it names the caller the function returned to (main)."""
    return {
        k.rpartition(":")[2]: int(v)
        for r in records
        if r.get("type") == "map"
        for k, v in r["data"]["@"].items()
    }


@pytest.mark.parametrize("kind", ["uprobe", "uretprobe"])
def test_symbol_pattern_counts_by_func_like_bpftrace(engine, tmp_path: Path, kind: str) -> None:
    prog = uprog.build(tmp_path)
    spec = tmp_path / "ucount.yaml"
    spec.write_text(SPEC.format(kind=kind))
    plan = check(str(spec)).plan
    assert plan.func_names == ("work_a", "work_b", "work_c")
    child = procs.spawn(
        [str(prog), str(N_A), str(N_B), str(N_C), "0", "0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    child.stdout.readline()
    ours = engine(str(spec), "-o", "json")
    oracle = BpftraceJson(
        'BEGIN { printf("READY\\n"); }\n'
        f"{kind}:{prog}:work_* /pid == {child.pid}/ {{ @[probe] = count(); }}\n"
        f"uprobe:{prog}:other /pid == {child.pid}/ {{ print(@); }}"
    )
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline().startswith("done")
    theirs = bt_map(uprog.printed(oracle, "map"))
    child.stdin.write("exit\n")
    child.stdin.flush()
    assert child.wait(CHILD_TIMEOUT) == 0
    result = ours.stop(timeout=STOP_TIMEOUT)
    assert result.code == 0, result.stderr
    assert {r["func"]: r["count"] for r in result.json_rows()} == EXPECTED
    assert theirs == EXPECTED


def test_a_symbol_pattern_matching_nothing_is_located(tmp_path: Path) -> None:
    uprog.build(tmp_path)
    spec = tmp_path / "ucount.yaml"
    spec.write_text(SPEC.format(kind="uprobe").replace("work_*", "wrok_*"))
    with pytest.raises(SpecError) as err:
        check(str(spec))
    (problem,) = err.value.problems
    assert (problem.location.line, problem.location.col) == (5, 18)
    assert "'wrok_*'" in problem.message and "did you mean 'work_" in problem.message
