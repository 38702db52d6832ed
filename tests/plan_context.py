"""A Context over a small spec and the committed BTF fixture, for the tests of each planner
pass (tests/unit/test_pass_*.py)."""

from __future__ import annotations

import pathlib

from engine.plan import passes
from engine.plan.layout import load_btf
from engine.plan.passes.context import Context
from engine.spec import model as S
from engine.spec.loader import load_text

FIXTURE = str(
    pathlib.Path(__file__).resolve().parents[1] / "tests/fixtures/btf/linux-6.18.44-fc.btf.xz"
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
    return Context(S.build(load_text(text, "t.yaml")), load_btf(FIXTURE), False)


def run(ctx: Context, *steps: passes.Pass) -> Context:
    for step in steps:
        step(ctx)
    return ctx


def said(ctx: Context) -> list[tuple[int, int, str]]:
    return [(p.location.line, p.location.col, p.message) for p in ctx.problems]
