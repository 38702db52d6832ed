"""engine.attach: every attach kind is one registry entry, and every stage finds what it needs.

The spec schema's attach keys, the template partials, the capability probes and bcc's
program types all come from (or are checked against) the registry, so a kind added to one
place and forgotten in another fails here, not in a user's run.
"""

from __future__ import annotations

import json
import pathlib

import pytest

from engine.attach import KINDS, ArgAccess, Target
from engine.kernel import capabilities

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_schema_attach_keys_are_the_registry() -> None:
    schema = json.loads((ROOT / "engine" / "spec.schema.json").read_text())
    attach = schema["$defs"]["attach"]
    keys = set(attach["properties"]) - {"let", "where"}
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
        assert kind.target is Target.FUNCTION


def test_bcc_keywords() -> None:
    assert KINDS["tracepoint"].bcc_kwargs("f", "sock:x") == {"fn_name": "f", "tp": "sock:x"}
    assert KINDS["kprobe"].bcc_kwargs("f", "tcp_v4_connect") == {
        "fn_name": "f",
        "event": "tcp_v4_connect",
    }
    assert KINDS["fentry"].bcc_kwargs("kfunc__vmlinux__x", "x") == {"fn_name": "kfunc__vmlinux__x"}
