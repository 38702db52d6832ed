"""`engine explain` for user-space binaries: their functions and USDT probes (kernel.elf).

Targets are spelled as a spec's `uprobe:`/`usdt:` spells them, and parsed by the same code
(engine.attach.binary): `BINARY:SYMBOL` (`libc:getaddrinfo`, `c:getaddrinfo`,
`/bin/bash:readline`, `./a.out:work+0x4`, `libc:0x4005a0`, or a pattern `libc:get*`, which
lists the functions a spec would attach to) and `BINARY:PROVIDER:NAME` (a USDT probe). A
relative path is relative to the working directory (explain has no spec file). The binary
alone lists its functions and probes: a path (`/usr/bin/bash`, `./a.out`), a library file
name (`libc.so.6`: a kernel name never has a `.`), or `lib:NAME` (`lib:c`): a bare `c` or
`libc` would be a kernel name. `lib:` may prefix any of the forms (`lib:c:getaddrinfo`).
"""

from __future__ import annotations

import os
import re
from typing import Sequence

from engine.attach import binary as bt
from engine.attach import uprobe, usdt
from engine.attach.base import MAX_MATCHES, is_pattern
from engine.errors import EngineError, UsageError
from engine.kernel import elf

LIBRARY_PREFIX = "lib:"
_PATH_STARTS = ("/", "./", "../")
_LIBRARY_FILE = re.compile(r"lib[A-Za-z0-9_+-]*\.so(\.[0-9]+)*")  # libc.so.6, libssl.so
_FORMS = "expected BINARY, BINARY:FUNCTION or BINARY:PROVIDER:NAME"


class BinaryTargetError(EngineError):
    """A target the binary does not have as written (a bad offset, too many matches). Exit 1."""


def is_binary_target(target: str, kernel_prefixes: Sequence[str] = ()) -> bool:
    """Whether `target` names a user-space binary: a path, `lib:`, a library file name, or
    anything with a `:` that is not a kernel family's prefix (`raw:`): kernel names have none."""
    if target.startswith((LIBRARY_PREFIX, *_PATH_STARTS)) or _LIBRARY_FILE.fullmatch(target):
        return True
    return ":" in target and " " not in target and not target.startswith(tuple(kernel_prefixes))


def explain_binary(target: str) -> list[str]:
    """What a binary target names: the whole binary, one function (or a pattern's functions,
    an offset, an address) or one USDT probe."""
    text = target[len(LIBRARY_PREFIX) :] if target.startswith(LIBRARY_PREFIX) else target
    pieces = text.split(":")
    if not all(pieces) or len(pieces) > 3:
        raise UsageError(f"cannot explain '{target}'; {_FORMS}")
    try:
        bt.check_binary(pieces[0])
        if len(pieces) == 1:
            return _binary(elf.load(bt.resolve_path(pieces[0], os.getcwd())))
        if len(pieces) == 3:
            b = elf.load(bt.resolve_path(pieces[0], os.getcwd()))
            found = b.usdt(pieces[1], pieces[2])
            return _probe(b, found) + _probe_usage(pieces[0], found)
        return _place(bt.parse(text))
    except bt.BinaryError as exc:
        raise UsageError(f"cannot explain '{target}': {exc}") from None


def _place(t: bt.BinaryTarget) -> list[str]:
    """One function, NAME+OFFSET, an address, or the functions a pattern matches."""
    cwd = os.getcwd()
    if is_pattern(t.symbol):
        try:
            found = bt.locate_all(t, cwd)
        except bt.BinaryError as exc:  # more than MAX_MATCHES
            raise BinaryTargetError(str(exc)) from None
        return _matches(t, found)
    try:
        where = bt.locate(t, cwd)
    except bt.BinaryError as exc:  # an offset past the end, an address outside code
        raise BinaryTargetError(str(exc)) from None
    b = elf.load(where.path)
    if t.address is not None:
        head = [f"address {t.address:#x} in {b.path}"]
        return [*head, "", "in a spec:", *uprobe.FAMILY.usage(f"{t.binary}:{t.place}", (), None, 0)]
    symbol = t.symbol.split("@", 1)[0]
    place = f"{symbol}+{t.offset:#x}" if t.offset else symbol
    return _function(b, b.function(t.symbol), f"{t.binary}:{place}", t.offset)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: int) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for r in [header, *rows]:
        cells = [c.rjust(w) if i < right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        out.append("  " + "  ".join(cells).rstrip())
    return out


def _function_rows(syms: Sequence[elf.Symbol]) -> list[tuple[str, ...]]:
    return [(f"{s.address:#x}", str(s.size), s.binding, s.name) for s in syms]


def _binary(b: elf.Binary) -> list[str]:
    fns, probes = b.functions.values(), b.probes
    lines = [f"{b.path}: {len(fns)} functions, {len(probes)} USDT probes", ""]
    rows = _function_rows(list(fns))
    lines += [f"functions ({len(fns)}):", *(_table(("ADDRESS", "SIZE", "BIND", "NAME"), rows, 2))]
    if probes:
        usdt = sorted((f"{p.provider}:{p.name}", f"{p.pc:#x}", p.args) for p in probes)
        lines += ["", f"USDT probes ({len(probes)}):"]
        lines += _table(("PROBE", "PC", "ARGUMENTS"), usdt, 0)
    else:
        lines += ["", "USDT probes: none (no .note.stapsdt section)"]
    return lines


def _matches(t: bt.BinaryTarget, found: Sequence[bt.Located]) -> list[str]:
    """A pattern: the functions a spec's uprobe would attach to (sorted, one per address)."""
    b = elf.load(found[0].path)
    syms = [b.functions[f.target.symbol] for f in found]
    lines = [
        f"{len(syms)} functions match '{t.symbol}' in {b.path} "
        f"(one per address, as a spec attaches them; at most {MAX_MATCHES}):",
        *_table(("ADDRESS", "SIZE", "BIND", "NAME"), _function_rows(syms), 2),
    ]
    return [*lines, "", "in a spec:", *uprobe.FAMILY.usage(f"{t.binary}:{t.symbol}", (), None, 0)]


def _function(b: elf.Binary, s: elf.Symbol, spec_target: str, offset: int = 0) -> list[str]:
    at = [f"  offset   {offset} bytes (address {s.address + offset:#x})"] if offset else []
    return [
        f"function {s.name} in {b.path}",
        f"  address  {s.address:#x}",
        f"  size     {s.size} bytes",
        f"  binding  {s.binding}",
        *at,
        "",
        "in a spec:",
        *uprobe.FAMILY.usage(spec_target, (), None, 0),
    ]


def _probe(b: elf.Binary, p: elf.Usdt) -> list[str]:
    semaphore = f"{p.semaphore:#x}" if p.semaphore else "none"
    lines = [
        f"USDT probe {p.provider}:{p.name} in {b.path}",
        f"  pc {p.pc:#x}, semaphore {semaphore}",
    ]
    rows = []
    for i, desc in enumerate(p.arg_list):
        size, _, where = desc.partition("@")
        signed = "signed" if size.startswith("-") else "unsigned"
        rows.append((str(i), desc, f"{size.lstrip('-')} bytes {signed}", where))
    if not rows:
        return [*lines, "  (no arguments)"]
    return [*lines, "", *_table(("#", "DESCRIPTOR", "VALUE", "LOCATION"), rows, 1)]


def _probe_usage(binary: str, found: elf.Usdt) -> list[str]:
    """How a spec attaches to the probe: the usdt family's lines, its arguments typed."""
    try:
        names = [f"arg{i} ({a.ctype})" for i, a in enumerate(usdt.parse_descriptors(found.args))]
    except usdt.DescriptorError as exc:
        return ["", f"in a spec: not readable ({exc})"]
    target = f"{binary}:{found.provider}:{found.name}"
    return ["", "in a spec:", *usdt.FAMILY.usage(target, names, None, len(names))]
