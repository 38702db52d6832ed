"""engine.attach.binary: BINARY:SYMBOL targets, parsed (syntax) and located (files here).

The located tests use a program gcc builds in tmp_path (with a static function and a stripped
copy) and libc as ldconfig lists it, so they check what a spec would really attach to."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from engine.attach import binary
from engine.attach.binary import BinaryError, BinaryTarget
from engine.kernel import elf

PROGRAM = """
static int helper(int x) { return x * 3; }
int work(int n) { int t = 0; for (int i = 0; i < n; i++) t += helper(i); return t; }
int main(int argc, char **argv) { return work(argc) == 12345; }
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is missing: scripts/setup.sh installs it")
    d = tmp_path_factory.mktemp("prog")
    (d / "p.c").write_text(PROGRAM)
    subprocess.run(["gcc", "-O0", "-o", str(d / "prog"), str(d / "p.c")], check=True)
    shutil.copy(d / "prog", d / "stripped")
    subprocess.run(["strip", str(d / "stripped")], check=True)
    (d / "text").write_text("not ELF\n")
    return d


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("libc:getaddrinfo", BinaryTarget("libc", "getaddrinfo")),
        ("/bin/bash:readline", BinaryTarget("/bin/bash", "readline")),
        ("./prog:work+0x10", BinaryTarget("./prog", "work", 16)),
        ("../x/prog:work+8", BinaryTarget("../x/prog", "work", 8)),
        ("./prog:0x4005a0", BinaryTarget("./prog", address=0x4005A0)),
        ("libc.so.6:getaddrinfo@@GLIBC_2.2.5",
         BinaryTarget("libc.so.6", "getaddrinfo@@GLIBC_2.2.5")),
    ],
)  # fmt: skip
def test_parse(text: str, target: BinaryTarget) -> None:
    assert binary.parse(text) == target


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("getaddrinfo", "'getaddrinfo' is not BINARY:SYMBOL"),
        ("libc:", "is not BINARY:SYMBOL"),
        ("a:b:c", "is not BINARY:SYMBOL"),
        ("bin/prog:main", "'bin/prog': a relative path starts with ./ or ../ (relative to the "
         "spec file's directory), e.g. ./bin/prog; a bare name is a library (libc)"),
        ("libc:get-addr", "'get-addr' is not a symbol"),
        ("libc:main+x", "'main+x' is not a symbol"),
    ],
)  # fmt: skip
def test_parse_refusals(text: str, message: str) -> None:
    with pytest.raises(BinaryError) as exc:
        binary.parse(text)
    assert message in str(exc.value)


def test_paths_are_relative_to_the_spec_directory(program: Path) -> None:
    assert binary.resolve_path("./prog", str(program)) == str(program / "prog")
    assert binary.resolve_path(f"../{program.name}/prog", str(program)) == str(program / "prog")
    assert binary.resolve_path("/bin/../bin/bash", "/x") == "/bin/bash"
    assert binary.resolve_path("libc", "/x") == elf.resolve_library("libc.so.6")


def test_locate_a_symbol_an_offset_and_an_address(program: Path) -> None:
    work = elf.load(str(program / "prog")).function("work")
    found = binary.locate(binary.parse("./prog:work"), str(program))
    assert (found.path, found.address, found.symbol_size) == (
        str(program / "prog"),
        work.address,
        work.size,
    )
    assert found.text == f"{program / 'prog'}:work"
    plus = binary.locate(binary.parse("./prog:work+4"), str(program))
    assert plus.address == work.address + 4 and plus.text.endswith(":work+0x4")
    at = binary.locate(binary.parse(f"./prog:{work.address:#x}"), str(program))
    assert at.address == work.address and at.text.endswith(f":{work.address:#x}")
    assert binary.locate(binary.parse("./prog:helper"), str(program)).symbol_size > 0  # static


def test_locate_refusals(program: Path) -> None:
    d = str(program)
    with pytest.raises(elf.ElfFileError, match=f"no such file: {program}/gone"):
        binary.locate(binary.parse("./gone:main"), d)
    with pytest.raises(elf.ElfFileError, match=f"not an ELF file: {program}/text"):
        binary.locate(binary.parse("./text:main"), d)
    with pytest.raises(elf.ElfSymbolError, match=r"no function 'wrok' in .*; did you mean 'work'"):
        binary.locate(binary.parse("./prog:wrok"), d)
    with pytest.raises(elf.ElfSymbolError, match="no function 'helper'"):  # only .dynsym left
        binary.locate(binary.parse("./stripped:helper"), d)
    with pytest.raises(BinaryError, match="offset 100000 is past the end of work"):
        binary.locate(binary.parse("./prog:work+100000"), d)
    with pytest.raises(BinaryError, match="0x1 is not in an executable segment"):
        binary.locate(binary.parse("./prog:0x1"), d)
    with pytest.raises(elf.ElfFileError, match="no library 'nosuchthing' in `ldconfig -p`"):
        binary.locate(binary.parse("nosuchthing:main"), d)


def test_file_offsets_of_libc_functions() -> None:
    libc = elf.load("libc")
    sym = libc.function("getpid")
    offset = elf.file_offset(libc.path, sym.address)
    assert offset is not None and offset <= sym.address
    with open(libc.path, "rb") as f:  # the bytes at the offset are the function's first ones
        f.seek(offset)
        assert f.read(16) != b"\0" * 16
    assert elf.file_offset(libc.path, 0) is None  # the ELF header is not code
