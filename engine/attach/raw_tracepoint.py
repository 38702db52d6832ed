"""Raw tracepoints: an event name, its arguments typed by BTF's btf_trace_<event>."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from engine.attach.base import (
    IDENTIFIER,
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
from engine.errors import did_you_mean
from engine.kernel.btf import Btf

PROBE_TARGET = "sched_process_exec"  # what `engine doctor` attaches to


@dataclass(frozen=True)
class RawTracepointTarget:
    """A raw tracepoint's event name (no category)."""

    event: str


@dataclass(frozen=True)
class RawTracepointKind(AttachKind):
    """Binds the event's arguments by name (`argN` where BTF leaves one unnamed)."""

    def parse_target(self, text: str) -> RawTracepointTarget:
        if not IDENTIFIER.fullmatch(text):
            raise TargetError(f"'{text}' is not a raw tracepoint event name")
        return RawTracepointTarget(text)

    def bind(
        self, ctx: BindContext, alt: Alternative, scope: Callable[..., S]
    ) -> tuple[str, tuple[str, ...], S] | None:
        tpath = alt.kind_at
        targets = alt.targets
        try:
            event = self.parse_target(targets[0]).event
        except TargetError as exc:
            ctx.problem(exc.message, tpath)
            return None
        rparams = ctx.btf.raw_tracepoint(event)
        if rparams is None:
            ctx.problem(
                f"no raw tracepoint '{event}' in {ctx.btf.path}"
                f"{did_you_mean(event, ctx.raw_tp_names())}",
                tpath,
            )
            return None
        params = {(p.name or f"arg{i}"): (i, p.type_id) for i, p in enumerate(rparams)}
        return self.name, targets, scope(ctx.btf, self.name, params, None, None)

    def attach(self, bpf: Any, fn_name: str, target: str, pid: int = -1) -> None:
        """bcc attaches one program per raw tracepoint name; a spec may have several probes on
        one (runqlat's sched_switch), so each gets its own link, kept where bcc's cleanup closes
        it (bcc.BPF.raw_tracepoint_fds, under a key of its own)."""
        bcc = importlib.import_module("bcc")  # loaded already: `bpf` is one of its BPF objects
        fn = bpf.load_func(fn_name.encode(), bcc.BPF.RAW_TRACEPOINT)
        fd = bcc.libbcc.lib.bpf_attach_raw_tracepoint(fn.fd, target.encode())
        if fd < 0:
            raise OSError(f"cannot attach {fn_name} to raw tracepoint {target}")
        bpf.raw_tracepoint_fds[f"{target}/{fn_name}".encode()] = fd

    def gap(self, btf: Btf, targets: Sequence[str]) -> Gap:
        """Its arguments' typedef must be in BTF."""
        if btf.raw_tracepoint(targets[0]) is None:
            return f"no raw tracepoint '{targets[0]}' in BTF", []
        return None, []


RAW_TRACEPOINT = RawTracepointKind(
    "raw_tracepoint", Target.RAW_TRACEPOINT, ArgAccess.RAW_ARGS,
    Capability(Mechanism.RAW_TRACEPOINT, (PROBE_TARGET,),
               "check the event exists under /sys/kernel/tracing/events"),
    bcc_attach="attach_raw_tracepoint", bcc_target="tp", prog_type="RAW_TRACEPOINT",
)  # fmt: skip


@dataclass(frozen=True)
class RawTracepoints(Family):
    """Explain: `raw:EVENT`."""

    def explain(self, explainer: Explainer, text: str) -> list[str] | None:
        event = self.explain_target(text)
        return None if event is None else explainer.raw_tracepoint(event, self)

    def usage(self, target: str, names: Sequence[str], ret: str | None, nparams: int) -> list[str]:
        return [f"  {RAW_TRACEPOINT.name}: {target}   binds {', '.join(names)}"]


FAMILY = RawTracepoints(RAW_TRACEPOINT.name, (RAW_TRACEPOINT,), "raw:EVENT", explain_prefix="raw:")
