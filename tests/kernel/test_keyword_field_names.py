"""Field names are the user's, but the C struct members and ctypes attributes are generated
(`f_<name>`): names that are C or Python keywords or kernel macros still compile, load
through the verifier and decode."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from engine.codegen import render
from engine.plan import planner
from engine.spec.loader import load_document
from engine.verbs.verify import compile_check

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = """\
name: keywords
probes:
  - name: p
    attach:
      - tracepoint: sock/inet_sock_set_state
    fields:
      int: args.oldstate
      from: args.newstate
      current: tgid
      u8: args.dport
      return: comm
    filter: u8 in [1, 2] or int != 0
output:
  columns: [int, from, current, u8, return]
  count:
    by: [from]
"""


def test_keyword_field_names_compile_and_decode(tmp_path: Path) -> None:
    spec = tmp_path / "keywords.yaml"
    spec.write_text(SPEC)
    plan = planner.plan(load_document(str(spec)))
    decoder = render.load_decoder(plan)
    assert [f[0] for f in decoder.FIELDS] == ["int", "from", "current", "u8", "return"]
    out = io.StringIO()
    assert compile_check([str(spec)], out) == 0, out.getvalue()
    assert "verifier ok" in out.getvalue()
