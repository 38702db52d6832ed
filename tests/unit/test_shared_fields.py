"""Probes that share fields: YAML anchors, aliases and merge keys (engine.spec.loader), an
`x-NAME` top-level key to hold the anchors, and one field name with different integer types in
different probes (engine.plan.passes.fields.merge_field: C's common type)."""

from __future__ import annotations

import pytest

from engine.errors import SpecError
from engine.plan import planner
from engine.spec.loader import load_text
from engine.spec.schema import check_schema
from tests.unit.test_arith import FIXTURE

SHARED = """\
name: t
x-common: &common
  comm: comm
  pid: tgid
probes:
  - name: a
    attach:
      - tracepoint: sock/inet_sock_set_state
    fields:
      <<: *common
      flags: ktime_ns
    filter: flags > 0
  - name: b
    attach:
      - tracepoint: sched/sched_process_exit
    fields:
      <<: *common
      pid: tid
      flags: args.pid
output:
  columns: [pid, comm, flags]
"""


def test_merge_keys_copy_the_anchor_and_own_keys_win() -> None:
    doc = load_text(SHARED, "t.yaml")
    a, b = (p["fields"] for p in doc.data["probes"])
    assert a == {"comm": "comm", "pid": "tgid", "flags": "ktime_ns"}
    assert b == {"pid": "tid", "flags": "args.pid", "comm": "comm"}
    # a merged node is located where its text is: in the anchor
    assert doc.locate(("probes", 1, "fields", "comm")).line == 3
    assert doc.locate(("probes", 1, "fields", "pid")).line == 18  # its own key


def test_shared_fields_plan_with_the_common_integer_type() -> None:
    doc = load_text(SHARED, "t.yaml")
    assert check_schema(doc) == []
    plan = planner.plan(doc, FIXTURE)
    types = {f.name: f.ctype for f in plan.fields}
    # an s32 (sched_process_exit's pid_t) and a u64 in one slot, as mount's `u64 flags` and
    # umount's `int flags`: C's common type
    assert types["flags"] == "u64"
    assert types["pid"] == "u32"


def test_an_error_in_an_anchor_is_reported_at_its_text_for_each_use() -> None:
    text = SHARED.replace("  pid: tgid", "  pid: tgidd")
    with pytest.raises(SpecError) as info:
        planner.plan(load_text(text, "t.yaml"), FIXTURE)
    places = [(p.location.line, p.location.col, p.location.path) for p in info.value.problems]
    assert places == [(4, 8, "$.probes[0].fields.pid")]  # probe b has its own pid


def test_a_list_of_merges_the_first_wins() -> None:
    text = "name: t\nx-a: &a {k: 1, m: 2}\nx-b: &b {k: 3, n: 4}\nv:\n  <<: [*a, *b]\n"
    assert load_text(text, "t.yaml").data["v"] == {"k": 1, "m": 2, "n": 4}


def test_x_keys_hold_anything_and_other_unknown_keys_say_so() -> None:
    doc = load_text(SHARED.replace("x-common", "y-common"), "t.yaml")
    (problem,) = check_schema(doc)
    assert problem.message.startswith("unknown key 'y-common' at the top level;")
    assert problem.message.endswith("state or x-NAME (anchors to share)")


def test_differing_decoders_are_still_an_error() -> None:
    text = SHARED.replace("flags: ktime_ns\n", "flags: {value: ktime_ns, decode: hex}\n")
    with pytest.raises(SpecError) as info:
        planner.plan(load_text(text, "t.yaml"), FIXTURE)
    assert "every alternative and probe must give it the same type" in str(info.value)
