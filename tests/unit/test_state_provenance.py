"""What state members hold: a user-space pointer stored into one is still one when read back,
computed on, or stored on into another map (engine.plan.resolve.Provenance). The planner's
located error on a cast of such a value needs syscalls/* records (the live kernel's tracefs):
tests/specs/bad/state_user_pointer.yaml, checked by tests/kernel/test_bad_live_specs.py."""

from __future__ import annotations

from engine.plan.state import user_pointer_message
from engine.plan.values import Provenance


def test_a_user_pointer_flows_through_stores_in_any_order_and_cycles() -> None:
    p = Provenance()
    p.flows["b.value"] = {"a.p"}  # b stores what it read from a.p
    p.flows["c.q"] = {"b.value", "c.q"}  # and c from b, and from itself
    assert p.user_pointer(["c.q"]) is None  # nothing stored a user pointer yet
    p.user["a.p"] = "const char *"  # a store found later in the spec
    assert p.user_pointer(["x.y", "c.q"]) == ("c.q", "const char *")
    assert p.user_pointer(["a.q"]) is None


def test_the_message_names_the_member() -> None:
    assert user_pointer_message("start.fname", "const char *").startswith(
        "'fname' comes from state 'start', which holds a user-space pointer (stored from a "
        "'const char *')"
    )
    assert user_pointer_message("again.value", "const char *").startswith(
        "state 'again' holds a user-space pointer"
    )
