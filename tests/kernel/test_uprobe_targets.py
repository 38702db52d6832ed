"""uprobe/uretprobe targets on a program the test builds: a versioned symbol
(`getpid@@GLIBC_2.2.5`) attaches and counts every call (bcc 0.26 cannot resolve the versioned
name; the engine hands it the plain one), and a uretprobe on two functions that call each other
(outer -> inner) in one probe reports the inner return only: the saved arguments are one slot
per thread per probe (docs/spec.md), while two probes report both returns, as bpftrace does.

The program (gcc -O0) waits for "go", then calls outer(10*i) and getpid() for i < N. Exact:
every call of the child, compared with bpftrace on the same run."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import procs
import pytest
from conftest import CHILD_TIMEOUT
from oracle import Bpftrace

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

N = 3
PROGRAM = """
#include <stdio.h>
#include <unistd.h>
__attribute__((noinline)) int inner(int a) { __asm__ volatile("" ::: "memory"); return a * 2; }
__attribute__((noinline)) int outer(int a) { return inner(a + 1) + 1; }
int main(void) {
    char line[16];
    if (!fgets(line, sizeof line, stdin)) return 1;
    for (int i = 0; i < N; i++) { outer(10 * i); getpid(); }
    return 0;
}
"""
RET_FIELDS = """
    fields:
      pid: tgid
      f: func
      a: a
      r: ret"""
NESTED = f"""\
name: nested
probes:
  - name: back
    attach:
      - uretprobe: [./prog:outer, ./prog:inner]
        args: [int a]
        ret: int{RET_FIELDS}
output:
  columns: [pid, f, a, r]
"""
SEPARATE = f"""\
name: separate
probes:
  - name: o
    attach:
      - uretprobe: ./prog:outer
        args: [int a]
        ret: int{RET_FIELDS}
  - name: i
    attach:
      - uretprobe: ./prog:inner
        args: [int a]
        ret: int{RET_FIELDS}
output:
  columns: [pid, f, a, r]
"""
VERSIONED = """\
name: versioned
probes:
  - name: p
    attach:
      - uprobe: "libc:getpid@@GLIBC_2.2.5"
    fields:
      pid: tgid
      f: func
output:
  columns: [pid, f]
"""


@pytest.fixture
def program(tmp_path: Path) -> Path:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is missing: scripts/setup.sh installs it")
    (tmp_path / "p.c").write_text(PROGRAM.replace("N;", f"{N};"))
    subprocess.run(["gcc", "-O0", "-o", str(tmp_path / "prog"), str(tmp_path / "p.c")], check=True)
    for name, text in (("nested", NESTED), ("separate", SEPARATE), ("versioned", VERSIONED)):
        (tmp_path / f"{name}.yaml").write_text(text)
    return tmp_path / "prog"


def test_nested_returns_and_a_versioned_symbol(engine, program: Path) -> None:
    oracle = Bpftrace(
        f'uretprobe:{program}:inner {{ printf("R %d inner %d\\n", pid, retval); }}\n'
        f'uretprobe:{program}:outer {{ printf("R %d outer %d\\n", pid, retval); }}\n'
        'uprobe:libc:getpid { printf("G %d\\n", pid); }\n'
    )
    runs = {n: engine(str(program.with_name(f"{n}.yaml")), "-o", "json") for n in
            ("nested", "separate", "versioned")}  # fmt: skip
    child = procs.spawn([str(program)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert child.stdin is not None
    child.stdin.write(b"go\n")
    child.stdin.close()
    assert child.wait(CHILD_TIMEOUT) == 0
    want = {"nested": N, "separate": 2 * N, "versioned": N}
    for name, e in runs.items():
        e.wait_rows(lambda rows, n=want[name]: sum(r["pid"] == child.pid for r in rows) >= n)
    results = {name: e.stop() for name, e in runs.items()}
    lines = [ln.split() for ln in oracle.stop() if ln[:2] in ("R ", "G ")]
    for r in results.values():
        assert r.code == 0, r.stderr
    rows = {n: [r for r in res.json_rows() if r["pid"] == child.pid] for n, res in results.items()}
    inner = [("inner", 10 * i + 1, 2 * (10 * i + 1)) for i in range(N)]
    both = [x for i in range(N) for x in (inner[i], ("outer", 10 * i, inner[i][2] + 1))]
    # one probe: outer's entry is overwritten by inner's, inner's return takes it: outer dropped
    assert [(r["f"], r["a"], r["r"]) for r in rows["nested"]] == inner
    assert [(r["f"], r["a"], r["r"]) for r in rows["separate"]] == both
    pid = str(child.pid)
    theirs = [(x[2], int(x[3])) for x in lines if x[0] == "R" and x[1] == pid]
    assert theirs == [(f, r) for f, _, r in both]
    assert [r["f"] for r in rows["versioned"]] == ["getpid@@GLIBC_2.2.5"] * N
    assert sum(x == ["G", pid] for x in lines) == N
