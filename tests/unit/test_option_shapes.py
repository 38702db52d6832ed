"""engine.plan.shapes: the program shapes a spec's options can produce, which the planner's
stack check and `engine validate --compile` both go through."""

from __future__ import annotations

import pathlib

from engine.plan import planner
from engine.plan.shapes import option_shapes
from engine.spec.loader import load_text

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = str(ROOT / "tests" / "fixtures" / "btf" / "linux-6.18.44-fc.btf.xz")
SPEC = """\
name: t
options:
  wide: {flag: -w/--wide, type: bool}
  ms: {flag: --ms, type: bool}
  pid: {flag: -p, type: u32}
  name: {flag: -n, type: str}
  ports: {flag: -P, type: "list[u16]"}
probes:
  - name: p
    attach:
      - tracepoint: sock/inet_sock_set_state
    fields:
      pid: tgid
      comm: comm
      sport: args.sport
    filter: pid == $pid and comm == $name and sport in $ports
output:
  aggregations:
    - {name: a, count: true, by: [pid, {field: comm, if: wide}], unless: ms}
    - {name: b, sum: sport, by: [{field: comm, if: ms}], if: ms, unless: ms}
"""


def test_shapes() -> None:
    plan = planner.plan(load_text(SPEC, "t.yaml"), FIXTURE)
    shapes = option_shapes(plan)
    assert [s.label for s in shapes] == [
        "no options",
        "-w --ms -p 1 -n a -P 1,2,3,4,5,6,7,8,9",  # every option; a list past 8 values: a set
        "-w",
        "--ms",
        "-P 1",  # a list alone, one value: compared inline
        # aggregation a's widest key is -w alone (already there); b can never be on
    ]
    assert shapes[1].values == {
        "wide": True, "ms": True, "pid": 1, "name": "a", "ports": list(range(1, 10))
    }  # fmt: skip


def test_an_aggregation_whose_widest_key_needs_two_switches_is_a_shape() -> None:
    text = SPEC.replace(
        "by: [pid, {field: comm, if: wide}], unless: ms", "by: [{field: comm, if: wide}], if: ms"
    )
    plan = planner.plan(load_text(text, "t.yaml"), FIXTURE)
    assert "--ms -w" in [s.label for s in option_shapes(plan)]
