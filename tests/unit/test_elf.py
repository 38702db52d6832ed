"""engine.kernel.elf and `engine explain BINARY`, on a C program each test session builds.

The program has two non-inlined functions with distinctive names and two USDT probes
(<sys/sdt.h>, Debian's systemtap-sdt-dev); `nm` and `readelf -n` on the same file are the
oracle for addresses and notes, `ldconfig -p` for library names. Without gcc or sdt.h the
tests skip, except under CI=true, where they fail: CI must not pass by skipping.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from engine import cli
from engine.errors import UsageError
from engine.kernel import elf

IN_CI = os.environ.get("CI", "").strip().lower() == "true"
SDT_HEADERS = ("/usr/include/sys/sdt.h", "/usr/include/x86_64-linux-gnu/sys/sdt.h")

PROGRAM = r"""
#include <sys/sdt.h>
#include <stdio.h>

__attribute__((noinline)) long zq_alpha_compute(long x) { return x * 3 + 1; }
__attribute__((noinline)) int zq_beta_report(int a, const char *s) {
    DTRACE_PROBE2(zqdemo, report, a, s);
    return a + (int)s[0];
}

int main(int argc, char **argv) {
    long v = zq_alpha_compute(argc);
    int n = argc;
    DTRACE_PROBE2(zqdemo, start, n, v);
    printf("%d\n", zq_beta_report((int)v, argv[0]));
    return 0;
}
"""


def _need(tool_ok: bool, message: str) -> None:
    if not tool_ok:
        if IN_CI:
            pytest.fail(f"CI=true but {message}", pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _need(shutil.which("gcc") is not None, "needs gcc (scripts/setup.sh installs it)")
    has_sdt = any(os.path.exists(h) for h in SDT_HEADERS)
    _need(has_sdt, "needs sys/sdt.h (Debian's systemtap-sdt-dev; scripts/setup.sh installs it)")
    d = tmp_path_factory.mktemp("usdt")
    (d / "demo.c").write_text(PROGRAM)
    cmd = ["gcc", "-O1", "-fno-inline", "-g0", "-o", str(d / "demo"), str(d / "demo.c")]
    subprocess.run(cmd, check=True, capture_output=True)
    return d / "demo"


def nm_functions(path: Path) -> dict[str, int]:
    """`nm`: defined text symbols (T/t/W/i) -> address."""
    out = subprocess.run(["nm", "--defined-only", str(path)], capture_output=True, text=True)
    found = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TtWi":
            found[parts[2].split("@", 1)[0]] = int(parts[0], 16)
    return found


def readelf_probes(path: Path) -> list[tuple[str, str, int, int, str]]:
    text = subprocess.run(["readelf", "-n", str(path)], capture_output=True, text=True).stdout
    pattern = (
        r"Provider: (\S+)\s+Name: (\S+)\s+Location: (0x[0-9a-f]+), Base: 0x[0-9a-f]+, "
        r"Semaphore: (0x[0-9a-f]+)\s+Arguments: ([^\n]*)"
    )
    return [
        (p, n, int(loc, 16), int(sem, 16), args.strip())
        for p, n, loc, sem, args in re.findall(pattern, text)
    ]


def test_functions_agree_with_nm(program: Path) -> None:
    b = elf.load(str(program))
    assert {"zq_alpha_compute", "zq_beta_report", "main"} <= set(b.functions)
    assert sorted(n for n in b.functions if n.startswith("zq_")) == [
        "zq_alpha_compute",
        "zq_beta_report",
    ]
    oracle = nm_functions(program)
    assert oracle["zq_alpha_compute"] and oracle["zq_beta_report"]
    for name, sym in b.functions.items():
        assert sym.address == oracle[name], name
    assert b.functions["zq_alpha_compute"].binding == "GLOBAL"
    assert b.functions["zq_alpha_compute"].size > 0
    assert list(b.functions) == sorted(b.functions)


def test_usdt_probes_agree_with_readelf(program: Path) -> None:
    b = elf.load(str(program))
    ours = sorted((p.provider, p.name, p.pc, p.semaphore, p.args) for p in b.probes)
    assert ours == sorted(readelf_probes(program))
    assert [(p.provider, p.name) for p in sorted(b.probes, key=lambda p: p.name)] == [
        ("zqdemo", "report"),
        ("zqdemo", "start"),
    ]
    start = b.usdt("zqdemo", "start")
    report = b.usdt("zqdemo", "report")
    # int n, long v; int a, const char *s: sizes and signedness are the C types'
    assert [d.split("@")[0] for d in start.arg_list] == ["-4", "-8"]
    assert [d.split("@")[0] for d in report.arg_list] == ["-4", "8"]


def test_versioned_names_are_normalized_and_merged() -> None:
    libc = elf.load("c")
    assert "getaddrinfo" in libc.functions
    assert not [n for n in libc.functions if "@" in n]
    assert libc.function("getaddrinfo@@GLIBC_2.2.5") == libc.functions["getaddrinfo"]


def ldconfig_path(soname: str) -> str:
    text = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    hits = re.findall(rf"^\s*{re.escape(soname)} \(([^)]*)\) => (\S+)$", text, re.M)
    native = [p for flags, p in hits if "x86-64" in flags] or [p for _, p in hits]
    return native[0]


@pytest.mark.parametrize("name", ["c", "libc", "libc.so.6"])
def test_library_names_resolve_as_ldconfig_does(name: str) -> None:
    assert elf.resolve_library(name) == ldconfig_path("libc.so.6")


def test_errors_are_one_line(tmp_path: Path, program: Path) -> None:
    with pytest.raises(UsageError, match=r"^no such file: /no/such/bin$"):
        elf.load("/no/such/bin")
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(UsageError, match=rf"^not an ELF file: {text}$"):
        elf.load(str(text))
    with pytest.raises(UsageError, match=rf"^not a regular file: {tmp_path}$"):
        elf.load(str(tmp_path))
    with pytest.raises(UsageError, match=r"^no library 'cx' .*did you mean 'libc'\?$"):
        elf.load("cx")
    b = elf.load(str(program))
    with pytest.raises(elf.ElfSymbolError, match=r"did you mean 'zq_alpha_compute'\?$"):
        b.function("zq_alpha_compte")
    with pytest.raises(elf.ElfSymbolError, match=r"did you mean 'zqdemo:start'\?$"):
        b.usdt("zqdemo", "strat")


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    code = cli.main(["explain", *args])
    got = capsys.readouterr()
    return code, got.out.splitlines(), got.err


def test_explain_lists_a_binary(program: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = run([str(program)], capsys)
    b = elf.load(str(program))
    assert code == 0 and err == ""
    assert lines[0] == f"{program}: {len(b.functions)} functions, 2 USDT probes"
    first = lines.index(f"functions ({len(b.functions)}):") + 2
    rows = [ln.split() for ln in lines[first : first + len(b.functions)]]
    assert [r[-1] for r in rows] == sorted(b.functions)
    assert [int(r[0], 16) for r in rows] == [b.functions[r[-1]].address for r in rows]
    assert any(ln.split()[0] == "zqdemo:start" for ln in lines if ln.strip())


def test_explain_one_function_and_one_probe(
    program: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, _ = run([f"{program}:zq_beta_report"], capsys)
    sym = elf.load(str(program)).functions["zq_beta_report"]
    assert code == 0
    assert lines[0] == f"function zq_beta_report in {program}"
    assert lines[1].split() == ["address", hex(sym.address)]
    assert lines[3].split() == ["binding", "GLOBAL"]
    code, lines, _ = run([f"{program}:zqdemo:report"], capsys)
    probe = elf.load(str(program)).usdt("zqdemo", "report")
    assert code == 0 and lines[0] == f"USDT probe zqdemo:report in {program}"
    table = lines[lines.index("") + 2 :]
    descs = [ln.split()[1] for ln in table[: table.index("")]]
    assert descs == probe.arg_list
    assert table[table.index("") + 1 :] == [  # the usdt family's lines, arguments typed
        "in a spec:",
        f"  usdt: {program}:zqdemo:report   binds arg0 (s32), arg1 (u64) (typed by the note)",
        "  args: [...] names and types them (same sizes; `const char *` for strings)",
    ]


def test_explain_library_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = run(["lib:c:getaddrinfo"], capsys)
    assert code == 0 and lines[0] == f"function getaddrinfo in {ldconfig_path('libc.so.6')}"
    spec = lines[lines.index("in a spec:") + 1 :]
    assert spec[:2] == ["  uprobe: c:getaddrinfo", "  uretprobe: c:getaddrinfo"]


@pytest.mark.parametrize("target", ["libc:getaddrinfo", "c:getaddrinfo", "libc.so.6:getaddrinfo"])
def test_explain_takes_the_spec_spelling(target: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`engine explain` parses a target as a spec's uprobe does (engine.attach.binary)."""
    code, lines, err = run([target], capsys)
    assert (code, err) == (0, "")
    assert lines[0] == f"function getaddrinfo in {ldconfig_path('libc.so.6')}"
    assert lines[lines.index("in a spec:") + 1] == f"  uprobe: {target}"


def test_explain_relative_path_usdt_offset_and_library_file(
    program: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(program.parent)
    b = elf.load(str(program))
    code, lines, _ = run(["./demo:zqdemo:report"], capsys)
    assert code == 0 and lines[0] == f"USDT probe zqdemo:report in {program}"
    assert "  usdt: ./demo:zqdemo:report" in lines[lines.index("in a spec:") + 1]
    code, lines, _ = run(["./demo:zq_beta_report+2"], capsys)
    at = b.functions["zq_beta_report"].address + 2
    assert code == 0 and lines[4] == f"  offset   2 bytes (address {at:#x})"
    assert "  uprobe: ./demo:zq_beta_report+0x2" in lines
    code, lines, _ = run(["libc.so.6"], capsys)
    assert code == 0 and lines[0].startswith(f"{ldconfig_path('libc.so.6')}: ")


def test_explain_pattern_lists_what_a_spec_attaches(
    program: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, _ = run([f"{program}:zq_*"], capsys)
    want = sorted(n for n in nm_functions(program) if n.startswith("zq_"))
    assert want == ["zq_alpha_compute", "zq_beta_report"]
    assert code == 0 and lines[0].startswith(f"2 functions match 'zq_*' in {program} ")
    assert [ln.split()[-1] for ln in lines[2:4]] == want
    assert [int(ln.split()[0], 16) for ln in lines[2:4]] == [nm_functions(program)[n] for n in want]
    assert lines[lines.index("in a spec:") + 1] == f"  uprobe: {program}:zq_*"


@pytest.mark.parametrize(
    ("target", "code", "message"),
    [
        ("lib:c:getadrinfo", 1, "no function 'getadrinfo' in .*did you mean 'getaddrinfo'\\?"),
        ("/no/such/bin", 2, "no such file: /no/such/bin"),
        ("/etc/hostname", 2, "not an ELF file: /etc/hostname"),
        ("lib:", 2, "cannot explain 'lib:'"),
        ("c:", 2, "cannot explain 'c:'; expected BINARY, BINARY:FUNCTION or BINARY:PROVIDER:NAME$"),
        ("libc:*", 1, "'\\*' matches [0-9]+ functions; at most 1000 can be attached"),
        ("libc:nosuch_zz*", 1, "no function matches 'nosuch_zz\\*' in "),
    ],
)
def test_explain_errors_one_line(
    target: str, code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    got, lines, err = run([target], capsys)
    assert got == code and lines == []
    assert err.count("\n") == 1 and re.match(f"engine: error: {message}", err), err


def test_cached_per_path_and_mtime(tmp_path: Path, program: Path) -> None:
    copy = tmp_path / "demo"
    shutil.copy(program, copy)
    first = elf.load(str(copy))
    assert elf.load(str(copy)) is first
    os.utime(copy, (1, 1))
    assert elf.load(str(copy)) is not first
