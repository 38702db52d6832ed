"""USDT probes: `BINARY:PROVIDER:NAME`, a probe point <sys/sdt.h> left in a program's notes.

A probe's arguments are typed by the descriptors in its `.note.stapsdt` note (`-4@%eax`: a
signed 4-byte value in eax), so a spec names them arg0..argN-1 without DWARF; declared `args`
may name them and type them (a `char *` is a user string), but only with a type of the size the
note gives: bcc's generated reader writes exactly that many bytes. bcc reads the arguments
(`bpf_usdt_readarg`) and attaches the uprobes at the notes' addresses itself, from the USDT
contexts handed to `BPF(usdt_contexts=...)`: the runner asks each kind for its contexts.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from engine.attach import binary, uprobe
from engine.attach.base import (
    Alternative,
    ArgAccess,
    AttachKind,
    BindContext,
    Capability,
    Explainer,
    Family,
    Gap,
    Mechanism,
    S,
    Target,
    TargetError,
)
from engine.attach.cdecl import DeclError, parse
from engine.errors import EngineError
from engine.kernel import elf
from engine.kernel.btf import Btf
from engine.memory import AddressSpace
from engine.plan.values import VT, VKind, int_vt

PROBE_TARGET = "libstdc++.so.6:libstdcxx:throw"  # `engine doctor`'s: in gcc's C++ runtime

# x86-64 register names as operands name them, by size (an operand without a `N@` size prefix
# is as wide as its register, unsigned, as bcc reads it)
_REGS64 = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "rip")
_REGS32 = ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp")
_REGS16 = ("ax", "bx", "cx", "dx", "si", "di", "bp", "sp")
_REGS8 = ("al", "bl", "cl", "dl", "sil", "dil", "bpl", "spl", "ah", "bh", "ch", "dh")
REGISTER_SIZES: dict[str, int] = {
    **{r: 8 for r in _REGS64},
    **{r: 4 for r in _REGS32},
    **{r: 2 for r in _REGS16},
    **{r: 1 for r in _REGS8},
    **{f"r{n}": 8 for n in range(8, 16)},
    **{f"r{n}d": 4 for n in range(8, 16)},
    **{f"r{n}w": 2 for n in range(8, 16)},
    **{f"r{n}b": 1 for n in range(8, 16)},
}
_SIZED = re.compile(r"(-?)(\d+)@(\S+)")
SIZES = (1, 2, 4, 8)


class DescriptorError(ValueError):
    """An argument descriptor this engine cannot type (the message says which)."""


@dataclass(frozen=True)
class NoteArg:
    """One argument of a USDT note: its size in bytes, signedness and operand (`%eax`)."""

    size: int
    signed: bool
    operand: str
    text: str  # the descriptor as the note has it, for messages

    @property
    def ctype(self) -> str:
        """The engine's integer type of the value (`-4@...` is s32)."""
        return f"{'s' if self.signed else 'u'}{self.size * 8}"

    @property
    def vt(self) -> VT:
        return int_vt(self.ctype)


def parse_descriptor(text: str) -> NoteArg:
    """`-4@%eax` -> NoteArg(4, signed, "%eax"); an unsized operand is its register's width
    (unsigned), or 8 bytes for a memory or constant operand."""
    sized = _SIZED.fullmatch(text)
    if sized is not None:
        size = int(sized[2])
        if size not in SIZES:
            raise DescriptorError(f"USDT argument '{text}': size {size} is not 1, 2, 4 or 8")
        return NoteArg(size, sized[1] == "-", sized[3], text)
    if not text or any(c.isspace() for c in text) or "@" in text:
        raise DescriptorError(f"USDT argument '{text}' is not SIZE@OPERAND")
    size = REGISTER_SIZES.get(text[1:], 8) if text.startswith("%") else 8
    return NoteArg(size, False, text, text)


def parse_descriptors(args: str) -> tuple[NoteArg, ...]:
    """Every argument of a note's argument string (`-4@%eax 8@%rdx`)."""
    return tuple(parse_descriptor(a) for a in args.split())


@dataclass(frozen=True)
class UsdtTarget:
    """`BINARY:PROVIDER:NAME`: the binary as the spec writes it, the probe's two names."""

    binary: str
    provider: str
    name: str

    @property
    def probe(self) -> str:
        return f"{self.provider}:{self.name}"


_PROBE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_usdt_target(text: str) -> UsdtTarget:
    """`./demo:demo:tick` -> UsdtTarget("./demo", "demo", "tick"); TargetError if not so."""
    parts = binary.split_binary(text, 3)
    if not parts or not all(_PROBE_NAME.fullmatch(p) for p in parts[1:]):
        raise TargetError(
            f"'{text}' is not a USDT probe: use BINARY:PROVIDER:NAME, e.g. ./demo:demo:tick "
            "(BINARY a path, ./ or ../ from the spec's directory, or a library name)"
        )
    try:
        binary.check_binary(parts[0])
    except binary.BinaryError as exc:
        raise TargetError(str(exc)) from None
    return UsdtTarget(*parts)


@dataclass(frozen=True)
class UsdtKind(AttachKind):
    """Binds arg0..argN-1 of one USDT probe, typed by its note; bcc attaches and reads them."""

    def parse_target(self, text: str) -> UsdtTarget:
        return parse_usdt_target(text)

    def bind(
        self, ctx: BindContext, alt: Alternative, scope: Callable[..., S]
    ) -> tuple[str, tuple[str, ...], S] | None:
        at = alt.target_ats[0]
        if len(alt.targets) != 1:
            ctx.problem("a usdt alternative names one probe (BINARY:PROVIDER:NAME)", alt.kind_at)
            return None
        try:
            target = self.parse_target(alt.targets[0])
            path = binary.resolve_path(target.binary, ctx.spec_dir)
            probe = elf.load(path).usdt(target.provider, target.name)
            notes = parse_descriptors(probe.args)
        except (TargetError, EngineError, DescriptorError) as exc:
            ctx.problem(str(exc), at)
            return None
        declared = self._declared(ctx, alt, probe, notes)
        if declared is None or not binary.pid_ok(ctx, alt):  # `pid: $opt`: an int option
            return None
        if probe.semaphore and alt.pid is None:
            ctx.problem(
                f"{target.probe} is an is-enabled probe (it has a semaphore, at "
                f"{probe.semaphore:#x}): bcc raises it in one process only; add `pid:` (a "
                "number or an integer option)",
                at,
            )
            return None
        bound = scope(ctx.btf, self.name, {}, None, None, nargs=len(notes), declared=declared)
        return self.name, (f"{path}:{probe.provider}:{probe.name}",), bound

    def _declared(
        self, ctx: BindContext, alt: Alternative, probe: elf.Usdt, notes: Sequence[NoteArg]
    ) -> dict[str, tuple[int, VT]] | None:
        """arg0..argN-1 typed by the note, and the names `args:` declares, each a C type of
        the size the note gives (bcc's reader writes exactly that many bytes); None (said)
        if a declaration is not C, not there or not that size."""
        out = {f"arg{i}": (i, a.vt) for i, a in enumerate(notes)}
        ok = True
        for i, text in enumerate(alt.args):
            try:
                decl = parse(text)
            except DeclError as exc:
                ctx.problem(str(exc), alt.args_ats[i])
                ok = False
                continue
            size = 8 if decl.vt.kind is VKind.PTR else decl.vt.size
            if i >= len(notes):
                ctx.problem(
                    f"'{text}': {probe.provider}:{probe.name} has {len(notes)} arguments "
                    f"({probe.args or 'none'})",
                    alt.args_ats[i],
                )
                ok = False
            elif size != notes[i].size or decl.vt.kind not in (VKind.INT, VKind.PTR):
                note = notes[i]
                ctx.problem(
                    f"'{text}': argument {i} of {probe.provider}:{probe.name} is {note.size} "
                    f"bytes (`{note.text}`); declare a {note.size}-byte type, e.g. {note.ctype}",
                    alt.args_ats[i],
                )
                ok = False
            elif decl.name != "_":
                out[decl.name] = (i, decl.vt)
        return out if ok else None

    def location(self, target: str) -> tuple[str, int]:
        """(binary path, file offset) of the probe's first note: where a uprobe goes."""
        t = self.parse_target(target)
        found = elf.load(binary.resolve_path(t.binary, "/"))
        pc = found.usdt(t.provider, t.name).pc
        offset = elf.file_offset(found.path, pc)
        if offset is None:
            raise EngineError(f"{target}: its pc {pc:#x} is in no executable segment")
        return found.path, offset

    def fn_part(self, target: str) -> str:
        """The BPF function's name part: PROVIDER_NAME (the path stays out of C names)."""
        return "_".join(target.rsplit(":", 2)[1:])

    def bcc_contexts(self, fn_name: str, target: str, pid: int = -1) -> list[Any]:
        """One bcc USDT context with this probe enabled for `fn_name`: bcc generates the
        argument readers (`_bpf_readarg_FN_N`) into the C and attaches the uprobes itself
        when `BPF(usdt_contexts=...)` loads. A probe with a semaphore (an is-enabled probe)
        is enabled only for one process: bcc increments the semaphore in its memory."""
        bcc = importlib.import_module("bcc")
        uprobe.fix_bcc_binding(bcc.libbcc.lib)  # bcc attaches the uprobes inside BPF(...)
        t = self.parse_target(target)
        try:
            context = bcc.USDT(path=t.binary, pid=pid) if pid > 0 else bcc.USDT(path=t.binary)
            context.enable_probe(probe=t.probe, fn_name=fn_name)
        except Exception as exc:  # bcc.USDTException: its text says what to check
            probe = elf.load(t.binary).usdt(t.provider, t.name)
            why = str(exc).strip().splitlines()[0]
            if probe.semaphore and pid <= 0:
                why = (
                    f"{t.probe} has a semaphore (an is-enabled probe): bcc enables it only "
                    "in one process; give its pid (the alternative's `pid:` or its option)"
                )
            raise EngineError(f"usdt {target}: {why}") from None
        return [context]

    def attach(self, bpf: Any, fn_name: str, target: str, pid: int = -1) -> None:
        """Nothing left to do: bcc attached the probe while loading (see `bcc_contexts`)."""

    def gap(self, btf: Btf, targets: Sequence[str]) -> Gap:
        """A USDT probe is a uprobe at the note's address: the kernel needs uprobes."""
        witness = uprobe.UPROBES_WITNESS
        if btf.function(witness) is None:
            return f"no uprobes in this kernel ({witness} is not in its BTF)", []
        return None, ["the binary is checked on this machine; another may have another one"]


USDT = UsdtKind(
    "usdt", Target.USDT, ArgAccess.USDT,
    Capability(Mechanism.UPROBE, (PROBE_TARGET,), uprobe.REMEDY),
    bcc_attach="attach_uprobe", prog_type="KPROBE", address_space=AddressSpace.USER,
    user_keys=("args", "pid"),
    unavailable="uprobes unavailable: usdt alternatives cannot attach",
    exclusive="bcc enables a USDT probe for one BPF function, so a spec can attach one "
              "probe to it (one probe can emit, count and store at once)",
)  # fmt: skip


@dataclass(frozen=True)
class UsdtProbes(Family):
    """Explain: binaries go through engine explain's ELF path (`./demo:demo:tick`), which
    asks `usage` for the spec lines; the family names no target of its own."""

    def explain_target(self, text: str) -> str | None:
        return None

    def explain(self, explainer: Explainer, text: str) -> list[str] | None:
        return None

    def usage(self, target: str, names: Sequence[str], ret: str | None, nparams: int) -> list[str]:
        binds = ", ".join(names) or "no arguments"
        return [
            f"  {USDT.name}: {target}   binds {binds} (typed by the note)",
            "  args: [...] names and types them (same sizes; `const char *` for strings)",
        ]


FAMILY = UsdtProbes(USDT.name, (USDT,), "BINARY:PROVIDER:NAME")
