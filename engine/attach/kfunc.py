"""Kernel functions: kprobe, kretprobe, fentry, fexit.

All four name functions in kernel BTF and bind their arguments by name (the return probes also
`ret`); they differ in how the C reads an argument (registers, the fentry ctx array, a stash
the kretprobe's entry function fills) and in the mechanism that attaches them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from engine.attach.base import (
    IDENTIFIER,
    MAX_MATCHES,
    PATTERN,
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
    expand,
    is_pattern,
    pattern_hint,
)
from engine.errors import did_you_mean
from engine.kernel.btf import Btf, Kind, Param

# A kernel function that exists only when the kernel has kprobes (CONFIG_KPROBES): without
# it in BTF, kprobe and kretprobe alternatives cannot attach there.
KPROBES_WITNESS = "register_kprobe"
PROBE_TARGET = "vfs_read"  # what `engine doctor` attaches to: in every kernel, never inlined
KPROBE_REMEDY = "use a tracepoint alternative, or a kernel built with CONFIG_KPROBES"
BPF_TRACE_FENTRY, BPF_TRACE_FEXIT = 24, 25  # include/uapi/linux/bpf.h enum bpf_attach_type
Found = tuple[str, tuple[Param, ...], int]  # a function: name, parameters, return type id


@dataclass(frozen=True)
class FunctionTarget:
    """A kernel function named by the spec."""

    name: str


@dataclass(frozen=True)
class FunctionKind(AttachKind):
    """A kind that attaches to kernel functions named in BTF."""

    def parse_target(self, text: str) -> FunctionTarget:
        if not (IDENTIFIER.fullmatch(text) or (is_pattern(text) and PATTERN.fullmatch(text))):
            raise TargetError(f"'{text}' is not a kernel function name")
        return FunctionTarget(text)

    def bind(
        self, ctx: BindContext, alt: Alternative, scope: Callable[..., S]
    ) -> tuple[str, tuple[str, ...], S] | None:
        found = self._functions(ctx, alt)
        if found is None:
            return None
        params = _common_params(ctx.btf, found)
        ret = found[0][2] if self.returns else None
        if self.returns and ret == 0:
            ret = None
        bound = scope(ctx.btf, self.name, params, ret, None, nargs=len(found[0][1]))
        return self.name, tuple(f[0] for f in found), bound

    def _functions(self, ctx: BindContext, alt: Alternative) -> list[Found] | None:
        """Each function's (name, params, return type id), patterns expanded (in list order,
        each pattern's matches sorted, repeats dropped); None (problems said) if one is bad.

        A repeated target stops at once; a missing one is said and the rest still checked.
        """
        names: list[str] = []
        targets, ok = alt.targets, True
        for i, t in enumerate(targets):
            at = alt.target_ats[i]
            try:
                self.check_repeat(targets, i)
                self.parse_target(t)
                matched = self.expand_target(ctx, t)
            except TargetError as exc:
                ctx.problem(exc.message, at)
                return None
            if not matched:
                ok = False
                what = "matches " if is_pattern(t) else ""
                ctx.problem(
                    f"no kernel function {what}'{t}' in {ctx.btf.path}"
                    f"{did_you_mean(pattern_hint(t), ctx.function_names())}",
                    at,
                )
            names += [n for n in matched if n not in names]
        if len(names) > MAX_MATCHES:
            ctx.problem(
                f"these patterns name {len(names)} functions; at most {MAX_MATCHES} can be "
                "attached",
                alt.kind_at,
            )
            return None
        found = [(n, fn[1], fn[2]) for n in names if (fn := ctx.btf.function(n)) is not None]
        return found if ok else None

    def expand_target(self, ctx: BindContext, text: str) -> tuple[str, ...]:
        """The functions one target names: itself if BTF has it, a pattern's matches."""
        if is_pattern(text):
            names, live = ctx.function_names().names, ctx.traceable_functions()
            return expand(text, names if live is None else (n for n in names if n in live))
        return (text,) if ctx.btf.function(text) is not None else ()

    def attach(self, bpf: Any, fn_name: str, target: str, pid: int = -1) -> None:
        """bcc attaches kfunc__/kretfunc__ programs itself while loading; attaching again raises."""
        attached = {**getattr(bpf, "kfunc_entry_fds", {}), **getattr(bpf, "kfunc_exit_fds", {})}
        if self.prefix and fn_name.encode() in attached:
            return
        super().attach(bpf, fn_name, target)

    def gap(self, btf: Btf, targets: Sequence[str]) -> Gap:
        """Functions must be in BTF (BTF lists only functions with an out-of-line copy, so a
        fully inlined one is absent); kprobes need the kernel's kprobe code."""
        notes: list[str] = []
        if self.capability.mechanism is Mechanism.KPROBE and btf.function(KPROBES_WITNESS) is None:
            return f"no kprobes in this kernel ({KPROBES_WITNESS} is not in its BTF)", notes
        for target in _expanded(btf, targets):
            found = btf.function(target)
            if found is None:
                return f"no function '{target}' in BTF (absent or always inlined)", notes
            if found[0].linkage == 0:
                notes.append(f"{target} is static: calls the compiler inlined are not seen")
        return None, notes


def _expanded(btf: Btf, targets: Sequence[str]) -> list[str]:
    """The functions the targets name on the kernel of `btf` (a pattern's matches there; a
    pattern matching none stays, and is said missing)."""
    names: list[str] = []
    for target in targets:
        try:
            matched = expand(target, btf.names(Kind.FUNC)) if is_pattern(target) else ()
        except TargetError:
            matched = ()
        names += [n for n in (matched or (target,)) if n not in names]
    return names


def _common_params(btf: Btf, found: list[Found]) -> dict[str, tuple[int, int]]:
    """Argument name -> (index, type id), of the names every target has at the same place."""
    params = {p.name: (i, p.type_id) for i, p in enumerate(found[0][1]) if p.name}
    for _, ps, _ in found[1:]:
        other = {p.name: (i, btf.type_str(p.type_id)) for i, p in enumerate(ps)}
        for pname, (i, tid) in list(params.items()):
            if other.get(pname) != (i, btf.type_str(tid)):
                del params[pname]  # differs between targets: not usable
    return params


def _kprobe_capability(remedy: str = KPROBE_REMEDY) -> Capability:
    return Capability(Mechanism.KPROBE, (PROBE_TARGET,), remedy)


KPROBE = FunctionKind(
    "kprobe", Target.FUNCTION, ArgAccess.REGS, _kprobe_capability(),
    bcc_attach="attach_kprobe", bcc_target="event", prog_type="KPROBE", max_args=6,
    unavailable="kprobes unavailable: specs fall back to their tracepoint alternatives",
)  # fmt: skip
KRETPROBE = FunctionKind(
    "kretprobe", Target.FUNCTION, ArgAccess.STASH, _kprobe_capability(), returns=True,
    entry=KPROBE.name, bcc_attach="attach_kretprobe", bcc_target="event", prog_type="KPROBE",
    max_args=6, unavailable=KPROBE.unavailable,
)  # fmt: skip
FENTRY = FunctionKind(
    "fentry", Target.FUNCTION, ArgAccess.CTX_ARRAY,
    Capability(Mechanism.TRACING, (PROBE_TARGET,), "use a kprobe or tracepoint alternative",
               BPF_TRACE_FENTRY),
    prefix="kfunc__vmlinux__", bcc_attach="attach_kfunc", prog_type="TRACING",
    unavailable="fentry/fexit unavailable: specs use their kprobe or tracepoint ones",
)  # fmt: skip
FEXIT = FunctionKind(
    "fexit", Target.FUNCTION, ArgAccess.CTX_ARRAY,
    Capability(Mechanism.TRACING, (PROBE_TARGET,), "use a kretprobe or tracepoint alternative",
               BPF_TRACE_FEXIT),
    returns=True, prefix="kretfunc__vmlinux__", bcc_attach="attach_kretfunc", prog_type="TRACING",
    unavailable=FENTRY.unavailable,
)  # fmt: skip


@dataclass(frozen=True)
class KernelFunctions(Family):
    """The family's explain: a bare name that is a FUNC in BTF."""

    def explain(self, explainer: Explainer, text: str) -> list[str] | None:
        return explainer.function(text, self)

    def usage(self, target: str, names: Sequence[str], ret: str | None, nparams: int) -> list[str]:
        binds = ", ".join(names) or "no arguments"
        ret_text = f" and ret ({ret})" if ret else " (returns void: no ret)"
        lines = [
            f"  {KPROBE.name}: {target}      binds {binds}",
            f"  {KRETPROBE.name}: {target}   binds {binds} (saved at entry){ret_text}",
            f"  {FENTRY.name}/{FEXIT.name} bind the same names; "
            "the first attach alternative that works wins",
        ]
        if nparams > KPROBE.max_args:
            lines.append("  arguments after the 6th are on the stack: kprobes cannot read them")
        return lines


FAMILY = KernelFunctions("kfunc", (KPROBE, KRETPROBE, FENTRY, FEXIT), "FUNCTION")


def legacy_name(kind: AttachKind, fn_name: str) -> str:
    """bcc 0.26 looks fentry/fexit functions up as kfunc__FN (newer: kfunc__vmlinux__FN)."""
    if kind.prefix and "__vmlinux__" in fn_name:
        return fn_name.replace("__vmlinux__", "__", 1)
    return fn_name
