"""`BINARY:SYMBOL` targets of user-space probes: which file, which place in it.

Shared by the uprobe and usdt families. Parsing (`parse`) is syntax only, so the schema-valid
spec model never touches the file system; resolution (`resolve_path`, `locate`) happens when
the planner binds the alternative, against the files of this machine:

- BINARY: an absolute path; `./x` or `../x`, relative to the SPEC FILE's directory (a test or a
  project keeps its spec beside the program it traces, and the spec means the same file from
  any working directory); or a library name as `ldconfig -p` lists it (`c`, `libc`,
  `libc.so.6`), which is the file the dynamic loader maps (engine.kernel.elf.resolve_library).
- SYMBOL: a function in `.symtab`/`.dynsym`, `NAME+OFFSET` (decimal or 0x: bytes into it), or
  an address `0x4005a0` (a virtual address as `nm` prints it); or a pattern of function names
  (`work_*`, `read?`, `[a-c]*`), which `locate_all` expands against the symbol tables.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from engine.attach.base import PATTERN, Alternative, BindContext, expand, is_pattern, pattern_hint
from engine.errors import did_you_mean
from engine.kernel import elf

SYMBOL = re.compile(r"[A-Za-z_.$][A-Za-z0-9_.$@]{0,254}")
OFFSET = re.compile(r"(0[xX][0-9a-fA-F]+|[0-9]+)")
ADDRESS = re.compile(r"0[xX][0-9a-fA-F]+")
INT_OPTION = re.compile(r"[us](8|16|32|64)")  # the option types a `pid: $name` may have


class BinaryError(ValueError):
    """A target the spec cannot mean: the message says what is wrong and what would be right."""


@dataclass(frozen=True)
class BinaryTarget:
    """What the spec wrote after the kind's key, parsed (not yet looked up)."""

    binary: str  # as written: a path or a library name
    symbol: str = ""  # "" when an address is given
    offset: int = 0  # bytes after the symbol's start (NAME+OFFSET)
    address: int | None = None  # a virtual address instead of a symbol

    @property
    def is_library(self) -> bool:
        """Named as `ldconfig -p` lists it rather than by a path."""
        return "/" not in self.binary

    @property
    def place(self) -> str:
        """The part after the binary, as written canonically (`getaddrinfo+0x4`, `0x4005a0`)."""
        if self.address is not None:
            return hex(self.address)
        return f"{self.symbol}+{self.offset:#x}" if self.offset else self.symbol


@dataclass(frozen=True)
class Located:
    """A target found in its binary: the absolute path bcc attaches to, and where in it."""

    target: BinaryTarget
    path: str
    address: int  # the virtual address of the probed instruction (symbol + offset)
    symbol_size: int  # 0 when given as an address (or the symbol has no size)

    @property
    def text(self) -> str:
        """`PATH:PLACE`: what the plan carries to the runner (the resolved path)."""
        return f"{self.path}:{self.target.place}"

    @property
    def identity(self) -> tuple[str, int]:
        """The probed instruction: (the real file, its address). Two names of one function
        (an alias, a versioned name) are one place, and one file name in two directories is
        two places."""
        return os.path.realpath(self.path), self.address


def split_binary(text: str, parts: int) -> list[str]:
    """`BINARY:A[:B]` into its `parts` pieces (the binary may not contain a `:`)."""
    pieces = text.split(":")
    if len(pieces) != parts or not all(pieces):
        return []
    return pieces


def parse(text: str) -> BinaryTarget:
    """`BINARY:SYMBOL`, `BINARY:SYMBOL+OFFSET` or `BINARY:0xADDRESS` (syntax only)."""
    pieces = split_binary(text, 2)
    if not pieces:
        raise BinaryError(
            f"'{text}' is not BINARY:SYMBOL; write a path or a library name, a colon and a "
            "function, e.g. libc:getaddrinfo or /bin/bash:readline"
        )
    binary, place = pieces
    check_binary(binary)
    if ADDRESS.fullmatch(place):
        return BinaryTarget(binary, address=int(place, 16))
    name, plus, offset = place.partition("+")
    if is_pattern(name) and PATTERN.fullmatch(name) and not plus:
        return BinaryTarget(binary, name)
    if not SYMBOL.fullmatch(name) or (plus and not OFFSET.fullmatch(offset)):
        raise BinaryError(
            f"'{place}' is not a symbol: write a function name, NAME+OFFSET (e.g. "
            "readline+0x10) or an address (0x4005a0)"
        )
    return BinaryTarget(binary, name, int(offset, 0) if plus else 0)


def check_binary(binary: str) -> None:
    """A path must be absolute or start ./ or ../ (a bare relative path is ambiguous)."""
    if "/" in binary and not binary.startswith(("/", "./", "../")):
        raise BinaryError(
            f"'{binary}': a relative path starts with ./ or ../ (relative to the spec "
            f"file's directory), e.g. ./{binary}; a bare name is a library (libc)"
        )


def resolve_path(binary: str, spec_dir: str) -> str:
    """The absolute path of BINARY: as given, relative to `spec_dir`, or from `ldconfig -p`.
    elf.ElfFileError when a library name is unknown."""
    if binary.startswith("/"):
        return os.path.normpath(binary)
    if binary.startswith(("./", "../")):
        return os.path.normpath(os.path.join(os.path.abspath(spec_dir), binary))
    return elf.resolve_library(binary)


def locate(target: BinaryTarget, spec_dir: str) -> Located:
    """The target in its file: the file exists and is ELF, the symbol is in its symbol tables
    (did-you-mean from them), an offset stays inside the function, an address is in code.
    Raises elf.ElfFileError / elf.ElfSymbolError / BinaryError."""
    path = resolve_path(target.binary, spec_dir)
    binary = elf.load(path)
    if target.address is not None:
        if elf.file_offset(path, target.address) is None:
            raise BinaryError(f"{target.place} is not in an executable segment of {path}")
        return Located(target, path, target.address, 0)
    sym = binary.function(target.symbol)
    if sym.size and target.offset >= sym.size:
        raise BinaryError(
            f"{target.place}: offset {target.offset} is past the end of {sym.name} "
            f"({sym.size} bytes) in {path}"
        )
    return Located(target, path, sym.address + target.offset, sym.size)


def locate_all(target: BinaryTarget, spec_dir: str) -> list[Located]:
    """`locate`, with a symbol pattern expanded against the binary's function symbols: sorted,
    one per address (an alias such as `__nanosleep` of `nanosleep` is one function: bcc's
    sym_re attaches once per address too), the least underscored name kept. A pattern that
    matches nothing is an ElfSymbolError with a did-you-mean; over 1000 matches a BinaryError."""
    if not is_pattern(target.symbol):
        return [locate(target, spec_dir)]
    path = resolve_path(target.binary, spec_dir)
    binary = elf.load(path)
    try:
        names = expand(target.symbol, binary.functions)
    except ValueError as exc:  # TargetError: too many
        raise BinaryError(str(exc)) from None
    if not names:
        hint = did_you_mean(pattern_hint(target.symbol), binary.functions)
        raise elf.ElfSymbolError(f"no function matches '{target.symbol}' in {path}{hint}")
    by_address: dict[int, str] = {}
    for name in sorted(names, key=lambda n: (len(n) - len(n.lstrip("_")), n)):
        by_address.setdefault(binary.functions[name].address, name)
    kept = sorted(by_address.values())
    return [locate(BinaryTarget(target.binary, name), spec_dir) for name in kept]


def pid_ok(ctx: BindContext, alt: Alternative) -> bool:
    """`pid: $name` names an integer option (a number needs no check); problems go to `ctx`.
    Shared by every user-space kind, since each passes the pid to bcc the same way."""
    if not isinstance(alt.pid, str):
        return True
    ctype = ctx.option_type(alt.pid, alt.pid_at)
    if ctype is None:
        return False
    if not INT_OPTION.fullmatch(ctype):
        ctx.problem(f"`pid: ${alt.pid}` needs an integer option; it is {ctype}", alt.pid_at)
        return False
    return True
