"""Tracepoints: `category/event`, whose record the program reads as `args.FIELD`.

The record's layout comes from tracefs on the running kernel, else from BTF (the planner's
engine.plan.tracepoints decides); no arguments are bound by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

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
from engine.kernel.btf import Btf

PATTERN = re.compile(r"([A-Za-z_][A-Za-z0-9_]{0,63})/([A-Za-z_][A-Za-z0-9_]{0,63})")
# What `engine doctor` attaches to: the first that exists under tracefs.
PROBE_TARGETS = ("syscalls/sys_enter_getpid", "sched/sched_process_exec")


@dataclass(frozen=True)
class TracepointTarget:
    """`category/event`, as under /sys/kernel/tracing/events."""

    category: str
    event: str

    @property
    def text(self) -> str:
        return f"{self.category}/{self.event}"

    @property
    def tracefs(self) -> str:
        """How bcc names it (`category:event`)."""
        return f"{self.category}:{self.event}"


@dataclass(frozen=True)
class TracepointKind(AttachKind):
    """Binds `args`, the event's record, with the fields tracefs or BTF describe."""

    def parse_target(self, text: str) -> TracepointTarget:
        match = PATTERN.fullmatch(text)
        if match is None:
            raise TargetError(
                f"'{text}' is not a tracepoint: use category/event, each letters, digits "
                "and _, e.g. sock/inet_sock_set_state"
            )
        return TracepointTarget(match[1], match[2])

    def scope_names(self) -> tuple[str, ...]:
        return ("args",)

    def bind(
        self, ctx: BindContext, alt: Alternative, scope: Callable[..., S]
    ) -> tuple[str, tuple[str, ...], S] | None:
        tpath = alt.kind_at
        targets = alt.targets
        try:
            target = self.parse_target(targets[0])
        except TargetError as exc:
            ctx.problem(exc.message, tpath)
            return None
        record = ctx.tracepoint_record(target.category, target.event, tpath)
        if record is None:
            return None
        note = ""
        if record.candidates:
            note = (
                f" (BTF does not say which of {', '.join(record.candidates)} it uses: these "
                "are the fields they agree on; on the running kernel, as root without --btf, "
                "tracefs settles it)"
            )
        fields = dict(record.fields)
        bound = scope(
            ctx.btf, self.name, {}, None, fields, record_label=targets[0], record_note=note
        )
        return self.name, targets, bound

    def gap(self, btf: Btf, targets: Sequence[str]) -> Gap:
        """The record type must be in BTF (tracefs of another kernel is not at hand)."""
        event = targets[0].partition("/")[2]
        if not btf.tracepoint_records(event):
            return f"no record type of tracepoint '{targets[0]}' in BTF", []
        return None, []


TRACEPOINT = TracepointKind(
    "tracepoint", Target.TRACEPOINT, ArgAccess.NONE,
    Capability(Mechanism.PERF_TRACEPOINT, PROBE_TARGETS,
               "check the event exists under /sys/kernel/tracing/events (CONFIG_FTRACE)"),
    bcc_attach="attach_tracepoint", bcc_target="tp", prog_type="TRACEPOINT",
    tracefs_target=True, required=True,
)  # fmt: skip


@dataclass(frozen=True)
class Tracepoints(Family):
    """Explain: `category/event` (a `/` says it is a tracepoint)."""

    def explain_target(self, text: str) -> str | None:
        return text if "/" in text else None

    def explain(self, explainer: Explainer, text: str) -> list[str] | None:
        target = self.explain_target(text)
        return None if target is None else explainer.tracepoint(target, self)

    def usage(self, target: str, names: Sequence[str], ret: str | None, nparams: int) -> list[str]:
        return [
            f"  {TRACEPOINT.name}: {target}   then args.FIELD in let, where and fields",
            "  (offsets 0-7 are the common header: use the pid, tid and comm builtins)",
        ]


FAMILY = Tracepoints(TRACEPOINT.name, (TRACEPOINT,), "CATEGORY/EVENT")
