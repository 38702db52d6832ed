"""engine.plan.passes: each pass on its own, over a Context, against the committed BTF
fixture (hermetic). The whole planner's behaviour is the other tests' (and the goldens')."""

from __future__ import annotations

import pathlib

import pytest

from engine.plan import passes, planner
from engine.plan.passes import attach, fields, limits, names, outputs, resolve
from engine.plan.passes.context import Context
from engine.spec import model as S
from engine.spec.loader import load_text

FIXTURE = str(
    pathlib.Path(__file__).resolve().parents[2] / "tests/fixtures/btf/linux-6.18.44-fc.btf.xz"
)
SPEC = """\
name: t
options:
  port: {flag: -P/--port, type: u16}
  wide: {type: bool}
state:
  start: {key: u32, value: u64}
probes:
  - name: p
    attach:
      - kprobe: [tcp_v4_connect]
      - tracepoint: sock/inet_sock_set_state
        let:
          sk: args.skaddr as sock
    fields:
      dport: {value: sk.__sk_common.skc_dport, decode: be16}
      comm: comm
    filter: dport == $port
    store:
      start: {key: tid, value: ktime_ns}
output:
  columns: [dport, {field: comm, if: wide}]
  aggregations:
    - hist: dport
      by: [comm]
"""


def context(text: str = SPEC) -> Context:
    return Context(
        S.build(load_text(text, "t.yaml")), planner.load_btf(FIXTURE), False, planner.layout
    )


def run(ctx: Context, *steps: passes.Pass) -> Context:
    for step in steps:
        step(ctx)
    return ctx


def said(ctx: Context) -> list[tuple[int, int, str]]:
    return [(p.location.line, p.location.col, p.message) for p in ctx.problems]


def test_the_passes_run_in_order() -> None:
    assert passes.PASSES[:5] == (names.run, attach.run, resolve.run, outputs.run, limits.run)
    ctx = run(context(), *passes.PASSES)
    assert ctx.problems == [] and [p.name for p in ctx.probes if p] == ["p"]


def test_names_plans_options_and_states() -> None:
    ctx = run(context(), names.run)
    assert ctx.options["port"].short == "-P" and ctx.options["wide"].long == "--wide"
    assert list(ctx.states) == ["start"] and ctx.problems == []


def test_names_refuses_an_engine_flag_and_a_second_probe_name() -> None:
    text = SPEC.replace("-P/--port", "-c/--port") + ""
    text = text.replace(
        "  - name: p\n", "  - name: p\n    attach: [{tracepoint: a/b}]\n  - name: p\n", 1
    )
    ctx = run(context(text), names.run)
    assert said(ctx) == [
        (3, 16, "option flag -c is the engine's own; pick another"),
        (10, 11, "probe name 'p' is already used by probe 1"),
    ]


def test_attach_resolves_each_alternative_and_locates_a_missing_function() -> None:
    ctx = run(context(), attach.run)
    kprobe, tracepoint = ctx.targets[0, 0], ctx.targets[0, 1]
    assert kprobe is not None and kprobe[:2] == ("kprobe", ("tcp_v4_connect",))
    assert "sk" in kprobe[2].params
    assert tracepoint is not None and tracepoint[0] == "tracepoint"
    ctx = run(context(SPEC.replace("[tcp_v4_connect]", "[tcp_v4_connect, no_such_fn]")), attach.run)
    assert ctx.targets[0, 0] is None
    ((line, col, message),) = said(ctx)
    assert (line, col) == (10, 34) and message.startswith("no kernel function 'no_such_fn'")


def test_resolve_plans_every_alternative_and_the_filter() -> None:
    ctx = run(context(), names.run, attach.run, resolve.run)
    (probe,) = ctx.probes
    assert probe is not None and [a.kind for a in probe.alternatives] == ["kprobe", "tracepoint"]
    assert list(ctx.fields) == ["dport", "comm"]
    assert probe.alternatives[0].filter_fields == ("dport",)


def test_fields_decode_and_say_what_does_not_fit() -> None:
    ctx = run(context(), names.run, attach.run, resolve.run)
    dport = ctx.fields["dport"]
    assert (dport.ctype, dport.decoder, dport.header) == ("u16", "int", "DPORT")
    text = SPEC.replace("decode: be16", "decode: be32")
    ctx = run(context(text), names.run, attach.run, resolve.run)
    assert any("needs a 4-byte integer" in m for _, _, m in said(ctx))
    assert ctx.probes == [None]


def test_fields_merge_refuses_two_types_for_one_field() -> None:
    ctx = context()
    at = ctx.spec.probes[0].fields[0].at
    got: dict[str, planner.M.Field] = {}
    first = planner.M.Field("x", "u16", 0, "int", "X", 5)
    fields.merge_field(ctx, got, first, at)
    fields.merge_field(ctx, got, planner.M.Field("x", "u32", 0, "int", "X", 5), at)
    assert got == {"x": first} and "every alternative and probe" in ctx.problems[-1].message


def test_outputs_plans_columns_and_aggregations() -> None:
    ctx = run(context(), names.run, attach.run, resolve.run, outputs.run)
    assert [(c.field, c.option) for c in ctx.columns] == [("dport", ""), ("comm", "wide")]
    (hist,) = ctx.aggregations
    assert (hist.kind, hist.value, [c.field for c in hist.by]) == ("log2", "dport", ["comm"])


def test_outputs_says_a_column_switch_is_not_a_bool() -> None:
    ctx = run(context(SPEC.replace("if: wide", "if: port")), names.run, attach.run,
              resolve.run, outputs.run)  # fmt: skip
    assert said(ctx) == [(21, 38, "`if` needs a bool option; 'port' is not one")]


def test_limits_says_a_state_map_nothing_stores_into() -> None:
    text = SPEC.replace("state:\n", "state:\n  never: {key: u32, value: u64}\n")
    ctx = run(context(text), *passes.PASSES)
    ((line, col, message),) = said(ctx)
    assert (line, col) == (6, 3) and message.startswith("state 'never' is never stored into")


def test_limits_warns_of_an_option_nothing_uses() -> None:
    ctx = run(context(SPEC.replace("if: wide", "header: C")), *passes.PASSES)
    assert ctx.problems == []
    ((warning),) = ctx.warnings
    assert warning.severity == "warning" and "option 'wide'" in warning.message


def test_limits_checks_the_finished_plan_for_the_stack() -> None:
    ctx = context()
    plan = planner.plan_context(ctx)
    limits.check_stack(ctx, plan)
    assert ctx.problems == []
    assert limits.STACK_LIMIT == 512


@pytest.mark.parametrize("step", passes.PASSES)
def test_every_pass_has_a_docstring_or_its_module_does(step: passes.Pass) -> None:
    module = __import__(step.__module__, fromlist=["_"])
    assert module.__doc__
