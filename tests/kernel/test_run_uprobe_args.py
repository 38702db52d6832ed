"""uprobe/uretprobe on a program the test builds: declared arguments of several C types read
from the registers, a string through a user pointer, the return value, targets given as an
address and as NAME+OFFSET, and the spec's `./prog` found beside the spec file (not in the
working directory).

The program (gcc -O0) waits for "go", then calls `work` with CALLS; bpftrace's `uprobe:` and
`uretprobe:` print the same arguments and return values on the same run. Exact: every call,
in order, each value equal to bpftrace's and to what the program passed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import procs
import pytest
from conftest import CHILD_TIMEOUT
from oracle import Bpftrace

from engine.kernel import elf

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

# (a: int, b: long, s: char *, c: unsigned char) and work returns a + c
CALLS = [(-7, 1 << 40, "alpha", 200), (123456, -5, "", 0), (0, 0, "with space", 255)]
PROGRAM = """
#include <stdio.h>
#include <string.h>
__attribute__((noinline)) int work(int a, long b, const char *s, unsigned char c) {
    __asm__ volatile("" ::: "memory");
    return a + c + (int)strlen(s) * 0;
}
int main(void) {
    char line[16];
    if (!fgets(line, sizeof line, stdin)) return 1;
    CALLS
    return 0;
}
"""
DECL = "[int a, long b, const char *s, unsigned char c]"
RET_SPEC = f"""\
name: uret
probes:
  - name: leave
    attach:
      - uretprobe: ./prog:work
        args: {DECL}
        ret: int
    fields:
      pid: tgid
      a: a
      b: b
      s: {{value: s, decode: str}}
      c: c
      r: ret
output:
  columns: [pid, a, b, s, c, r]
"""
ADDR_SPEC = f"""\
name: uaddr
probes:
  - name: enter
    attach:
      - uprobe: ./prog:ADDRESS
        args: {DECL}
    fields:
      pid: tgid
      a: a
      b: b
      s: {{value: s, decode: str}}
      c: c
  - name: inside
    attach:
      - uprobe: ./prog:work+OFFSET
        args: {DECL}
    fields:
      pid: tgid
      a: a
      b: b
      s: {{value: s, decode: str}}
      c: c
output:
  columns: [pid, a, b, s, c]
"""


@pytest.fixture
def program(tmp_path: Path) -> Path:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is missing: scripts/setup.sh installs it")
    # each string in a stack array: memory the process has touched (a read from BPF cannot
    # fault a page in, so a string literal in a .rodata page never used before reads as "")
    calls = " ".join(f'{{ char s[] = "{s}"; work({a}, {b}L, s, {c}); }}' for a, b, s, c in CALLS)
    (tmp_path / "p.c").write_text(PROGRAM.replace("CALLS", calls))
    subprocess.run(["gcc", "-O0", "-o", str(tmp_path / "prog"), str(tmp_path / "p.c")], check=True)
    address = elf.load(str(tmp_path / "prog")).function("work").address
    offset = second_instruction(tmp_path / "prog", address)
    (tmp_path / "uret.yaml").write_text(RET_SPEC)
    spec = ADDR_SPEC.replace("ADDRESS", hex(address)).replace("OFFSET", hex(offset))
    (tmp_path / "uaddr.yaml").write_text(spec)
    return tmp_path / "prog"


def second_instruction(prog: Path, address: int) -> int:
    """Bytes from `work` to its second instruction (objdump): inside the function, where the
    -O0 prologue (push %rbp) has not touched the argument registers yet."""
    out = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", f"--start-address={address:#x}",
         f"--stop-address={address + 16:#x}", str(prog)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    starts = [int(ln.split(":")[0], 16) for ln in out.splitlines() if ln[:1] == " " and ":" in ln]
    assert len(starts) >= 2 and starts[0] == address, out
    return starts[1] - address


def test_arguments_and_return_values_agree_with_bpftrace(engine, program: Path) -> None:
    script = (
        f"uprobe:{program}:work "
        '{ printf("E %d %d %ld %d %s\\n", pid, arg0, arg1, arg3, str(arg2)); }\n'
        f'uretprobe:{program}:work {{ printf("R %d %d\\n", pid, retval); }}\n'
    )
    oracle = Bpftrace(script)
    by_name = engine(str(program.with_name("uret.yaml")), "-o", "json")
    by_address = engine(str(program.with_name("uaddr.yaml")), "-o", "json")
    child = procs.spawn([str(program)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert child.stdin is not None
    child.stdin.write(b"go\n")
    child.stdin.close()
    assert child.wait(CHILD_TIMEOUT) == 0
    for e, want in ((by_name, len(CALLS)), (by_address, 2 * len(CALLS))):
        e.wait_rows(lambda rows, n=want: sum(r["pid"] == child.pid for r in rows) >= n)
    returns, entries = by_name.stop(), by_address.stop()
    lines = [ln.split(" ", 5) for ln in oracle.stop() if ln[:2] in ("E ", "R ")]
    assert returns.code == 0 and entries.code == 0, returns.stderr + entries.stderr
    mine = [r for r in returns.json_rows() if r["pid"] == child.pid]
    assert [(r["a"], r["b"], r["s"], r["c"], r["r"]) for r in mine] == [
        (a, b, s, c, a + c) for a, b, s, c in CALLS
    ]
    at = [(r["a"], r["b"], r["s"], r["c"]) for r in entries.json_rows() if r["pid"] == child.pid]
    assert at == [call for call in CALLS for _ in ("address", "name+offset")]
    pid = str(child.pid)
    entry_lines = [x for x in lines if x[0] == "E" and x[1] == pid]
    theirs = [(int(a), int(b), s, int(c)) for _, _, a, b, c, s in entry_lines]
    assert theirs == CALLS
    assert [int(x[2]) for x in lines if x[0] == "R" and x[1] == pid] == [r["r"] for r in mine]
