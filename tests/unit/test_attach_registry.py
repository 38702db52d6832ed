"""engine.attach: every attach kind is one registry entry, and every stage finds what it needs.

The spec schema's attach keys, the template partials, the capability probes and bcc's
program types all come from (or are checked against) the registry, so a kind added to one
place and forgotten in another fails here, not in a user's run.
"""

from __future__ import annotations

import json
import pathlib
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

from engine.attach import FAMILIES, FAMILY_OF, KINDS, ArgAccess, Target, TargetError, arg_c, kind_of
from engine.attach.kfunc import FunctionTarget
from engine.attach.raw_tracepoint import RawTracepointTarget
from engine.attach.tracepoint import TracepointTarget
from engine.codegen import render
from engine.errors import NameIndex, UsageError
from engine.kernel import capabilities
from engine.kernel.btf import Param
from engine.memory import AddressSpace
from engine.plan import model as M
from engine.verbs import doctor, explain, validate

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_schema_attach_keys_are_the_registry() -> None:
    schema = json.loads((ROOT / "engine" / "spec.schema.json").read_text())
    attach = schema["$defs"]["attach"]
    keys = set(attach["properties"]) - {"let", "where", "args", "ret", "pid"}
    assert keys == set(KINDS)
    assert {next(iter(o["required"])) for o in attach["oneOf"]} == set(KINDS)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_kind_has_a_partial_a_probe_and_a_bcc_call(name: str) -> None:
    kind = KINDS[name]
    assert (ROOT / "templates" / "partials" / f"{name}.c.j2").is_file()
    assert name in capabilities.KINDS
    bcc = pytest.importorskip("bcc", reason="bcc's Python module (apt python3-bpfcc)")
    assert callable(getattr(bcc.BPF, kind.bcc_attach))
    assert isinstance(getattr(bcc.BPF, kind.prog_type), int)
    if kind.entry:
        assert KINDS[kind.entry].args is ArgAccess.REGS  # the entry reads PT_REGS_PARMn
    if kind.returns:
        assert kind.target in (Target.FUNCTION, Target.USER_FUNCTION)


def test_bcc_keywords() -> None:
    assert KINDS["tracepoint"].bcc_kwargs("f", "sock:x") == {"fn_name": "f", "tp": "sock:x"}
    assert KINDS["kprobe"].bcc_kwargs("f", "tcp_v4_connect") == {
        "fn_name": "f",
        "event": "tcp_v4_connect",
    }
    assert KINDS["fentry"].bcc_kwargs("kfunc__vmlinux__x", "x") == {"fn_name": "kfunc__vmlinux__x"}


# --- the families (engine/attach/): each owns its targets, scope, access, probe and gap ------


@dataclass
class FakeFn:
    linkage: int = 1  # 0: static


class FakeBtf:
    """Just what the families ask of BTF: functions, raw tracepoints, tracepoint records."""

    path = "fake.btf"

    def __init__(
        self,
        functions: dict[str, tuple[list[tuple[str, int]], int, int]] | None = None,
        raw: dict[str, list[tuple[str, int]]] | None = None,
        records: dict[str, list[str]] | None = None,
    ) -> None:
        self.functions = functions or {}
        self.raw = raw or {}
        self.records = records or {}

    def function(self, name: str) -> tuple[FakeFn, tuple[Param, ...], int] | None:
        if name not in self.functions:
            return None
        params, ret, linkage = self.functions[name]
        return FakeFn(linkage), tuple(Param(n, t) for n, t in params), ret

    def raw_tracepoint(self, name: str) -> tuple[Param, ...] | None:
        return tuple(Param(n, t) for n, t in self.raw[name]) if name in self.raw else None

    def tracepoint_records(self, event: str) -> list[str]:
        return self.records.get(event, [])

    def type_str(self, type_id: int) -> str:
        return f"t{type_id}"


@dataclass
class FakeRecord:
    fields: dict[str, Any]
    candidates: tuple[str, ...] = ()


@dataclass
class FakeCtx:
    """The planner's side of binding (engine.attach.base.BindContext)."""

    btf: Any
    records: dict[tuple[str, str], FakeRecord] = field(default_factory=dict)
    problems: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    def problem(self, message: str, at: Any) -> None:
        self.problems.append((message, tuple(at)))

    def function_names(self) -> NameIndex:
        return NameIndex(self.btf.functions)

    def raw_tp_names(self) -> NameIndex:
        return NameIndex(self.btf.raw)

    def tracepoint_record(self, category: str, event: str, path: Any) -> FakeRecord | None:
        found = self.records.get((category, event))
        if found is None:
            self.problem(f"no tracepoint '{category}/{event}'", path)
        return found


@dataclass(frozen=True)
class FakeAlt:
    """An alternative as the typed spec holds it; its places are paths, as the test reads."""

    targets: tuple[str, ...]
    target_ats: tuple[Any, ...]
    kind_at: Any


def alt_of(raw: dict[str, Any]) -> FakeAlt:
    """The typed alternative of `{kind: target or [targets]}` under PATH."""
    ((kind, value),) = raw.items()
    listed = isinstance(value, list)
    targets = tuple(value) if listed else (value,)
    ats = tuple((*PATH, kind, i) for i in range(len(targets))) if listed else ((*PATH, kind),)
    return FakeAlt(targets, ats, (*PATH, kind))


def scope(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
    """A Scope constructor stand-in: what the family would build the planner's Scope from."""
    return args[1:], kwargs


CONNECT = ([("sk", 11), ("uaddr", 12), ("addr_len", 13)], 21, 1)
BTF = FakeBtf(
    functions={
        "tcp_v4_connect": CONNECT,
        "tcp_v6_connect": ([("sk", 11), ("uaddr", 99), ("addr_len", 13)], 21, 1),
        "quiet": ([], 0, 0),
        "register_kprobe": ([], 21, 1),
    },
    raw={"sched_switch": [("preempt", 1), ("", 2)]},
    records={"inet_sock_set_state": ["trace_event_raw_inet_sock_set_state"]},
)
PATH = ("probes", 0, "attach", 0)


def test_families_partition_the_kinds() -> None:
    names = [k.name for f in FAMILIES for k in f.kinds]
    assert sorted(names) == sorted(KINDS) and len(names) == len(set(names))
    assert [f.name for f in FAMILIES][:3] == ["tracepoint", "raw_tracepoint", "kfunc"]
    for family in FAMILIES:
        for kind in family.kinds:
            assert FAMILY_OF[kind.name] is family
            assert kind_of({kind.name: "x", "where": "1"}) is kind
            user = kind.target in (Target.USER_FUNCTION, Target.USDT)  # read user memory
            assert kind.address_space is (AddressSpace.USER if user else AddressSpace.KERNEL)
            assert (ROOT / "templates" / kind.partial).is_file()


@pytest.mark.parametrize("name", ["kprobe", "kretprobe", "fentry", "fexit"])
def test_function_targets_parse_with_located_errors(name: str) -> None:
    kind = KINDS[name]
    assert kind.parse_targets("tcp_v4_connect") == (FunctionTarget("tcp_v4_connect"),)
    assert kind.parse_targets(["a", "b"]) == (FunctionTarget("a"), FunctionTarget("b"))
    with pytest.raises(TargetError) as bad:
        kind.parse_targets(["a", "b", "a"])
    assert (bad.value.message, bad.value.index) == (f"'a' is already in this {name} list", 2)
    with pytest.raises(TargetError) as bad:
        kind.parse_targets(["a", "sock/x"])
    assert (bad.value.message, bad.value.index) == ("'sock/x' is not a kernel function name", 1)
    with pytest.raises(TargetError) as bad:
        kind.parse_targets("1abc")
    assert bad.value.index is None  # a single value: the error is at the key itself


def test_tracepoint_and_raw_targets_parse() -> None:
    tp = KINDS["tracepoint"].parse_target("sock/inet_sock_set_state")
    assert (tp.category, tp.event, tp.text) == (
        "sock",
        "inet_sock_set_state",
        tp.tracefs.replace(":", "/"),
    )
    assert tp == TracepointTarget("sock", "inet_sock_set_state")
    for bad in ("sock", "sock/", "a/b/c", "so ck/x"):
        with pytest.raises(TargetError, match="use category/event"):
            KINDS["tracepoint"].parse_target(bad)
    assert KINDS["raw_tracepoint"].parse_target("sched_switch") == RawTracepointTarget(
        "sched_switch"
    )
    with pytest.raises(TargetError, match="not a raw tracepoint event name"):
        KINDS["raw_tracepoint"].parse_target("sched/sched_switch")


def test_scope_names() -> None:
    assert {n: k.scope_names() for n, k in KINDS.items()} == {
        "kprobe": (), "kretprobe": ("ret",), "fentry": (), "fexit": ("ret",),
        "tracepoint": ("args",), "raw_tracepoint": (), "uprobe": (), "uretprobe": ("ret",),
        "usdt": (),
        "profile": (),
        "perf_event": (),
    }  # fmt: skip


@pytest.mark.parametrize("name", ["kprobe", "kretprobe", "fentry", "fexit"])
def test_function_kinds_bind_the_common_arguments(name: str) -> None:
    ctx = FakeCtx(BTF)
    bound = KINDS[name].bind(ctx, alt_of({name: ["tcp_v4_connect", "tcp_v6_connect"]}), scope)
    assert bound is not None and not ctx.problems
    kind, targets, (args, kwargs) = bound
    assert (kind, targets) == (name, ("tcp_v4_connect", "tcp_v6_connect"))
    params, ret, record = args[1:]
    assert params == {"sk": (0, 11), "addr_len": (2, 13)}  # uaddr's type differs: dropped
    assert ret == (21 if KINDS[name].returns else None)
    assert record is None and kwargs == {"nargs": 3}
    _, _, ((_, _, void_ret, _), _) = KINDS[name].bind(ctx, alt_of({name: "quiet"}), scope)
    assert void_ret is None  # a void function binds no `ret`


def test_function_bind_problems_are_located() -> None:
    ctx = FakeCtx(BTF)
    assert KINDS["kprobe"].bind(ctx, alt_of({"kprobe": ["tcp_v4_conect", "nope"]}), scope) is None
    assert ctx.problems == [
        ("no kernel function 'tcp_v4_conect' in fake.btf; did you mean 'tcp_v4_connect'?",
         (*PATH, "kprobe", 0)),
        ("no kernel function 'nope' in fake.btf", (*PATH, "kprobe", 1)),
    ]  # fmt: skip
    ctx = FakeCtx(BTF)
    assert KINDS["fentry"].bind(ctx, alt_of({"fentry": "nope"}), scope) is None
    assert ctx.problems[0][1] == (*PATH, "fentry")  # a single target: at the key
    ctx = FakeCtx(BTF)
    alt = {"fexit": ["nope", "tcp_v4_connect", "tcp_v4_connect"]}
    assert KINDS["fexit"].bind(ctx, alt_of(alt), scope) is None
    assert [p[1] for p in ctx.problems] == [(*PATH, "fexit", 0), (*PATH, "fexit", 2)]
    assert ctx.problems[1][0] == "'tcp_v4_connect' is already in this fexit list"


def test_raw_tracepoint_binds_its_arguments() -> None:
    ctx = FakeCtx(BTF)
    kind, targets, (args, kwargs) = KINDS["raw_tracepoint"].bind(
        ctx, alt_of({"raw_tracepoint": "sched_switch"}), scope
    )
    assert (kind, targets) == ("raw_tracepoint", ("sched_switch",))
    assert args[1:] == ({"preempt": (0, 1), "arg1": (1, 2)}, None, None) and kwargs == {}
    assert (
        KINDS["raw_tracepoint"].bind(ctx, alt_of({"raw_tracepoint": "sched_swich"}), scope) is None
    )
    assert ctx.problems == [
        ("no raw tracepoint 'sched_swich' in fake.btf; did you mean 'sched_switch'?",
         (*PATH, "raw_tracepoint")),
    ]  # fmt: skip


def test_tracepoint_binds_its_record() -> None:
    fields = {"sport": (16, "u16")}
    record = FakeRecord(fields, candidates=("a", "b"))
    ctx = FakeCtx(BTF, records={("sock", "inet_sock_set_state"): record})
    alt = {"tracepoint": "sock/inet_sock_set_state"}
    kind, targets, (args, kwargs) = KINDS["tracepoint"].bind(ctx, alt_of(alt), scope)
    assert (kind, targets) == ("tracepoint", ("sock/inet_sock_set_state",))
    assert args[1:] == ({}, None, fields)
    assert kwargs["record_label"] == "sock/inet_sock_set_state"
    assert "BTF does not say which of a, b it uses" in kwargs["record_note"]
    assert KINDS["tracepoint"].bind(ctx, alt_of({"tracepoint": "sock/gone"}), scope) is None
    assert ctx.problems == [("no tracepoint 'sock/gone'", (*PATH, "tracepoint"))]


def test_bcc_keywords_of_every_kind() -> None:
    user = {n for n, k in KINDS.items() if k.target is Target.USER_FUNCTION}
    got = {
        n: (k.bcc_attach, k.bcc_kwargs("f", "/b:t" if n in user else "t")) for n, k in KINDS.items()
    }
    assert got == {
        "kprobe": ("attach_kprobe", {"fn_name": "f", "event": "t"}),
        "kretprobe": ("attach_kretprobe", {"fn_name": "f", "event": "t"}),
        "fentry": ("attach_kfunc", {"fn_name": "f"}),
        "fexit": ("attach_kretfunc", {"fn_name": "f"}),
        "tracepoint": ("attach_tracepoint", {"fn_name": "f", "tp": "t"}),
        "raw_tracepoint": ("attach_raw_tracepoint", {"fn_name": "f", "tp": "t"}),
        "uprobe": ("attach_uprobe", {"fn_name": "f", "name": "/b", "sym": "t"}),
        "uretprobe": ("attach_uretprobe", {"fn_name": "f", "name": "/b", "sym": "t"}),
        "usdt": ("attach_uprobe", {"fn_name": "f"}),  # bcc calls it itself, from the contexts
        # the kind opens its per-CPU events itself (engine.attach.perf), bcc's call by name
        "profile": ("attach_perf_event", {"fn_name": "f"}),
        "perf_event": ("attach_perf_event", {"fn_name": "f"}),
    }


def test_argument_access_c_text() -> None:
    """What the `arg` step partial prints, per kind: argument 1 and the return value."""
    got = {}
    for name, kind in KINDS.items():
        index, access = kind.ret_arg(3)
        got[name] = (kind.arg_c(1), arg_c(access.value, index))
    assert got == {
        "kprobe": ("PT_REGS_PARM2(ctx)", "PT_REGS_RC(ctx)"),
        "kretprobe": ("ctx[1]", "PT_REGS_RC(ctx)"),  # kretprobe args come from the stash
        "fentry": ("ctx[1]", "ctx[3]"),
        "fexit": ("ctx[1]", "ctx[3]"),  # the return value after the 3 arguments
        "uprobe": ("PT_REGS_PARM2(ctx)", "PT_REGS_RC(ctx)"),
        "uretprobe": ("ctx[1]", "PT_REGS_RC(ctx)"),  # like kretprobe: from the stash
        "tracepoint": ("ctx[1]", "ctx[3]"),  # unused: a tracepoint has no arguments
        "raw_tracepoint": ("ctx->args[1]", "ctx->args[3]"),
        "usdt": (  # bcc's reader, 1-based; unused: a USDT probe has no return value
            "({ u64 _usdt = 0; bpf_usdt_readarg(2, ctx, &_usdt); _usdt; })",
            "({ u64 _usdt = 0; bpf_usdt_readarg(4, ctx, &_usdt); _usdt; })",
        ),
        "profile": ("ctx[1]", "ctx[3]"),  # unused: a sample has no arguments
        "perf_event": ("ctx[1]", "ctx[3]"),
    }


@pytest.mark.parametrize("access", list(ArgAccess))
def test_arg_c_is_what_the_step_partial_renders(access: ArgAccess) -> None:
    """The step partial's `arg` arm and ArgAccess.c_text agree, so the partial can call it."""
    env = render.environment()
    candidates = ("partials/steps/arg.c.j2", "partials/step.c.j2")  # after / before the split
    partial = next(p for p in candidates if (ROOT / "templates" / p).is_file())
    for index in (-1, 0, 5) if access is ArgAccess.REGS else (0, 5):
        text = env.get_template(partial).render(s=M.Arg("v1", "u64", index, access.value))
        assert text.strip() == f"u64 v1 = (u64){access.c_text(index)};"


def test_gaps_from_btf_alone() -> None:
    no_kprobes = FakeBtf(functions={"tcp_v4_connect": CONNECT})
    kprobes_gone = "no kprobes in this kernel (register_kprobe is not in its BTF)"
    assert KINDS["kprobe"].gap(no_kprobes, ["tcp_v4_connect"]) == (kprobes_gone, [])
    assert KINDS["kretprobe"].gap(no_kprobes, ["tcp_v4_connect"])[0] == kprobes_gone
    assert KINDS["fentry"].gap(no_kprobes, ["tcp_v4_connect"]) == (None, [])  # no kprobes needed
    assert KINDS["kprobe"].gap(BTF, ["tcp_v4_connect", "gone"]) == (
        "no function 'gone' in BTF (absent or always inlined)", [],
    )  # fmt: skip
    assert KINDS["fexit"].gap(BTF, ["quiet"]) == (
        None, ["quiet is static: calls the compiler inlined are not seen"],
    )  # fmt: skip
    assert KINDS["raw_tracepoint"].gap(BTF, ["sched_switch"]) == (None, [])
    assert KINDS["raw_tracepoint"].gap(BTF, ["gone"]) == ("no raw tracepoint 'gone' in BTF", [])
    assert KINDS["tracepoint"].gap(BTF, ["sock/inet_sock_set_state"]) == (None, [])
    assert KINDS["tracepoint"].gap(BTF, ["sock/gone"]) == (
        "no record type of tracepoint 'sock/gone' in BTF", [],
    )  # fmt: skip


def test_capability_probes_come_from_the_kinds() -> None:
    assert capabilities.FEATURES == (
        "root",
        "bcc",
        "btf",
        "headers",
        "tracefs",
        "tracepoint",
        "raw_tracepoint",
        "kprobe",
        "kretprobe",
        "fentry",
        "fexit",
        "uprobe",
        "uretprobe",
        "usdt",
        "profile",
        "perf_event",
        "ringbuf",
        "perf_buffer",
    )  # fmt: skip  (doctor's rows, in the order they always had)
    for kind in KINDS.values():
        assert kind.capability.mechanism in capabilities._MECHANISMS
        assert kind.capability.targets and kind.capability.remedy
    assert {k.capability.attach_type for k in KINDS.values() if k.prog_type == "TRACING"} == {
        24,
        25,
    }
    with pytest.raises(UsageError, match="unknown attach kind 'uprobes'"):
        capabilities.can_attach("uprobes", "x")


def test_doctor_requirements_and_notes_come_from_the_kinds() -> None:
    assert doctor.REQUIRED == ("root", "bcc", "btf", "headers", "tracefs", "tracepoint")
    down = {f: capabilities.Probe(True, "") for f in capabilities.FEATURES}
    assert doctor.unavailable(down) == []
    down["kretprobe"] = down["fexit"] = capabilities.Probe(False, "no")
    assert doctor.unavailable(down) == [KINDS["kprobe"].unavailable, KINDS["fentry"].unavailable]


def test_explain_syntax_of_every_family() -> None:
    for family in FAMILIES:
        assert family.explain_form in explain._USAGE
    raw = FAMILY_OF["raw_tracepoint"]
    assert raw.explain_target("raw:sched_switch") == "sched_switch"
    assert raw.explain_target("sched/x") is None
    assert FAMILY_OF["tracepoint"].explain_target("sched/x") == "sched/x"
    assert FAMILY_OF["tracepoint"].explain_target("vfs_read") is None
    lines = FAMILY_OF["kprobe"].usage("f", ["a"], None, 7)
    assert lines[1].endswith("binds a (saved at entry) (returns void: no ret)")
    assert lines[-1] == "  arguments after the 6th are on the stack: kprobes cannot read them"


def test_validate_asks_the_kind_for_its_gap() -> None:
    assert validate._alternative_gap(BTF, "raw_tracepoint", ["gone"]) == (
        "no raw tracepoint 'gone' in BTF", [],
    )  # fmt: skip


class FakeBPF:
    """A bcc.BPF stand-in recording the attach calls."""

    RAW_TRACEPOINT = 17

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.kfunc_entry_fds = {b"kfunc__vmlinux__loaded": 3}
        self.raw_tracepoint_fds: dict[bytes, int] = {}

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("attach_"):
            raise AttributeError(name)
        return lambda **kwargs: self.calls.append((name, kwargs))

    def load_func(self, name: bytes, prog_type: int) -> Any:
        self.calls.append(("load_func", {"name": name.decode(), "type": str(prog_type)}))
        return type("Fn", (), {"fd": 7})()


def test_bcc_attach_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    b = FakeBPF()
    KINDS["kprobe"].attach(b, "p0_f", "tcp_v4_connect")
    KINDS["tracepoint"].attach(b, "p0_t", "sock:x")
    KINDS["fentry"].attach(b, "kfunc__vmlinux__loaded", "loaded")  # bcc attached it on load
    KINDS["fentry"].attach(b, "kfunc__vmlinux__other", "other")
    assert b.calls == [
        ("attach_kprobe", {"fn_name": "p0_f", "event": "tcp_v4_connect"}),
        ("attach_tracepoint", {"fn_name": "p0_t", "tp": "sock:x"}),
        ("attach_kfunc", {"fn_name": "kfunc__vmlinux__other"}),
    ]
    lib = type("Lib", (), {"bpf_attach_raw_tracepoint": staticmethod(lambda fd, tp: 40 + fd)})
    fake_bcc = type("Bcc", (), {"BPF": FakeBPF, "libbcc": type("L", (), {"lib": lib})})
    monkeypatch.setitem(sys.modules, "bcc", fake_bcc)
    b = FakeBPF()
    KINDS["raw_tracepoint"].attach(b, "p1_r", "sched_switch")
    assert b.calls == [("load_func", {"name": "p1_r", "type": "17"})]
    assert b.raw_tracepoint_fds == {b"sched_switch/p1_r": 47}  # one link per program


def test_bcc_and_spec_names_of_targets() -> None:
    tp, kp = KINDS["tracepoint"], KINDS["kprobe"]
    assert tp.bcc_name("sock/inet_sock_set_state") == "sock:inet_sock_set_state"
    assert tp.spec_name("sock:inet_sock_set_state") == "sock/inet_sock_set_state"
    assert kp.bcc_name("tcp_v4_connect") == kp.spec_name("tcp_v4_connect") == "tcp_v4_connect"


def test_only_the_kretprobe_reads_a_stash() -> None:
    assert [n for n, k in KINDS.items() if k.stashes] == ["kretprobe", "uretprobe"]
    assert all(KINDS[k.entry].args is ArgAccess.REGS for k in KINDS.values() if k.stashes)
