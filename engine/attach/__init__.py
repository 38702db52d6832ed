"""Attach families: the registry of every way a probe can attach (kprobe, tracepoint, ...).

Each family is one module (kfunc: kprobe, kretprobe, fentry, fexit; tracepoint; raw_tracepoint)
implementing engine.attach.base; this module only lists them. Every stage iterates `FAMILIES`
or looks a kind up in `KINDS` instead of testing kind names, so a new family (uprobes) is a
new module, one line here, its template partial and its JSON Schema key.
"""

from __future__ import annotations

from typing import Mapping

from engine.attach import kfunc, perf, raw_tracepoint, tracepoint, uprobe, usdt
from engine.attach.base import (
    ArgAccess,
    AttachKind,
    Capability,
    Family,
    Mechanism,
    Target,
    TargetError,
)
from engine.attach.kfunc import legacy_name

# Doctor's order: the required kind first, the optional ones after.
FAMILIES: tuple[Family, ...] = (
    tracepoint.FAMILY, raw_tracepoint.FAMILY, kfunc.FAMILY, uprobe.FAMILY, usdt.FAMILY,
    perf.FAMILY,
)  # fmt: skip
KINDS: dict[str, AttachKind] = {k.name: k for family in FAMILIES for k in family.kinds}
FAMILY_OF: dict[str, Family] = {k.name: family for family in FAMILIES for k in family.kinds}


def kind_of(alternative: Mapping[str, object]) -> AttachKind:
    """The kind an attach alternative of a (schema-valid) spec names."""
    return next(k for name, k in KINDS.items() if name in alternative)


def arg_c(access: str, index: int, ctype: str = "u64") -> str:
    """The C text of `model.Arg(index, access)`: the step partial's argument read."""
    return ArgAccess(access).c_text(index, ctype)


__all__ = [
    "FAMILIES", "FAMILY_OF", "KINDS", "ArgAccess", "AttachKind", "Capability", "Family",
    "Mechanism", "Target", "TargetError", "arg_c", "kind_of", "legacy_name",
]  # fmt: skip
