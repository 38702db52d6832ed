"""User-space functions: uprobe, uretprobe on `BINARY:SYMBOL`.

The target is a function in an ELF file (engine.attach.binary finds it offline); there is no
BTF for it, so its arguments are the C declarations the spec writes (`args:`, engine.attach.
cdecl) read from the registers of the x86-64 calling convention, and a uretprobe's `ret` is
the declared return type (default `long`). Pointers point into the traced process: reads
through them use the user-memory helpers (engine.memory). A uretprobe's arguments are saved
by a generated entry uprobe, by thread id, exactly like a kretprobe's.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from engine.attach import binary
from engine.attach.base import (
    MAX_MATCHES,
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
    is_pattern,
)
from engine.attach.cdecl import DeclError, parse
from engine.kernel import elf
from engine.kernel.btf import Btf
from engine.memory import AddressSpace
from engine.plan.values import VT, VKind

# A kernel function that exists only when the kernel has uprobes (CONFIG_UPROBES).
UPROBES_WITNESS = "uprobe_register"
PROBE_TARGET = "libc:getpid"  # what `engine doctor` attaches to: in every libc
REMEDY = "a kernel built with CONFIG_UPROBES (and the uprobe PMU or tracefs uprobe_events)"
DEFAULT_RET = "long"


@dataclass(frozen=True)
class UserFunctionTarget:
    """A function in a binary, found: what the plan carries (`text`, the resolved path)."""

    located: binary.Located

    @property
    def text(self) -> str:
        return self.located.text


@dataclass(frozen=True)
class UprobeKind(AttachKind):
    """A kind that attaches to a function of an ELF binary or shared library."""

    def parse_target(self, text: str) -> binary.BinaryTarget:
        try:
            target = binary.parse(text)
        except binary.BinaryError as exc:
            raise TargetError(str(exc)) from None
        if self.returns and (target.offset or target.address is not None):
            raise TargetError(
                f"'{text}': a {self.name} fires when the function returns, so it names the "
                "function itself (no +OFFSET or address)"
            )
        return target

    def bind(
        self, ctx: BindContext, alt: Alternative, scope: Callable[..., S]
    ) -> tuple[str, tuple[str, ...], S] | None:
        located = self._locate(ctx, alt)
        declared = self._declared(ctx, alt)
        ret = self._ret(ctx, alt)
        if located is None or declared is None or ret is False:
            return None
        if not binary.pid_ok(ctx, alt):
            return None
        texts = tuple(loc.text for loc in located)
        nargs = len(alt.args)
        bound = scope(ctx.btf, self.name, {}, ret, None, nargs=nargs, declared=declared)
        return self.name, texts, bound

    def _locate(self, ctx: BindContext, alt: Alternative) -> list[binary.Located] | None:
        """Each target found in its binary (problems said at the target otherwise); each
        probed instruction once, over the whole list (a function two names give, an alias
        or a versioned name, would count every call twice: an error when named, dropped
        quietly when a pattern matches it again, as kernel function patterns)."""
        found: dict[tuple[str, int], binary.Located] = {}
        plain: set[tuple[str, int]] = set()  # named as they are (a pattern's matches are not)
        ok = True
        for i, text in enumerate(alt.targets):
            at = alt.target_ats[i]
            try:
                self.check_repeat(alt.targets, i)
                target = self.parse_target(text)
                for located in binary.locate_all(target, ctx.spec_dir):
                    self._add(found, plain, located, is_pattern(target.symbol))
                continue
            except TargetError as exc:
                ctx.problem(exc.message, at)
            except (binary.BinaryError, elf.ElfFileError, elf.ElfSymbolError) as exc:
                ctx.problem(str(exc), at)
            ok = False
        if len(found) > MAX_MATCHES:
            ctx.problem(
                f"these targets name {len(found)} functions; at most {MAX_MATCHES} can be attached",
                alt.kind_at,
            )
            return None
        return list(found.values()) if ok else None

    @staticmethod
    def _add(
        found: dict[tuple[str, int], binary.Located],
        plain: set[tuple[str, int]],
        located: binary.Located,
        pattern: bool,
    ) -> None:
        """Keep `located` unless its instruction is found already: a named target repeating
        a named one is an error (TargetError); anything else repeated is attached once."""
        key = located.identity
        earlier = found.get(key)
        if earlier is None:
            found[key] = located
            if not pattern:
                plain.add(key)
            return
        if not pattern and key in plain:
            a, b = located.target, earlier.target
            now, then = a.place, b.place
            if now == then:  # the binary named twice (c, libc): say which
                now, then = f"{a.binary}:{now}", f"{b.binary}:{then}"
            raise TargetError(
                f"'{now}' is '{then}' (same address "
                f"{located.address:#x}) in {os.path.basename(located.path)}: it would count "
                "each call twice"
            )

    def _declared(self, ctx: BindContext, alt: Alternative) -> dict[str, tuple[int, VT]] | None:
        """`args:` as name -> (register index, type); None (said) if one is not C."""
        out: dict[str, tuple[int, VT]] = {}
        ok = True
        for i, text in enumerate(alt.args):
            try:
                decl = parse(text)
            except DeclError as exc:
                ctx.problem(str(exc), alt.args_ats[i])
                ok = False
                continue
            if decl.name in out:
                ctx.problem(f"argument '{decl.name}' is declared twice", alt.args_ats[i])
                ok = False
            elif decl.name != "_":
                out[decl.name] = (i, decl.vt)
        return out if ok else None

    def _ret(self, ctx: BindContext, alt: Alternative) -> VT | bool | None:
        """The declared return type (uretprobe; default long); False when it is not C."""
        if not self.returns:
            return None
        try:
            return parse(alt.ret or DEFAULT_RET, named=False).vt
        except DeclError as exc:
            ctx.problem(str(exc), alt.ret_at)
            return False

    def func_name(self, target: str) -> str:
        """`func` prints the symbol (a pattern's match), as bpftrace's func does."""
        return target.rpartition(":")[2]

    def func_qualified(self, target: str) -> str:
        """`FILE:SYMBOL` (`libc.so.6:getpid`) when the bare symbol is another target's too."""
        path, _, place = target.rpartition(":")
        return f"{os.path.basename(path)}:{place}"

    def fn_part(self, target: str) -> str:
        """The BPF function's name part: the binary's file name and the place, as C allows."""
        path, _, place = target.rpartition(":")
        return re.sub(r"[^A-Za-z0-9_]", "_", f"{os.path.basename(path)}_{place}")

    def bcc_kwargs(self, fn_name: str, target: str) -> dict[str, str]:
        """bcc: name= the path, sym= (and sym_off=) or addr= the place."""
        path, _, place = target.rpartition(":")
        kwargs: dict[str, Any] = {"name": path, "fn_name": fn_name}
        if binary.ADDRESS.fullmatch(place):
            kwargs["addr"] = int(place, 16)
            return kwargs
        sym, _, off = place.partition("+")
        kwargs["sym"] = sym.split("@", 1)[0]  # bcc cannot resolve `getaddrinfo@@GLIBC_2.2.5`
        if off:
            kwargs["sym_off"] = int(off, 0)
        return kwargs

    def attach(self, bpf: Any, fn_name: str, target: str, pid: int = -1) -> None:
        fix_bcc_binding(importlib.import_module("bcc.libbcc").lib)  # loaded: `bpf` is bcc's
        getattr(bpf, self.bcc_attach)(**self.bcc_kwargs(fn_name, target), pid=pid)

    def gap(self, btf: Btf, targets: Sequence[str]) -> Gap:
        """The kernel needs uprobes; the binary is this machine's, checked when planning."""
        if btf.function(UPROBES_WITNESS) is None:
            return f"no uprobes in this kernel ({UPROBES_WITNESS} is not in its BTF)", []
        return None, ["the binary is checked on this machine; another may have another one"]


def fix_bcc_binding(lib: Any) -> None:
    """Give libbcc's bpf_attach_uprobe its 7th argument, ref_ctr_offset = 0.

    Debian's bcc 0.26 Python declares the C function with 6 arguments, so the kernel gets stack
    garbage as the USDT semaphore's offset: harmless for that probe, but the kernel then refuses
    every other uprobe on the same instruction with a different offset (EINVAL, "ref_ctr_offset
    mismatch" in dmesg): another tool, or doctor's probe, could not attach beside it."""
    fn = lib.bpf_attach_uprobe
    if getattr(fn, "engine_fixed", False) or len(fn.argtypes or ()) != 6:
        return
    fn.argtypes = [*fn.argtypes, ctypes.c_uint32]

    def attach_uprobe(*args: Any) -> Any:
        return fn(*args, 0) if len(args) == 6 else fn(*args)

    attach_uprobe.engine_fixed = True  # type: ignore[attr-defined]
    lib.bpf_attach_uprobe = attach_uprobe


def is_user_string(vt: VT) -> bool:
    """A declared `char *`: `decode: str` reads it with bpf_probe_read_user_str."""
    return vt.kind is VKind.PTR and vt.char and vt.user


def _capability() -> Capability:
    return Capability(Mechanism.UPROBE, (PROBE_TARGET,), REMEDY)


USER_KEYS = ("args", "ret", "pid")
UPROBE = UprobeKind(
    "uprobe", Target.USER_FUNCTION, ArgAccess.REGS, _capability(),
    bcc_attach="attach_uprobe", prog_type="KPROBE", max_args=6,
    address_space=AddressSpace.USER, user_keys=("args", "pid"),
    unavailable="uprobes unavailable: user-space specs cannot run here",
)  # fmt: skip
URETPROBE = UprobeKind(
    "uretprobe", Target.USER_FUNCTION, ArgAccess.STASH, _capability(), returns=True,
    entry=UPROBE.name, bcc_attach="attach_uretprobe", prog_type="KPROBE", max_args=6,
    address_space=AddressSpace.USER, user_keys=USER_KEYS, unavailable=UPROBE.unavailable,
)  # fmt: skip


@dataclass(frozen=True)
class UserFunctions(Family):
    """Explain: `BINARY:SYMBOL` is engine.verbs.explain_binary's (it reads the ELF file)."""

    def explain_target(self, text: str) -> str | None:
        return None  # explain_binary answers BINARY[:SYMBOL] before the kernel families

    def explain(self, explainer: Explainer, text: str) -> list[str] | None:
        return None

    def usage(self, target: str, names: Sequence[str], ret: str | None, nparams: int) -> list[str]:
        return [
            f"  {UPROBE.name}: {target}",
            f"  {URETPROBE.name}: {target}",
            "  args: [C declarations, in order]: no DWARF, so declare the types, e.g.",
            "        args: [const char *name, int flags]  (a char * prints with decode: str)",
            f"  ret: TYPE on a {URETPROBE.name} (default {DEFAULT_RET});"
            " its args are saved at entry",
        ]


FAMILY = UserFunctions("uprobe", (UPROBE, URETPROBE), "BINARY:FUNCTION")
