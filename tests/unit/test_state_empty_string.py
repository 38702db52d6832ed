"""A string member of a state value may be stored as "" (left empty: the value starts zeroed),
as mountsnoop's umount stores no source or type; any other constant string is refused there."""

from __future__ import annotations

import pytest

from engine.codegen import render
from engine.errors import SpecError
from engine.plan import planner
from engine.plan.bind import bind
from engine.spec.loader import load_text
from tests.unit.test_print_units import BTF

SPEC = """\
name: t
state:
  s: {key: u32, value: {name: "str[16]", n: u64}}
probes:
  - name: a
    attach: [tracepoint: sched/sched_process_fork]
    store:
      s: {key: tid, value: {name: 'VALUE', n: ktime_ns}}
  - name: b
    attach: [tracepoint: sched/sched_process_exit]
    let:
      st: take(s, tid)
    fields:
      name: {value: st.name, decode: str}
      n: st.n
output:
  columns: [name, n]
"""


def test_the_empty_string_leaves_the_member_empty() -> None:
    c = render.render_c(bind(planner.plan(load_text(SPEC.replace("VALUE", '""'), "t.yaml"), BTF)))
    put = c[c.index("__builtin_memset") :]
    assert "f_name" not in put.split(".insert(")[0]  # nothing is copied into it
    assert "f_n = " in put


def test_another_constant_is_refused() -> None:
    with pytest.raises(SpecError) as info:
        planner.plan(load_text(SPEC.replace("VALUE", '"x"'), "t.yaml"), BTF)
    assert 'a string member takes "" (empty) as its only constant' in str(info.value)
