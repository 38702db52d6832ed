"""Code addresses to names, in user space: kernel frames from /proc/kallsyms, user frames
through the process's mappings (/proc/PID/maps) and its files' ELF symbol tables (.symtab,
else .dynsym; a stripped file's debug file by build id under /usr/lib/debug/.build-id).

Stacks print long after the sample (an aggregation is read at the end), so a process's
mappings are read once, the first time one of its frames is asked for (or `remember(pid)`
earlier), and kept after it exits; a file's symbols are read once per file. What does not
resolve prints `[unknown]` and is counted, never silent. No DWARF unwinding and no inlined
frames: user stacks need frame pointers (docs/spec.md).
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from engine.errors import EngineError
from engine.kernel import elf
from engine.output.values import Symbol, Text
from engine.runtime.decoders import text_symbols

UNKNOWN = "[unknown]"
DEBUG_ROOT = "/usr/lib/debug/.build-id"


@dataclass(frozen=True)
class Mapping:
    """One executable file mapping of a process: [start, end) maps `path` from `offset`."""

    start: int
    end: int
    offset: int
    path: str
    file: tuple[int, int] = (0, 0)  # (st_dev, st_ino): one file seen from any namespace


class SymbolTable:
    """One ELF file's functions by address, and its loadable segments (offset -> address)."""

    def __init__(self, path: str, debug_root: str = DEBUG_ROOT) -> None:
        self.segments: list[tuple[int, int, int]] = []  # (p_offset, p_vaddr, p_filesz)
        funcs: list[tuple[int, int, str]] = []
        build_id = ""
        try:
            with open(path, "rb") as f:
                e = ELFFile(f)
                for seg in e.iter_segments():
                    h = seg.header
                    if h["p_type"] == "PT_LOAD":
                        self.segments.append((h["p_offset"], h["p_vaddr"], h["p_filesz"]))
                build_id = _build_id(e)
            funcs = [(s.address, s.size, n) for n, s in elf.load(path).functions.items()]
            if not funcs and build_id:  # stripped: the debug file by build id
                debug = f"{debug_root}/{build_id[:2]}/{build_id[2:]}.debug"
                if os.path.exists(debug):
                    funcs = [(s.address, s.size, n) for n, s in elf.load(debug).functions.items()]
        except (OSError, ELFError, EngineError):
            pass
        funcs.sort()
        self.addrs = [a for a, _, _ in funcs]
        self.funcs = funcs

    def address(self, file_offset: int) -> int | None:
        """The virtual address (as the symbols give them) of a file offset."""
        for off, vaddr, size in self.segments:
            if off <= file_offset < off + size:
                return file_offset - off + vaddr
        return None

    def lookup(self, vaddr: int) -> Symbol | None:
        i = bisect.bisect_right(self.addrs, vaddr) - 1
        if i < 0:
            return None
        start, size, name = self.funcs[i]
        if size and vaddr >= start + size:
            return None
        return Symbol(name, vaddr - start)


class PerfMap:
    """A JIT's symbols as it writes them for perf: one `START SIZE name` line per function."""

    def __init__(self, path: str) -> None:
        entries: list[tuple[int, int, str]] = []
        try:
            with open(path, errors="replace") as f:
                for line in f:
                    parts = line.rstrip("\n").split(" ", 2)
                    if len(parts) == 3:
                        try:
                            entries.append((int(parts[0], 16), int(parts[1], 16), parts[2]))
                        except ValueError:
                            continue
        except OSError:
            pass
        entries.sort()
        self.starts = [e[0] for e in entries]
        self.entries = entries

    def lookup(self, addr: int) -> Symbol | None:
        i = bisect.bisect_right(self.starts, addr) - 1
        if i < 0 or addr >= self.entries[i][0] + self.entries[i][1]:
            return None
        start, _, name = self.entries[i]
        return Symbol(name, addr - start)


def _build_id(e: ELFFile) -> str:
    for section in e.iter_sections():
        if section.header["sh_type"] == "SHT_NOTE":
            for note in section.iter_notes():
                if note["n_type"] == "NT_GNU_BUILD_ID":
                    return str(note["n_desc"])
    return ""


def read_maps(pid: int) -> list[Mapping] | None:
    """The executable file mappings of a live process; None when it is gone."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    out = []
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) < 6 or "x" not in parts[1] or not parts[5].startswith("/"):
            continue
        start, end = (int(x, 16) for x in parts[0].split("-"))
        path = parts[5].removesuffix(" (deleted)")
        # the file as the process sees it (its mount namespace), while it lives
        root = f"/proc/{pid}/root{path}"
        try:
            st = os.stat(root)
        except OSError:
            continue
        file = (st.st_dev, st.st_ino)
        out.append(Mapping(start, end, int(parts[2], 16), _outlasting(path, file) or root, file))
    return out


def _outlasting(path: str, file: tuple[int, int]) -> str:
    """`path` when it names the same file here (our mount namespace): it stays readable after
    the process exits, so its symbols can wait until a frame asks. "" when not (a container's
    file: read through /proc/PID/root while the process lives)."""
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return path if (st.st_dev, st.st_ino) == file else ""


class Symbolizer:
    """Resolves kernel and user addresses, counting what it could not."""

    def __init__(
        self, kallsyms: str = "/proc/kallsyms", debug_root: str = DEBUG_ROOT, perf_dir: str = "/tmp"
    ) -> None:
        self._kallsyms = kallsyms
        self._perf_dir = perf_dir
        self._perf_maps: dict[int, PerfMap] = {}
        self._debug_root = debug_root
        self._kaddrs: list[int] | None = None
        self._knames: list[str] = []
        self._maps: dict[int, list[Mapping]] = {}
        self._tables: dict[tuple[int, int], SymbolTable] = {}
        self.kernel_unresolved = 0
        self.user_unresolved = 0
        self.gone: set[int] = set()  # pids whose mappings could not be read (exited before)

    def _load_kernel(self) -> list[int]:
        if self._kaddrs is None:
            try:
                pairs = text_symbols(self._kallsyms)
            except OSError:  # every kernel frame prints [unknown], counted
                pairs = []
            self._kaddrs = [a for a, _ in pairs]
            self._knames = [n for _, n in pairs]
        return self._kaddrs

    def kernel(self, addr: int) -> Symbol | Text:
        """The kernel symbol holding `addr`, with its offset; [unknown] when none does."""
        addrs = self._load_kernel()
        i = bisect.bisect_right(addrs, addr) - 1
        if i < 0 or addrs[i] == 0:
            self.kernel_unresolved += 1
            return Text(UNKNOWN)
        return Symbol(self._knames[i], addr - addrs[i])

    def remember(self, pid: int) -> None:
        """Read `pid`'s mappings now (while it lives), for frames asked for later."""
        if pid not in self._maps and pid not in self.gone:
            maps = read_maps(pid)
            if maps is None:
                self.gone.add(pid)
                return
            self._maps[pid] = maps
            for m in maps:  # a container's file: read now, its /proc/PID/root path goes
                if m.path.startswith("/proc/"):
                    self.table(m)

    def table(self, m: Mapping) -> SymbolTable:
        """The symbols of a mapping's file, read once per file (by device and inode)."""
        if m.file not in self._tables:
            self._tables[m.file] = SymbolTable(m.path, self._debug_root)
        return self._tables[m.file]

    def user(self, pid: int, addr: int) -> Symbol | Text:
        """The function of process `pid` holding `addr`; [unknown] when none does."""
        self.remember(pid)
        for m in self._maps.get(pid, ()):
            if m.start <= addr < m.end:
                table = self.table(m)
                vaddr = table.address(addr - m.start + m.offset)
                found = table.lookup(vaddr) if vaddr is not None else None
                if found is not None:
                    return found
                break
        else:  # in no file: a JIT's code, named in its perf map if it writes one
            jitted = self.perf_map(pid).lookup(addr)
            if jitted is not None:
                return jitted
        self.user_unresolved += 1
        return Text(UNKNOWN)

    def perf_map(self, pid: int) -> PerfMap:
        """/tmp/perf-PID.map (`START SIZE name` in hex, as perf reads it), read once."""
        if pid not in self._perf_maps:
            self._perf_maps[pid] = PerfMap(f"{self._perf_dir}/perf-{pid}.map")
        return self._perf_maps[pid]

    def report(self) -> str:
        """One line on what did not resolve ("" when everything did)."""
        if not (self.kernel_unresolved or self.user_unresolved):
            return ""
        gone = f"; {len(self.gone)} processes had exited before" if self.gone else ""
        return (
            f"symbols: {self.kernel_unresolved} kernel and {self.user_unresolved} user frames"
            f" unresolved (printed [unknown]){gone}"
        )
