"""`unless:` on an aggregation takes a list, as `if:` does: any of the switches given turns
it off (syscount-style variants without a chain of single-switch copies)."""

from __future__ import annotations

from engine.plan import planner
from engine.plan.bind import active
from engine.spec.loader import load_text
from tests.unit.test_print_units import BTF

SPEC = """\
name: t
options:
  a: {flag: -a, type: bool}
  b: {flag: -b, type: bool}
probes:
  - name: p
    attach:
      - tracepoint: sock/inet_sock_set_state
    fields:
      port: args.sport
output:
  aggregations:
    - {name: plain, count: true, by: [port], unless: [a, b]}
    - {name: one, count: true, by: [port], unless: a}
"""


def test_any_switch_of_the_list_turns_it_off() -> None:
    plan = planner.plan(load_text(SPEC, "t.yaml"), BTF)
    plain, one = plan.aggregations
    assert plain.unless == ("a", "b") and one.unless == ("a",)
    for values, want in (({}, True), ({"a": True}, False), ({"b": True}, False)):
        assert active(plain, False, values) is want
    assert active(one, False, {"b": True}) is True
