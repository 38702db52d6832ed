"""ELF binaries and shared libraries: their function symbols and USDT probes, read with pyelftools.

A binary is named by a path, or a library by the name `ldconfig -p` lists it under (`c`, `libc`
and `libc.so.6` all name /lib/x86_64-linux-gnu/libc.so.6 here): the linker cache is what the
dynamic loader itself consults, so a name resolves to the file a process would map. Function
symbols come from `.symtab` and `.dynsym` (a versioned `getaddrinfo@@GLIBC_2.2.5` is listed as
`getaddrinfo`; the two tables' copies of one function are one entry); USDT probes from the
`.note.stapsdt` notes that <sys/sdt.h> leaves. Reads are cached per (path, mtime).
"""

from __future__ import annotations

import os
import platform
import struct
import subprocess
from dataclasses import dataclass
from typing import Iterator

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import NoteSection, SymbolTableSection

from engine.errors import EngineError, UsageError, did_you_mean

LDCONFIG = ("/sbin/ldconfig", "/usr/sbin/ldconfig")
# NT_STAPSDT is 3; pyelftools names type 3 after the GNU note that shares the number
STAPSDT_TYPES = (3, "NT_STAPSDT", "NT_GNU_BUILD_ID")


class ElfFileError(UsageError):
    """A binary that cannot be read: not found, not a regular file, not ELF. Exit 2."""


class ElfSymbolError(EngineError):
    """A function or USDT probe the binary does not have (with a did-you-mean). Exit 1."""


@dataclass(frozen=True)
class Symbol:
    """One function: its address (st_value), size in bytes and binding (GLOBAL, WEAK, LOCAL)."""

    name: str
    address: int
    size: int
    binding: str


@dataclass(frozen=True)
class Usdt:
    """One USDT probe: `provider:name` at pc, its semaphore (0: none), its argument descriptors."""

    provider: str
    name: str
    pc: int
    semaphore: int
    args: str  # as the note has them: `-4@%eax 8@%rdx`

    @property
    def arg_list(self) -> list[str]:
        return self.args.split()


@dataclass(frozen=True)
class Binary:
    path: str
    functions: dict[str, Symbol]  # by name
    probes: tuple[Usdt, ...]

    def function(self, name: str) -> Symbol:
        hit = self.functions.get(name.split("@", 1)[0])
        if hit is None:
            hint = did_you_mean(name, self.functions)
            raise ElfSymbolError(f"no function '{name}' in {self.path}{hint}")
        return hit

    def usdt(self, provider: str, name: str) -> Usdt:
        for p in self.probes:
            if (p.provider, p.name) == (provider, name):
                return p
        pool = [f"{p.provider}:{p.name}" for p in self.probes]
        hint = did_you_mean(f"{provider}:{name}", pool) if pool else " (it has no USDT probes)"
        raise ElfSymbolError(f"no USDT probe '{provider}:{name}' in {self.path}{hint}")


_CACHE: dict[tuple[str, float], Binary] = {}


def load(target: str) -> Binary:
    """The binary at a path (anything with a `/`) or the library `ldconfig -p` names so."""
    path = target if "/" in target else resolve_library(target)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ElfFileError(f"no such file: {path}") from None
    except OSError as exc:
        raise ElfFileError(f"cannot read {path}: {exc.strerror}") from None
    if not os.path.isfile(path):
        raise ElfFileError(f"not a regular file: {path}")
    key = (os.path.realpath(path), st.st_mtime)
    if key not in _CACHE:
        _CACHE[key] = _read(path)
    return _CACHE[key]


def _read(path: str) -> Binary:
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"\x7fELF":
                raise ElfFileError(f"not an ELF file: {path}")
            f.seek(0)
            elf = ELFFile(f)
            return Binary(path, _functions(elf), tuple(_probes(elf)))
    except OSError as exc:
        raise ElfFileError(f"cannot read {path}: {exc.strerror}") from None
    except ELFError as exc:
        raise ElfFileError(f"malformed ELF file {path}: {exc}") from None


def _functions(elf: ELFFile) -> dict[str, Symbol]:
    found: dict[str, Symbol] = {}
    for table in (".symtab", ".dynsym"):  # .symtab first: it has the local functions too
        section = elf.get_section_by_name(table)
        if not isinstance(section, SymbolTableSection):
            continue
        for sym in section.iter_symbols():
            info = sym["st_info"]
            if info["type"] not in ("STT_FUNC", "STT_GNU_IFUNC") or not sym.name:
                continue
            if sym["st_shndx"] == "SHN_UNDEF":  # imported, defined elsewhere
                continue
            name = sym.name.split("@", 1)[0]
            binding = str(info["bind"]).removeprefix("STB_")
            if name not in found or (found[name].binding == "LOCAL" and binding != "LOCAL"):
                found[name] = Symbol(name, sym["st_value"], sym["st_size"], binding)
    return dict(sorted(found.items()))


def _probes(elf: ELFFile) -> Iterator[Usdt]:
    section = elf.get_section_by_name(".note.stapsdt")
    if not isinstance(section, NoteSection):
        return
    word = "<QQQ" if elf.elfclass == 64 else "<III"
    if not elf.little_endian:
        word = ">" + word[1:]
    head = struct.calcsize(word)
    for note in section.iter_notes():
        if note["n_name"] != "stapsdt" or note["n_type"] not in STAPSDT_TYPES:
            continue
        desc: bytes = note["n_descdata"]
        pc, _base, semaphore = struct.unpack_from(word, desc)
        provider, name, args = [*desc[head:].split(b"\0"), b"", b""][:3]
        yield Usdt(provider.decode(), name.decode(), pc, semaphore, args.decode())


def library_cache() -> dict[str, str]:
    """`ldconfig -p`: each library's soname -> path, this machine's architecture preferred."""
    tool = next((t for t in LDCONFIG if os.access(t, os.X_OK)), "ldconfig")
    try:
        text = subprocess.run([tool, "-p"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ElfFileError(f"cannot list libraries with `ldconfig -p`: {exc}") from None
    arch = "x86-64" if platform.machine() == "x86_64" else platform.machine()
    libs: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        soname, _, rest = line.strip().partition(" (")
        flags, _, path = rest.partition(") => ")
        if not path:
            continue
        native = arch in flags or "," not in flags
        if soname not in libs or (native and arch not in libs[soname][0]):
            libs[soname] = flags + "\0" + path
    return {name: v.split("\0", 1)[1] for name, v in libs.items()}


def resolve_library(name: str) -> str:
    """`c`, `libc`, `libc.so` or `libc.so.6` -> the path ldconfig has for it."""
    libs = library_cache()
    stem = name if name.startswith("lib") else f"lib{name}"
    if name in libs:
        return libs[name]
    matches = sorted(s for s in libs if s == stem or s.startswith(stem + ".so"))
    if matches:
        return libs[min(matches, key=len)]
    short = sorted({s.split(".so", 1)[0] for s in libs})
    raise ElfFileError(f"no library '{name}' in `ldconfig -p`{did_you_mean(stem, short)}")


PF_X = 1  # an executable segment (program header p_flags)


def file_offset(path: str, address: int) -> int | None:
    """The file offset of virtual address `address` (st_value, as `nm` prints it), from the
    loadable executable segments: the uprobe PMU and uprobe_events take file offsets, and in
    a shared library or PIE they differ from the address wherever text is not at offset 0.
    None when no executable segment holds it."""
    try:
        with open(path, "rb") as f:
            for seg in ELFFile(f).iter_segments():
                h = seg.header
                if h["p_type"] != "PT_LOAD" or not h["p_flags"] & PF_X:
                    continue
                if h["p_vaddr"] <= address < h["p_vaddr"] + h["p_filesz"]:
                    return int(address - h["p_vaddr"] + h["p_offset"])
    except OSError as exc:
        raise ElfFileError(f"cannot read {path}: {exc.strerror}") from None
    except ELFError as exc:
        raise ElfFileError(f"malformed ELF file {path}: {exc}") from None
    return None
