"""engine.plan.shapes: the program shapes a spec's options can produce, which the planner's
stack check and `engine validate --compile` both go through."""

from __future__ import annotations

import pathlib

import pytest
from c_locals import local_problems

from engine.plan import planner
from engine.plan.shapes import option_shapes
from engine.spec.loader import load_text
from engine.verbs import verify

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


TWO_SWITCHES = """\
name: t
options:
  slow: {flag: -s/--slow, type: bool}
  fast: {flag: -f/--fast, type: bool}
probes:
  - name: p
    attach:
      - tracepoint: sock/inet_sock_set_state
    fields:
      pid: tgid
      sport: args.sport
    filter: ($slow and sport / 2 > 5) and (not $fast and pid * 3 < 7)
output:
  columns: [pid, sport]
"""


def test_two_switches_compile_off_on_and_each_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """`validate --compile` compiles every shape two switches make: all off, all on, each on
    alone (issue 18: it compiled only the defaults, so `$slow and port / 2 > 5` validated and
    then failed to compile with -s). Each shape's C is its own program, every local declared."""
    plan = planner.plan(load_text(TWO_SWITCHES, "t.yaml"), FIXTURE)
    shapes = option_shapes(plan)
    assert [dict(s.values) for s in shapes] == [
        {},
        {"slow": True, "fast": True},
        {"slow": True},
        {"fast": True},
    ]
    compiled: list[str] = []

    def check_one(bcc: object, text: str, alt: object, tracing: object) -> tuple[bool, str]:
        compiled.append(text)
        return True, "ok"

    monkeypatch.setattr(verify, "check_one", check_one)
    monkeypatch.setattr(verify, "kfunc_style", lambda: "module")
    alt = plan.probes[0].alternatives[0]
    ok, _ = verify.check_shapes(None, plan, False, {"p": 0}, alt, shapes, {})
    assert ok and len(compiled) == 4  # four distinct programs, each compiled
    for text in compiled:
        assert local_problems(text) == []
    slow = [t for t in compiled if "ev.f_sport / " in t]
    fast_off = [t for t in compiled if "ev.f_pid * " in t]
    assert len(slow) == 2 and len(fast_off) == 2  # -s on in two shapes; -f off in two
