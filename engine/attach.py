"""Attach kinds: one registry entry per way a probe can attach (kprobe, tracepoint, ...).

Every stage asks its kind what to do instead of testing names: the planner which names an
expression may use (arguments, `args`, `ret`) and how they are read, the templates which
function partial to render (`templates/partials/<name>.c.j2`), the runner which bcc call
attaches it, `engine doctor` and the runner which capability probe measures it, and
`validate --compile` which verifier program type loads it. A new kind (say uprobe) is one
`AttachKind` here, one template partial and, if the kernel needs a new mechanism to be
measured, one probe in engine.kernel.capabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Target(Enum):
    """What the spec names after the kind's key."""

    FUNCTION = "function"  # a kernel function in BTF (FUNC)
    TRACEPOINT = "tracepoint"  # category/event, its record from BTF or tracefs
    RAW_TRACEPOINT = "raw_tracepoint"  # an event name; arguments from btf_trace_<event>


class ArgAccess(Enum):
    """How generated C reads argument i (templates/partials/step.c.j2 `arg`)."""

    REGS = "regs"  # PT_REGS_PARMi(ctx); the return value PT_REGS_RC(ctx)
    CTX_ARRAY = "ctx_array"  # ((u64 *)ctx)[i]; fexit's return value after the arguments
    RAW_ARGS = "raw_args"  # ctx->args[i] of a raw tracepoint
    STASH = "stash"  # saved by an entry function, keyed by thread id (kretprobe)
    NONE = "none"  # no arguments (tracepoints read `args.FIELD` from the record)


@dataclass(frozen=True)
class AttachKind:
    name: str  # the spec key, the template partial's name, the capability feature
    target: Target
    args: ArgAccess
    returns: bool = False  # binds `ret`
    entry: str = ""  # kind of the entry function that stashes arguments ("" = none)
    prefix: str = ""  # BPF function name prefix bcc needs (fentry: kfunc__vmlinux__)
    bcc_attach: str = ""  # bcc.BPF method
    bcc_target: str = ""  # its keyword for the target ("" = bcc finds it by function name)
    prog_type: str = ""  # bcc.BPF program type for a verifier-only load
    max_args: int = 0  # arguments readable (0 = no limit the engine knows of)
    tracefs_target: bool = False  # bcc wants "category:event"

    def bcc_kwargs(self, fn_name: str, target: str) -> dict[str, str]:
        """Keyword arguments of the bcc attach call for one function."""
        kwargs = {"fn_name": fn_name}
        if self.bcc_target:
            kwargs[self.bcc_target] = target
        return kwargs


KINDS: dict[str, AttachKind] = {
    k.name: k
    for k in (
        AttachKind(
            "kprobe", Target.FUNCTION, ArgAccess.REGS,
            bcc_attach="attach_kprobe", bcc_target="event", prog_type="KPROBE", max_args=6,
        ),
        AttachKind(
            "kretprobe", Target.FUNCTION, ArgAccess.STASH, returns=True, entry="kprobe",
            bcc_attach="attach_kretprobe", bcc_target="event", prog_type="KPROBE", max_args=6,
        ),
        AttachKind(
            "fentry", Target.FUNCTION, ArgAccess.CTX_ARRAY, prefix="kfunc__vmlinux__",
            bcc_attach="attach_kfunc", prog_type="TRACING",
        ),
        AttachKind(
            "fexit", Target.FUNCTION, ArgAccess.CTX_ARRAY, returns=True,
            prefix="kretfunc__vmlinux__", bcc_attach="attach_kretfunc", prog_type="TRACING",
        ),
        AttachKind(
            "tracepoint", Target.TRACEPOINT, ArgAccess.NONE, bcc_attach="attach_tracepoint",
            bcc_target="tp", prog_type="TRACEPOINT", tracefs_target=True,
        ),
        AttachKind(
            "raw_tracepoint", Target.RAW_TRACEPOINT, ArgAccess.RAW_ARGS,
            bcc_attach="attach_raw_tracepoint", bcc_target="tp", prog_type="RAW_TRACEPOINT",
        ),
    )
}  # fmt: skip


def kind_of(alternative: dict[str, object]) -> AttachKind:
    """The kind an attach alternative of a (schema-valid) spec names."""
    return next(k for name, k in KINDS.items() if name in alternative)


def legacy_name(kind: AttachKind, fn_name: str) -> str:
    """bcc 0.26 looks fentry/fexit functions up as kfunc__FN (newer: kfunc__vmlinux__FN)."""
    if kind.prefix and "__vmlinux__" in fn_name:
        return fn_name.replace("__vmlinux__", "__", 1)
    return fn_name
