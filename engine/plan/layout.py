"""Layouts and kernel BTF: what the planner, `bind`, `state`, `explain` and `validate` share.

`layout()` lays out a C struct the way clang does for BPF (the event, aggregation keys, state
keys and values); `_slot` rounds a stack object as clang does. `load_btf` reads kernel BTF once
per process. They lived in the planner, which made every user import the planner.
"""

from __future__ import annotations

from engine.errors import EngineError, UsageError
from engine.kernel.btf import VMLINUX, Btf, BtfError
from engine.plan import model as M

SLOT = 8  # clang gives each stack object a multiple of 8 bytes


def _slot(size: int) -> int:
    return (size + SLOT - 1) // SLOT * SLOT


INET_SIZE = 18  # struct inet_addr { u16 family; u8 addr[16]; }
STATE_VALUE_ALIGN = 8  # a state value is copied out of its map: 8 bytes at a time (`layout`)


def layout(struct: str, members: list[tuple[str, str, int]], at_least: int = 1) -> M.Layout:
    """C struct layout with natural alignment, the way clang lays it out for BPF.

    `at_least` raises the struct's alignment (declared with `aligned`, and the size rounded to
    it) where the members' own is less. A state value copied out of its map is one: clang
    copies a byte-aligned struct a byte at a time, through spilled registers, so a 128-byte
    value of task names passed the 512-byte stack where an 8-aligned one costs its size.
    """
    offset, align_max, slots = 0, 1, []
    for name, ctype, count in members:
        if ctype == "struct inet_addr":
            size, align = INET_SIZE, 2
        elif ctype == "char":
            size, align = count, 1
        else:
            unit = int(ctype[1:]) // 8
            size, align = unit * max(count, 1), unit
        offset = (offset + align - 1) // align * align
        slots.append(M.Slot(name, ctype, count, offset, size))
        offset += size
        align_max = max(align_max, align)
    declared = at_least if at_least > align_max else 0
    align_max = max(align_max, at_least)
    total = (offset + align_max - 1) // align_max * align_max
    return M.Layout(struct, tuple(slots), max(total, 1), declared)


# --- kernel BTF -------------------------------------------------------------------------------

_BTF_CACHE: dict[str, Btf] = {}
EMPTY_BTF = "--btf: an empty path; name a BTF file, or leave --btf out for the running kernel's"


def load_btf(path: str | None) -> Btf:
    """Kernel BTF, once per process; a missing or bad file is a one-line EngineError.

    `path` None is the running kernel's; an empty one is a mistake (`--btf ''`, `--btf
    "$UNSET"`), not a quiet way to say the running kernel."""
    if path is not None and not path.strip():
        raise UsageError(EMPTY_BTF)
    key = path or VMLINUX
    if key not in _BTF_CACHE:
        try:
            _BTF_CACHE[key] = Btf.load(key)
        except BtfError as exc:
            if path:  # the user's --btf: a flag mistake
                raise UsageError(f"--btf: {exc}") from None
            raise EngineError(
                f"{exc}; pass --btf FILE (a vmlinux BTF of the target kernel)"
            ) from None
    return _BTF_CACHE[key]
