"""engine.runtime.symbols: kernel addresses by a kallsyms file, user addresses of a real child
(built here with gcc, PIE) through its mappings and ELF symbols, after it exited too; what does
not resolve is [unknown] and counted."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from engine.output.values import Symbol, Text
from engine.runtime.symbols import Symbolizer

KALLSYMS = """\
ffffffff81000000 T _stext
ffffffff81000100 t do_one
ffffffff81000200 T do_two
ffffffff81000300 d some_data
"""
CHILD = r"""
#include <stdio.h>
__attribute__((noinline)) int target_fn(int x) { return x * 3; }
int main(void)
{
    printf("%p\n", (void *)target_fn);
    fflush(stdout);
    getchar();
    return target_fn(1) == 3 ? 0 : 1;
}
"""


def test_kernel_addresses(tmp_path: Path) -> None:
    path = tmp_path / "kallsyms"
    path.write_text(KALLSYMS)
    s = Symbolizer(kallsyms=str(path))
    assert s.kernel(0xFFFFFFFF81000105) == Symbol("do_one", 5)
    assert s.kernel(0xFFFFFFFF81000200) == Symbol("do_two", 0)
    assert s.kernel(0x1000) == Text("[unknown]")
    assert s.kernel_unresolved == 1
    assert s.report() == "symbols: 1 kernel and 0 user frames unresolved (printed [unknown])"


def test_user_addresses_resolve_after_the_exit(tmp_path: Path) -> None:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is missing: scripts/setup.sh installs it")
    (tmp_path / "child.c").write_text(CHILD)
    prog = tmp_path / "child"
    subprocess.run(
        [gcc, "-O1", "-pie", "-fPIE", "-o", str(prog), str(tmp_path / "child.c")], check=True
    )
    with subprocess.Popen(
        [str(prog)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None and child.stdin is not None
        address = int(child.stdout.readline(), 16)
        s = Symbolizer()
        s.remember(child.pid)  # read while it lives
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(60) == 0
    assert s.user(child.pid, address) == Symbol("target_fn", 0)
    assert s.user(child.pid, address + 2) == Symbol("target_fn", 2)
    assert s.user(child.pid, 0x10) == Text("[unknown]")
    gone = child.pid + 1_000_000  # no such process: nothing to read
    assert s.user(gone, address) == Text("[unknown]")
    assert s.user_unresolved == 2 and s.gone == {gone}
    assert s.report().endswith("; 1 processes had exited before")


def test_a_jits_perf_map_names_code_in_no_file(tmp_path: Path) -> None:
    """Addresses in no mapped file (a JIT's) are looked up in /tmp/perf-PID.map."""
    pid = 4242_000  # no such process: no mappings, only the map file
    (tmp_path / f"perf-{pid}.map").write_text(
        "7f0000001000 40 LJIT:handler\n7f0000002000 10 x y\nbad\n"
    )
    s = Symbolizer(perf_dir=str(tmp_path))
    assert s.user(pid, 0x7F0000001008) == Symbol("LJIT:handler", 8)
    assert s.user(pid, 0x7F0000002000) == Symbol("x y", 0)
    assert s.user(pid, 0x7F0000001040) == Text("[unknown]")
