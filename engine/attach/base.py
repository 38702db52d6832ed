"""The attach family protocol: what every way of attaching a probe must answer.

A kind (kprobe, tracepoint, ...) is one `AttachKind`; a family (kernel functions, tracepoints,
raw tracepoints) is one module that defines its kinds as instances of its own subclass, plus one
`Family` that groups them for `engine explain` and `engine doctor`. Every stage asks the kind:
the planner which targets it names and which names an expression may use (`bind`), the step
templates how argument i is read (`arg_c`), the runner which bcc call attaches it
(`attach`), the capability probe how to measure it (`capability`), `validate`
why it would not attach on another kernel (`gap`), `explain` how a spec writes it (`Family`).
A new family (uprobes) is one module here, its template partial and its JSON Schema key (and a
capabilities mechanism if the kernel attaches it a new way); no other module names it.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence, TypeVar

from engine.errors import NameIndex
from engine.kernel.btf import Btf
from engine.memory import AddressSpace

Path = tuple[Any, ...]  # a location inside the spec document, as the planner locates problems
Gap = tuple["str | None", list[str]]  # why an alternative would not attach (None: it would), notes
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")  # the schema's identifier
# A name pattern (the schema's function_pattern): identifier characters, `*`, `?`, and classes
# `[abc]`, `[a-c]`, `[!abc]` of them, as bpftrace and the shell write them.
PATTERN = re.compile(r"(?:[A-Za-z0-9_.*?]|\[!?[A-Za-z0-9_.-]+\]){1,128}")
WILDCARD = re.compile(r"[*?\[]")
MAX_MATCHES = 1000  # bcc's funccount refuses more probes than this; so does a pattern here


class Target(Enum):
    """What the spec names after the kind's key."""

    FUNCTION = "function"  # a kernel function in BTF (FUNC)
    TRACEPOINT = "tracepoint"  # category/event, its record from BTF or tracefs
    RAW_TRACEPOINT = "raw_tracepoint"  # an event name; arguments from btf_trace_<event>
    USER_FUNCTION = "user_function"  # BINARY:SYMBOL, a function of an ELF file (no BTF)
    USDT = "usdt"  # BINARY:PROVIDER:NAME, a probe in the binary's .note.stapsdt notes
    PERF_EVENT = "perf_event"  # a sampling rate or a perf event (engine.attach.perf)


class ArgAccess(Enum):
    """How generated C reads argument i (the step partial of `model.Arg`)."""

    REGS = "regs"  # PT_REGS_PARMi(ctx); the return value PT_REGS_RC(ctx)
    CTX_ARRAY = "ctx_array"  # ((u64 *)ctx)[i]; fexit's return value after the arguments
    RAW_ARGS = "raw_args"  # ctx->args[i] of a raw tracepoint
    STASH = "stash"  # saved by an entry function, keyed by thread id (kretprobe)
    USDT = "usdt"  # bcc's bpf_usdt_readarg(i + 1, ctx, &v): v exactly the note's size
    NONE = "none"  # no arguments (tracepoints read `args.FIELD` from the record)

    def c_text(self, index: int, ctype: str = "u64") -> str:
        """The C expression of argument `index` (-1: the return value) in this access.

        `ctype` is the type the value is read as; only USDT needs it: bcc's generated reader
        refuses (returns -1, leaving the zero) a destination not the size the note gives.
        """
        if self is ArgAccess.USDT:  # a GNU statement expression: bcc rewrites the call inside
            read = f"bpf_usdt_readarg({index + 1}, ctx, &_usdt)"
            return f"({{ {ctype} _usdt = 0; {read}; _usdt; }})"
        if self is ArgAccess.REGS:
            return "PT_REGS_RC(ctx)" if index < 0 else f"PT_REGS_PARM{index + 1}(ctx)"
        if self is ArgAccess.RAW_ARGS:
            return f"ctx->args[{index}]"
        return f"ctx[{index}]"


class Mechanism(Enum):
    """How engine.kernel.capabilities attaches a no-op program of a kind, for real."""

    PERF_TRACEPOINT = "perf_tracepoint"  # TRACEPOINT prog on a tracefs event's perf id
    RAW_TRACEPOINT = "raw_tracepoint"  # BPF_RAW_TRACEPOINT_OPEN by event name
    KPROBE = "kprobe"  # kprobe PMU, else tracefs kprobe_events
    TRACING = "tracing"  # TRACING prog bound to a FUNC's BTF id
    UPROBE = "uprobe"  # uprobe PMU at a file offset, else tracefs uprobe_events
    PERF_EVENT = "perf_event"  # PERF_EVENT prog on a software (or hardware) perf event


@dataclass(frozen=True)
class Capability:
    """A kind's capability probe: the mechanism, the target doctor tries, the fix."""

    mechanism: Mechanism
    targets: tuple[str, ...]  # doctor tries the first that exists (tracepoints) or the first
    remedy: str
    attach_type: int = 0  # expected_attach_type of the load (BPF_TRACE_FENTRY, ...)


class TargetError(ValueError):
    """A target string the kind cannot name; `index` is its place in a list (None: the value)."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.message, self.index = message, index


def is_pattern(text: str) -> bool:
    """Whether a target names several things by wildcards (`vfs_*`, `tcp_v?_connect`)."""
    return WILDCARD.search(text) is not None


def expand(pattern: str, names: Iterable[str], limit: int = MAX_MATCHES) -> tuple[str, ...]:
    """The names a shell-style pattern matches (case-sensitive), sorted; () when none does.

    Shared by every family with named targets (kernel functions against BTF, user-space
    symbols against ELF), so `vfs_*` means the same everywhere. More than `limit` matches is
    a TargetError: each is one BPF program and one probe, as in bcc's funccount.
    """
    regex = re.compile(fnmatch.translate(pattern))
    found = sorted({n for n in names if regex.match(n)})
    if len(found) > limit:
        raise TargetError(
            f"'{pattern}' matches {len(found)} functions; at most {limit} can be attached "
            "(narrow the pattern)"
        )
    return tuple(found)


def pattern_hint(pattern: str) -> str:
    """The pattern's literal text (wildcards dropped), what did-you-mean compares names to."""
    return re.sub(r"\[[^\]]*\]|[*?]", "", pattern)


class Record(Protocol):
    """A tracepoint record as engine.plan.tracepoints reads it (the parts binding needs)."""

    @property
    def fields(self) -> Mapping[str, Any]: ...
    @property
    def candidates(self) -> tuple[str, ...]: ...


class Alternative(Protocol):
    """An attach alternative as the typed spec holds it (engine.spec.model.Alternative): its
    target strings and where each is written (locations the planner reports problems at)."""

    @property
    def targets(self) -> tuple[str, ...]: ...
    @property
    def target_ats(self) -> tuple[Any, ...]: ...  # each target's place (a bare one: the value)
    @property
    def kind_at(self) -> Any: ...  # the kind's key and its value
    @property
    def args(self) -> tuple[str, ...]: ...  # user-space: declared C arguments, in order
    @property
    def args_ats(self) -> tuple[Any, ...]: ...
    @property
    def ret(self) -> str: ...  # user-space: the declared return type ("" = not written)
    @property
    def ret_at(self) -> Any: ...
    @property
    def pid(self) -> int | str | None: ...  # user-space: a pid, or an option's name
    @property
    def pid_at(self) -> Any: ...
    @property
    def user_keys(self) -> tuple[tuple[str, Any], ...]: ...  # the user-space keys written


class BindContext(Protocol):
    """What a family needs from the planner to bind an alternative: BTF, names, problems."""

    @property
    def btf(self) -> Btf: ...
    def problem(self, message: str, at: Any) -> None: ...
    def function_names(self) -> NameIndex: ...
    def raw_tp_names(self) -> NameIndex: ...
    def traceable_functions(self) -> frozenset[str] | None: ...  # live kernel: what can attach
    def tracepoint_record(self, category: str, event: str, at: Any) -> Any: ...
    @property
    def spec_dir(self) -> str: ...  # the spec file's directory: `./prog` is relative to it
    def option_type(self, name: str, at: Any) -> str | None: ...  # a used option's type


S = TypeVar("S")
# The planner's Scope constructor: (btf, kind, params, ret, record, record_label=, record_note=,
# nargs=, declared=); `ret` a BTF type id or a declared VT, `declared` name -> (index, VT).
# Passed in, so attach families need not import the planner (which imports them).


@dataclass(frozen=True)
class AttachKind:
    """One way to attach: flags every stage reads, and the methods its family implements."""

    name: str  # the spec key, the template partial's name, the capability feature
    target: Target
    args: ArgAccess
    capability: Capability
    returns: bool = False  # binds `ret`
    entry: str = ""  # kind of the entry function that stashes arguments ("" = none)
    prefix: str = ""  # BPF function name prefix bcc needs (fentry: kfunc__vmlinux__)
    bcc_attach: str = ""  # bcc.BPF method
    bcc_target: str = ""  # its keyword for the target ("" = bcc finds it by function name)
    prog_type: str = ""  # bcc.BPF program type for a verifier-only load
    max_args: int = 0  # arguments readable (0 = no limit the engine knows of)
    tracefs_target: bool = False  # bcc wants "category:event"
    address_space: AddressSpace = AddressSpace.KERNEL  # where its arguments point
    required: bool = False  # `engine doctor`: tracepoint-based specs cannot run without it
    unavailable: str = ""  # `engine doctor`'s line when the kind cannot attach here
    exclusive: str = ""  # why a spec can attach only one probe to a target ("": any number)
    user_keys: tuple[str, ...] = ()  # the user-space alternative keys it takes (args, ret, pid)

    @property
    def partial(self) -> str:
        """The C entry partial under templates/ that renders this kind's BPF function."""
        return f"partials/{self.name}.c.j2"

    def bcc_kwargs(self, fn_name: str, target: str) -> dict[str, str]:
        """Keyword arguments of the bcc attach call for one function."""
        kwargs = {"fn_name": fn_name}
        if self.bcc_target:
            kwargs[self.bcc_target] = target
        return kwargs

    def fn_part(self, target: str) -> str:
        """The part of the BPF function's name that names `target` (C identifier characters)."""
        return target.replace("/", "_")

    def bcc_name(self, target: str) -> str:
        """The spec's target as bcc names it (a tracepoint's `category:event`)."""
        return target.replace("/", ":") if self.tracefs_target else target

    def spec_name(self, bcc_name: str) -> str:
        """The inverse of `bcc_name`: what the spec wrote (and the capability probe takes)."""
        return bcc_name.replace(":", "/") if self.tracefs_target else bcc_name

    def location(self, target: str) -> tuple[str, int] | None:
        """(binary path, file offset) where this kind's uprobe for `target` goes, for the
        capability probe; None: `target` is BINARY:PLACE, which the mechanism reads itself."""
        return None

    def bcc_contexts(self, fn_name: str, target: str, pid: int = -1) -> list[Any]:
        """What `bcc.BPF(usdt_contexts=...)` needs for this function before compiling: the
        runner gathers them over the program (USDT probes); most kinds need none."""
        return []

    def func_name(self, target: str) -> str:
        """What the `func` builtin prints for a (concrete) target: the spec's name of it."""
        return target

    def func_qualified(self, target: str) -> str:
        """`func`'s name when another target of the plan has the same `func_name` (a symbol
        in two binaries): a kernel function keeps its name."""
        return target

    def bind_target(self, target: str, values: Mapping[str, Any]) -> str:
        """The target of one run, given the options' values (a sampling rate `hz:$frequency`
        names an option); most kinds' targets name no option."""
        return target

    def attach(self, bpf: Any, fn_name: str, target: str, pid: int = -1) -> None:
        """Attach the loaded program `fn_name` to `target` with bcc (`bpf` a bcc.BPF); `pid`
        is a user-space probe's process (-1: every one), which kernel kinds do not take."""
        getattr(bpf, self.bcc_attach)(**self.bcc_kwargs(fn_name, target))

    @property
    def stashes(self) -> bool:
        """Arguments are saved by an entry function and read back (`model.Stashed`), not read."""
        return self.args is ArgAccess.STASH

    def arg_c(self, index: int) -> str:
        """The C text reading argument `index` (-1: the return value), see `ret_arg`."""
        return self.args.c_text(index)

    def ret_arg(self, nargs: int) -> tuple[int, ArgAccess]:
        """(index, access) of the return value: PT_REGS_RC for registers, else after the args."""
        if self.args in (ArgAccess.REGS, ArgAccess.STASH):
            return -1, ArgAccess.REGS  # a stash-using kretprobe still reads PT_REGS_RC
        return nargs, self.args

    def targets_of(self, raw: object) -> tuple[str, ...]:
        """The target strings of the spec value after the key (one, or a list of them)."""
        return tuple(str(t) for t in raw) if isinstance(raw, list) else (str(raw),)

    def parse_targets(self, raw: object) -> tuple[Any, ...]:
        """Typed targets of the value after the key; TargetError (with its index) if bad."""
        texts = self.targets_of(raw)
        at = (lambda i: i) if isinstance(raw, list) else (lambda i: None)
        parsed = []
        for i, text in enumerate(texts):
            self.check_repeat(texts, i)
            try:
                parsed.append(self.parse_target(text))
            except TargetError as exc:
                raise TargetError(exc.message, at(i)) from None
        return tuple(parsed)

    def check_repeat(self, texts: Sequence[str], i: int) -> None:
        """TargetError (at index i) when the i-th target already came earlier in the list."""
        if texts[i] in texts[:i]:
            raise TargetError(f"'{texts[i]}' is already in this {self.name} list", i)

    def parse_target(self, text: str) -> Any:
        """One typed target (FunctionTarget, TracepointTarget, ...); TargetError if bad."""
        raise NotImplementedError

    def scope_names(self) -> tuple[str, ...]:
        """The names an expression may use besides the target's arguments (`args`, `ret`)."""
        return ("ret",) if self.returns else ()

    def bind(
        self, ctx: BindContext, alt: Alternative, scope: Callable[..., S]
    ) -> tuple[str, tuple[str, ...], S] | None:
        """(kind, targets, scope of names) of one alternative; problems go to `ctx`."""
        raise NotImplementedError

    def gap(self, btf: Btf, targets: Sequence[str]) -> Gap:
        """Why this alternative would not attach on the kernel of `btf` (from BTF alone)."""
        raise NotImplementedError


class Explainer(Protocol):
    """What `engine explain` renders for a family (engine.verbs.explain implements it)."""

    def function(self, name: str, family: Family) -> list[str] | None: ...
    def tracepoint(self, target: str, family: Family) -> list[str]: ...
    def raw_tracepoint(self, event: str, family: Family) -> list[str]: ...
    def perf_events(self, event: str, family: Family) -> list[str]: ...


@dataclass(frozen=True)
class Family:
    """A group of kinds that name the same targets: explain syntax and text, doctor order."""

    name: str
    kinds: tuple[AttachKind, ...]
    explain_form: str  # how `engine explain` names one target (FUNCTION, raw:EVENT, ...)
    explain_prefix: str = ""  # explain's text starts with it (raw:), checked before the others

    def explain_target(self, text: str) -> str | None:
        """The target `text` names if it has this family's explain syntax, else None."""
        if self.explain_prefix:
            return (
                text[len(self.explain_prefix) :] if text.startswith(self.explain_prefix) else None
            )
        return text

    def explain(self, explainer: Explainer, text: str) -> list[str] | None:
        """The explain lines of `text`, or None when it is not this family's."""
        raise NotImplementedError

    def usage(self, target: str, names: Sequence[str], ret: str | None, nparams: int) -> list[str]:
        """`engine explain`'s "in a spec:" lines: how each kind of the family names `target`."""
        raise NotImplementedError
