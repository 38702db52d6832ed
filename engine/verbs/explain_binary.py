"""`engine explain` for user-space binaries: their functions and USDT probes (kernel.elf).

Targets: a path (`/usr/bin/bash`, `./a.out`: anything starting with `/`, `./` or `../`) or a
library as `ldconfig -p` names it (`lib:c`, `lib:libc.so.6`), optionally followed by
`:FUNCTION` (its address, size and binding) or `:PROVIDER:NAME` (a USDT probe's arguments).
"""

from __future__ import annotations

from typing import Sequence

from engine.attach import uprobe
from engine.errors import UsageError
from engine.kernel import elf

LIBRARY_PREFIX = "lib:"
_PATH_STARTS = ("/", "./", "../")


def is_binary_target(target: str) -> bool:
    return target.startswith(LIBRARY_PREFIX) or target.startswith(_PATH_STARTS)


def explain_binary(target: str) -> list[str]:
    """What a binary target names: the whole binary, one function or one USDT probe."""
    if target.startswith(LIBRARY_PREFIX):
        name, *rest = target[len(LIBRARY_PREFIX) :].split(":")
        if not name:
            raise UsageError(f"cannot explain '{target}'; expected lib:NAME[:FUNCTION]")
        binary = elf.load(name)
    else:
        name, *rest = target.split(":")
        binary = elf.load(name)
    if not rest:
        return _binary(binary)
    if len(rest) == 1:
        spec_target = f"{name}:{rest[0].split('@', 1)[0]}"  # as a spec's uprobe names it
        return _function(binary, binary.function(rest[0]), spec_target)
    if len(rest) == 2:
        return _probe(binary, binary.usdt(rest[0], rest[1]))
    raise UsageError(f"cannot explain '{target}'; expected BINARY[:FUNCTION|:PROVIDER:NAME]")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: int) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for r in [header, *rows]:
        cells = [c.rjust(w) if i < right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        out.append("  " + "  ".join(cells).rstrip())
    return out


def _binary(b: elf.Binary) -> list[str]:
    fns, probes = b.functions.values(), b.probes
    lines = [f"{b.path}: {len(fns)} functions, {len(probes)} USDT probes", ""]
    rows = [(f"{s.address:#x}", str(s.size), s.binding, s.name) for s in fns]
    lines += [f"functions ({len(fns)}):", *(_table(("ADDRESS", "SIZE", "BIND", "NAME"), rows, 2))]
    if probes:
        usdt = sorted((f"{p.provider}:{p.name}", f"{p.pc:#x}", p.args) for p in probes)
        lines += ["", f"USDT probes ({len(probes)}):"]
        lines += _table(("PROBE", "PC", "ARGUMENTS"), usdt, 0)
    else:
        lines += ["", "USDT probes: none (no .note.stapsdt section)"]
    return lines


def _function(b: elf.Binary, s: elf.Symbol, spec_target: str) -> list[str]:
    return [
        f"function {s.name} in {b.path}",
        f"  address  {s.address:#x}",
        f"  size     {s.size} bytes",
        f"  binding  {s.binding}",
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
