"""Sampling: perf events that run the program every N Hz, every N ns, or every N occurrences of
a software or hardware event, on every CPU or a list of them.

`profile: hz:49` samples each CPU 49 times a second (bcc's profile -F 49, bpftrace's
`profile:hz:49`); `profile: ms:10` every 10 ms of CPU time; `perf_event: software:page-faults:1`
on every page fault; `perf_event: hardware:cache-misses:10000` every 10,000 misses, where the
machine has a CPU PMU. A rate may be an option (`hz:$frequency`), bound per run; ` cpus:0,2-3`
limits the CPUs. The program sees the interrupted task: the builtins (pid, comm, cpu) and the
stacks (kstack, ustack) are the sample's.

The runner opens one perf event per CPU and attaches the program to each; a CPU that fails
closes every one already open (nothing half-attached), with the reason.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

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
from engine.errors import did_you_mean
from engine.kernel.btf import Btf

TYPE_HARDWARE, TYPE_SOFTWARE = 0, 1
SW_CPU_CLOCK = 0
# perf's names (perf list) -> PERF_COUNT_SW_* / PERF_COUNT_HW_* and the default period
SOFTWARE: dict[str, tuple[int, int]] = {
    "cpu-clock": (0, 1_000_000), "task-clock": (1, 1_000_000), "page-faults": (2, 1),
    "faults": (2, 1), "context-switches": (3, 1), "cs": (3, 1), "cpu-migrations": (4, 1),
    "migrations": (4, 1), "minor-faults": (5, 1), "major-faults": (6, 1),
    "alignment-faults": (7, 1), "emulation-faults": (8, 1), "cgroup-switches": (11, 1),
}  # fmt: skip
HARDWARE: dict[str, tuple[int, int]] = {
    "cycles": (0, 1_000_000), "cpu-cycles": (0, 1_000_000), "instructions": (1, 1_000_000),
    "cache-references": (2, 1_000_000), "cache-misses": (3, 10_000),
    "branch-instructions": (4, 1_000_000), "branches": (4, 1_000_000),
    "branch-misses": (5, 10_000), "bus-cycles": (6, 100_000),
    "stalled-cycles-frontend": (7, 1_000_000), "stalled-cycles-backend": (8, 1_000_000),
    "ref-cycles": (9, 1_000_000),
}  # fmt: skip
EVENTS = {"software": (TYPE_SOFTWARE, SOFTWARE), "hardware": (TYPE_HARDWARE, HARDWARE)}
UNITS = {"hz": 0, "s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}  # ns per unit; hz: frequency
NUMBER = r"(\d{1,12}|\$[A-Za-z_][A-Za-z0-9_]{0,63})"
CPUS = r"(?:\s+cpus:(\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*))?"
PROFILE = re.compile(rf"(hz|s|ms|us|ns):{NUMBER}{CPUS}")
PERF_EVENT = re.compile(rf"(software|hardware):([a-z-]+)(?::{NUMBER})?{CPUS}")
MAX_HZ = 100_000  # the kernel's perf_event_max_sample_rate default is lower; it says so
PMU_CPU = "/sys/bus/event_source/devices/cpu"


@dataclass(frozen=True)
class Sampling:
    """One parsed target: the perf event (type, config), its period or frequency, the CPUs."""

    ev_type: int
    config: int
    period: int | str  # events (or ns of cpu-clock) per sample; an option's name when `$name`
    freq: int | str = 0  # samples per second (hz); an option's name when `$name`
    cpus: tuple[int, ...] = ()  # () = every online CPU
    text: str = ""

    @property
    def option(self) -> str:
        """The option a rate names ("" when it is a number)."""
        for v in (self.period, self.freq):
            if isinstance(v, str):
                return v
        return ""


def _number(text: str) -> int | str:
    return text[1:] if text.startswith("$") else int(text)


def _cpus(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    out: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if last < first:
            raise TargetError(f"CPU range '{part}' runs backwards")
        out += range(first, last + 1)
    return tuple(sorted(set(out)))


def online_cpus() -> list[int]:
    """The online CPUs (/sys/devices/system/cpu/online: `0-3,5`)."""
    try:
        with open("/sys/devices/system/cpu/online") as f:
            return list(_cpus(f.read().strip()))
    except OSError:
        return list(range(os.cpu_count() or 1))


@dataclass(frozen=True)
class PerfKind(AttachKind):
    """A sampling kind: its target names a rate (profile) or an event and period (perf_event)."""

    def parse_target(self, text: str) -> Sampling:
        raise NotImplementedError

    def bind(
        self, ctx: BindContext, alt: Alternative, scope: Callable[..., S]
    ) -> tuple[str, tuple[str, ...], S] | None:
        at = alt.kind_at
        try:
            sampling = self.parse_target(alt.targets[0])
        except TargetError as exc:
            ctx.problem(exc.message, at)
            return None
        if sampling.option:
            ctype = ctx.option_type(sampling.option, at)
            if ctype is None:
                return None
            if not re.fullmatch(r"[us](8|16|32|64)", ctype):
                ctx.problem(
                    f"a rate `${sampling.option}` needs an integer option; it is {ctype}", at
                )
                return None
        live = ctx.traceable_functions() is not None
        if sampling.ev_type == TYPE_HARDWARE and live and not os.path.isdir(PMU_CPU):
            ctx.problem(
                f"hardware event '{alt.targets[0]}' needs a CPU PMU, which this machine "
                f"lacks ({PMU_CPU} is missing: a VM without PMU passthrough); "
                "use software:cpu-clock (engine doctor lists what opens here)",
                at,
            )
            return None
        return self.name, alt.targets, scope(ctx.btf, self.name, {}, None, None)

    def fn_part(self, target: str) -> str:
        """`hz:$frequency cpus:0` -> `hz_frequency_cpus_0`: C identifier characters."""
        return re.sub(r"_+", "_", re.sub(r"\W", "_", target)).strip("_")

    def bind_target(self, target: str, values: Mapping[str, Any]) -> str:
        """The target with its `$option` rate replaced by this run's value."""
        sampling = self.parse_target(target)
        name = sampling.option
        if not name:
            return target
        value = values.get(name)
        if not isinstance(value, int) or value <= 0:
            raise TargetError(f"{self.name} '{target}': option ${name} needs a positive value")
        return target.replace(f"${name}", str(value))

    def attach(self, bpf: Any, fn_name: str, target: str, pid: int = -1) -> None:
        """One perf event per CPU, each running the program; on a failure the ones opened
        are closed before the error (bcc's attach_perf_event would leave them open, and keys
        its fds by event, so two probes on one event would leak the first's)."""
        bcc = importlib.import_module("bcc")
        s = self.parse_target(target)
        fn = bpf.load_func(fn_name.encode(), bcc.BPF.PERF_EVENT)
        lib = bcc.libbcc.lib
        cpus = list(s.cpus) or online_cpus()
        missing = sorted(set(cpus) - set(online_cpus()))
        if missing:
            raise OSError(f"{self.name} '{target}': CPU {missing[0]} is not online")
        fds: dict[int, int] = {}
        for cpu in cpus:
            fd = lib.bpf_attach_perf_event(
                fn.fd, s.ev_type, s.config, int(s.period), int(s.freq), -1, cpu, -1
            )
            if fd < 0:
                for opened in fds.values():
                    lib.bpf_close_perf_event_fd(opened)
                raise OSError(
                    f"cannot open perf event {s.text} on CPU {cpu}: {os.strerror(-fd)}"
                    + (" (no CPU PMU here: engine doctor)" if s.ev_type == TYPE_HARDWARE else "")
                )
            fds[cpu] = fd
        # bcc's cleanup closes every fd under open_perf_events (keys are pairs): a key of our
        # own per function, which no bcc call makes
        bpf.open_perf_events[(fn_name, s.config)] = fds

    def gap(self, btf: Btf, targets: Sequence[str]) -> Gap:
        """Perf-event programs need BPF_PROG_TYPE_PERF_EVENT (Linux 4.9), whose context type
        BTF names."""
        if btf.find("bpf_perf_event_data_kern") is None and btf.find("bpf_perf_event_data") is None:
            return "no perf-event program context (bpf_perf_event_data) in BTF", []
        return None, []


@dataclass(frozen=True)
class ProfileKind(PerfKind):
    """`hz:N`, or every N s/ms/us/ns of CPU time (the cpu-clock software event)."""

    def parse_target(self, text: str) -> Sampling:
        m = PROFILE.fullmatch(text.strip())
        if m is None:
            raise TargetError(
                f"'{text}' is not a sampling rate: use hz:N (N samples a second per CPU), or "
                "s:N, ms:N, us:N, ns:N (every N of CPU time), optionally ` cpus:0,2-3`; N may "
                "be an option, e.g. hz:$frequency"
            )
        unit, number, cpus = m[1], _number(m[2]), _cpus(m[3])
        if isinstance(number, int) and not (0 < number <= (MAX_HZ if unit == "hz" else 10**12)):
            raise TargetError(f"'{text}': the rate must be 1 to {MAX_HZ} hz, or a positive period")
        if unit == "hz":
            return Sampling(TYPE_SOFTWARE, SW_CPU_CLOCK, 0, number, cpus, text)
        period = number * UNITS[unit] if isinstance(number, int) else number
        if isinstance(number, str) and unit != "ns":
            raise TargetError(f"'{text}': an option's period is in ns (write ns:${number})")
        return Sampling(TYPE_SOFTWARE, SW_CPU_CLOCK, period, 0, cpus, text)


@dataclass(frozen=True)
class PerfEventKind(PerfKind):
    """`software:EVENT[:N]` or `hardware:EVENT[:N]`: every N events (perf list's names)."""

    def parse_target(self, text: str) -> Sampling:
        m = PERF_EVENT.fullmatch(text.strip())
        if m is None:
            raise TargetError(
                f"'{text}' is not a perf event: use software:EVENT[:N] or hardware:EVENT[:N] "
                "(every N events), e.g. software:page-faults:1, hardware:cache-misses:10000; "
                "optionally ` cpus:0,2-3`"
            )
        ev_type, table = EVENTS[m[1]]
        if m[2] not in table:
            raise TargetError(
                f"no {m[1]} event '{m[2]}'; {m[1]} events: {', '.join(sorted(table))}"
                f"{did_you_mean(m[2], list(table))}"
            )
        config, default = table[m[2]]
        period = _number(m[3]) if m[3] else default
        if period == 0:
            raise TargetError(f"'{text}': the period must be at least 1 event")
        return Sampling(ev_type, config, period, 0, _cpus(m[4]), text)


PROFILE_KIND = ProfileKind(
    "profile", Target.PERF_EVENT, ArgAccess.NONE,
    Capability(Mechanism.PERF_EVENT, ("hz:49",),
               "perf events need CONFIG_PERF_EVENTS and kernel.perf_event_paranoid (as root: any)"),
    prog_type="PERF_EVENT", bcc_attach="attach_perf_event",
    unavailable="perf events unavailable: profile and perf_event specs cannot run",
)  # fmt: skip
PERF_EVENT_KIND = PerfEventKind(
    "perf_event", Target.PERF_EVENT, ArgAccess.NONE,
    Capability(Mechanism.PERF_EVENT, ("*",),
               "perf events need CONFIG_PERF_EVENTS; hardware events a CPU PMU"),
    prog_type="PERF_EVENT", bcc_attach="attach_perf_event",
    unavailable="perf events unavailable: profile and perf_event specs cannot run",
)  # fmt: skip


@dataclass(frozen=True)
class PerfEvents(Family):
    """Explain: `perf:` lists the events and which open here."""

    def explain(self, explainer: Explainer, text: str) -> list[str] | None:
        rest = self.explain_target(text)
        return None if rest is None else explainer.perf_events(rest, self)

    def usage(self, target: str, names: Sequence[str], ret: str | None, nparams: int) -> list[str]:
        return [f"  {PROFILE_KIND.name}: hz:49   or   {PERF_EVENT_KIND.name}: {target}"]


FAMILY = PerfEvents(
    "perf events", (PROFILE_KIND, PERF_EVENT_KIND), "perf:[EVENT]", explain_prefix="perf:"
)
