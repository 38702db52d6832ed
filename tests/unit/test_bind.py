"""engine.plan.bind: options become typed constants or drop out; only needed steps are kept.

The option-binding tests use hand-built trees (no kernel). The tcpconnect tests plan the real
spec against the committed BTF fixture. Locals in the rendered C are checked by parsing the C
(declared before use, in scope, once), not with bind's own dependency walk.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

import pytest
from btf_fixture import BTF
from c_locals import local_problems

from engine.codegen import render
from engine.plan import model as M
from engine.plan.bind import bind, bind_expr
from engine.plan.values import ctype_range
from tests.live_specs import offline

ROOT = pathlib.Path(__file__).resolve().parents[2]


def ev(name: str) -> str:
    """A field's event slot as generated C names it (fields are prefixed: `ev.f_pid`)."""
    slot = getattr(M, "slot_name", lambda n: n)
    return f"ev.{slot(name)}"


PID = M.CVar("ev.pid", "u32")
PORT = M.CVar("ev.dport", "u16")
PID_EQ = M.CCompare("==", PID, M.COption("pid", "u32", False))
PORT_IN = M.CIn(PORT, M.COption("port", "u16", True))
PORT_NOT_IN = M.CIn(PORT, M.COption("port", "u16", True), negate=True)
FILTER = M.CBool("&&", (PID_EQ, PORT_IN))

# --- bind_expr on hand-built trees ------------------------------------------------------------


def test_unset_options_drop_out() -> None:
    assert bind_expr(FILTER, {}) == M.CTrue()
    assert bind_expr(FILTER, {"pid": None, "port": None}) == M.CTrue()


def test_set_option_becomes_typed_constant() -> None:
    assert bind_expr(PID_EQ, {"pid": 1234}) == M.CCompare("==", PID, M.CNum(1234, "u32"))


def test_one_remaining_term_is_unwrapped() -> None:
    assert bind_expr(FILTER, {"pid": 7}) == M.CCompare("==", PID, M.CNum(7, "u32"))
    bound = bind_expr(FILTER, {"port": [80]})
    assert bound == M.CIn(PORT, (M.CNum(80, "u16"),))


def test_both_set_keeps_the_and() -> None:
    bound = bind_expr(FILTER, {"pid": 1, "port": [80, 443]})
    assert bound == M.CBool(
        "&&",
        (
            M.CCompare("==", PID, M.CNum(1, "u32")),
            M.CIn(PORT, (M.CNum(80, "u16"), M.CNum(443, "u16"))),
        ),
    )
    assert render.c_expr(bound) == "((ev.pid == 1U) && (ev.dport == 80U || ev.dport == 443U))"


def test_not_in_option_keeps_its_negation() -> None:
    bound = bind_expr(PORT_NOT_IN, {"port": [22]})
    assert render.c_expr(bound) == "(!(ev.dport == 22U))"
    assert bind_expr(PORT_NOT_IN, {}) == M.CTrue()


def test_terms_without_options_stay() -> None:
    fixed = M.CCompare("!=", PID, M.CNum(0, "u32"))
    tree = M.CBool("&&", (fixed, PID_EQ))
    assert bind_expr(tree, {}) == fixed
    assert bind_expr(fixed, {"pid": 5}) == fixed


def test_other_options_do_not_leak_in() -> None:
    assert bind_expr(PID_EQ, {"port": [80], "uid": 0}) == M.CTrue()


LITERAL = r"\(-\d+(?:LL)?(?: - 1)?\)|-?\d+(?:ULL|LL|U)?"


@pytest.mark.parametrize("ctype", ["u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64"])
def test_option_values_reach_c_only_as_integers(ctype: str) -> None:
    lo, hi = ctype_range(ctype)
    var = M.CVar("ev.x", ctype)
    single = M.CCompare("==", var, M.COption("x", ctype, False))
    many = M.CIn(var, M.COption("xs", ctype, True))
    tree = M.CBool("&&", (single, many))
    edges = sorted({lo, lo + 1, 0, 1, hi - 1, hi})
    for value in edges:
        text = render.c_expr(bind_expr(tree, {"x": value, "xs": edges}))
        rest = re.sub(LITERAL, "N", text.replace("ev.x", "X"))
        assert set(rest) <= set("XN =|&()! "), text
        assert rest.count("N") == 1 + len(edges), text
    # a bool given for a number is emitted as the same integer literal as 1
    as_bool = render.c_expr(bind_expr(single, {"x": True}))
    assert as_bool == render.c_expr(bind_expr(single, {"x": 1}))


# --- bind() on the real tcpconnect plan --------------------------------------------------------


@pytest.fixture(scope="module")
def plan() -> M.Plan:
    from engine.plan import planner
    from engine.spec.loader import load_document

    return planner.plan(load_document(str(ROOT / "specs" / "tcpconnect.yaml")), BTF)


def steps(program: M.Program) -> list[M.Step]:
    return [s for p in program.probes for s in (*p.alternative.steps, *p.pre, *p.post)]


def kinds(program: M.Program) -> set[str]:
    return {s.kind for s in steps(program)}


def test_dport_is_swapped_once_and_filtered_in_host_order(plan: M.Plan) -> None:
    for index in range(2):
        program = bind(plan, options={"port": [80, 443]}, choices={"connect": index})
        stores = [s for s in steps(program) if isinstance(s, M.Store) and s.dest == ev("dport")]
        assert [s.swap for s in stores] == [16]
        text = render.render_c(program)
        assert re.search(ev("dport") + r" = __builtin_bswap16\(v\d+\);", text)
        assert f"({ev('dport')} == 80U || {ev('dport')} == 443U)" in text
        assert "20480" not in text  # htons(80): the filter never compares network order


def test_unset_options_leave_no_filter(plan: M.Plan) -> None:
    for index in range(2):
        program = bind(plan, choices={"connect": index})
        assert program.probes[0].filter == M.CTrue()
        assert f"{ev('pid')} ==" not in render.render_c(program)


def test_set_options_become_typed_constants(plan: M.Plan) -> None:
    program = bind(plan, options={"pid": 1234, "uid": 0, "port": None})
    assert program.probes[0].filter == M.CBool(
        "&&",
        (
            M.CCompare("==", M.CVar(ev("pid"), "u32"), M.CNum(1234, "u32")),
            M.CCompare("==", M.CVar(ev("uid"), "u32"), M.CNum(0, "u32")),
        ),
    )


def test_filter_fields_are_computed_before_the_filter(plan: M.Plan) -> None:
    probe = bind(plan, options={"pid": 1, "uid": 0, "port": [80]}).probes[0]
    assert {s.dest for s in probe.pre} >= {ev("pid"), ev("uid"), ev("dport")}
    assert not {s.dest for s in probe.post} & {ev("pid"), ev("uid"), ev("dport")}
    assert ev("comm") in {s.dest for s in probe.post}
    # only what the bound filter still reads comes first: with -p alone, the pid
    only_pid = bind(plan, options={"pid": 1}).probes[0]
    assert {s.dest for s in only_pid.pre if s.dest.startswith("ev.")} == {ev("pid")}


@pytest.mark.parametrize("index", [0, 1])
def test_count_mode_reads_only_the_key(plan: M.Plan, index: int) -> None:
    events = bind(plan, choices={"connect": index})
    count = bind(plan, count=True, choices={"connect": index})
    assert "comm" in kinds(events)
    assert "comm" not in kinds(count)  # no comm read in tcpconnect -c
    assert "ktime_ns" not in {getattr(s, "which", "") for s in steps(count)}
    dests = {s.dest for s in steps(count)}
    assert {ev("saddr"), ev("daddr"), ev("dport")} <= dests
    assert not dests & {ev("comm"), ev("time"), ev("ip")}
    assert f"__builtin_memcpy(&key.{ev('dport')[3:]}" in render.render_c(count)


def test_count_mode_without_options_skips_dropped_filter_fields(plan: M.Plan) -> None:
    count = bind(plan, count=True)
    assert not {s.dest for s in steps(count)} & {ev("uid"), ev("pid")}


# --- every generated local is declared before use: an oracle that reads the C ----------------


def test_the_local_oracle_can_fail() -> None:
    good = "int f(void *ctx)\n{\n    u64 v1 = 0;\n    if (v1) {\n        u8 v2 = v1;\n    }\n}\n"
    assert local_problems(good) == []
    used_first = good.replace("u64 v1 = 0;", "u64 v3 = v1;")
    assert local_problems(used_first) == [
        "f:1: v1 used before its declaration:     u64 v3 = v1;",
        "f:2: v1 used before its declaration:     if (v1) {",
        "f:3: v1 used before its declaration:         u8 v2 = v1;",
    ]
    out_of_block = good.replace("    }\n}", "    }\n    ev.x = v2;\n}")
    assert local_problems(out_of_block) == ["f:5: v2 used before its declaration:     ev.x = v2;"]
    twice = good.replace("u8 v2 = v1;", "u8 v1 = 2;")
    assert local_problems(twice) == ["f:3: v1 declared again:         u8 v1 = 2;"]


SPECS = offline(sorted((ROOT / "specs").glob("*.yaml"))) + sorted(
    (ROOT / "tests" / "specs" / "good").glob("*.yaml")
)


def every_option_set(plan: M.Plan) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for o in plan.options:
        if o.ctype == "bool":
            values[o.name] = True
        elif o.ctype == "str":
            values[o.name] = "x"
        elif o.ctype == "inet":
            values[o.name] = "::1"
        elif o.ctype == "pinned_map":
            values[o.name] = "/sys/fs/bpf/engine-test-set"
        else:
            values[o.name] = [1, 2] if o.is_list else 3
    return values


@pytest.mark.parametrize("path", SPECS, ids=[f"{p.parent.name}/{p.name}" for p in SPECS])
def test_every_step_local_is_defined_before_use(path: pathlib.Path) -> None:
    """Each spec, alternative and mode, with no option and with every option given."""
    from engine.plan import planner
    from engine.spec.loader import load_document

    plan = planner.plan(load_document(str(path)), BTF)
    width = max(len(p.alternatives) for p in plan.probes)
    for index in range(width):
        choices = {p.name: min(index, len(p.alternatives) - 1) for p in plan.probes}
        for count in (False, True) if plan.counted else (False,):
            for opts in ({}, every_option_set(plan)):
                program = bind(plan, count=count, options=opts, choices=choices)
                c = render.render_c(program)
                assert local_problems(c) == [], (index, count, opts)


def test_choices_pick_the_alternative(plan: M.Plan) -> None:
    first = bind(plan).probes[0].alternative
    second = bind(plan, choices={"connect": 1}).probes[0].alternative
    assert (first.kind, second.kind) == ("kretprobe", "tracepoint")
    assert first.stash == (("a0", 0),) and second.stash == ()
    with pytest.raises(ValueError):
        bind(M.Plan("x", "", (), (), (), plan.event, ()), count=True)


TWO_STASHES = """\
name: t
probes:
  - name: a
    attach:
      - kretprobe: tcp_v4_connect
      - tracepoint: sock/inet_sock_set_state
        let:
          sk: args.skaddr as sock
    fields:
      x: sk.__sk_common.skc_family
  - name: b
    attach:
      - kretprobe: tcp_v6_connect
      - tracepoint: sock/inet_sock_set_state
        let:
          sk: args.skaddr as sock
    fields:
      x: sk.__sk_common.skc_family
output:
  columns: [x]
"""


def test_state_counters_cover_every_index_in_use() -> None:
    """engine_state_keys is indexed by StateMap.index, which counts the plan's maps: with
    probe a on its tracepoint, stash_a is left out, and stash_b (index 1) still needs
    counters 2 and 3 (the array was once sized by the maps in use: 2, and stash_b's counts
    went nowhere and its read at exit failed)."""
    from engine.plan import planner
    from engine.spec.loader import load_text

    plan = planner.plan(load_text(TWO_STASHES, "t.yaml"), BTF)
    program = bind(plan, choices={"a": 1, "b": 0})
    assert [(st.name, st.index) for st in program.states] == [("stash_b", 1)]
    assert program.state_counters == 4
    c = render.render_c(program)
    assert "BPF_PERCPU_ARRAY(engine_state_keys, u64, 4);" in c
    assert "count_key(2);" in c and "count_key(3);" in c
