"""Rendered C and decoders compared with the golden files in tests/golden/.

The golden files are planned against the committed BTF fixture (tests/fixtures/btf/), so they
run, and mean the same, on every machine. After an intended change to the planner, bind or the
templates, `make golden` (python -m tests.golden.regenerate), review the diff, and commit it
with the change. tests/kernel/test_golden_live.py says when the running kernel plans otherwise.
"""

from __future__ import annotations

import difflib
import importlib.util
import pathlib
import sys
from types import ModuleType

import pytest

from engine.plan import model as M

ROOT = pathlib.Path(__file__).resolve().parents[2]


def ev(name: str) -> str:
    """A field's event slot as generated C names it (fields are prefixed: `ev.f_pid`)."""
    slot = getattr(M, "slot_name", lambda n: n)
    return f"ev.{slot(name)}"


def _regenerate() -> ModuleType:
    """tests/golden/regenerate.py, loaded by path (tests/ is not a package)."""
    path = ROOT / "tests" / "golden" / "regenerate.py"
    spec = importlib.util.spec_from_file_location("golden_regenerate", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("golden_regenerate", module)
    spec.loader.exec_module(module)
    return module


regen = _regenerate()


@pytest.fixture(scope="module")
def fresh() -> dict[str, str]:
    return dict(regen.renders())


def test_every_golden_file_is_rendered(fresh: dict[str, str]) -> None:
    on_disk = {p.name for p in regen.golden_files()}
    assert sorted(on_disk) == sorted(fresh), "run `make golden`: the set of outputs changed"


def test_golden_set_covers_every_alternative_and_mode(fresh: dict[str, str]) -> None:
    assert {"tcpconnect.1.events.c", "tcpconnect.1.count.c", "tcpconnect.2.events.c",
            "tcpconnect.2.count.c", "icmp.1.events.c", "icmp.2.events.c",
            "tcpconnect.decoder.py", "icmp.decoder.py"} <= set(fresh)  # fmt: skip


@pytest.mark.parametrize("name", [p.name for p in regen.golden_files()])
def test_render_matches_golden(name: str, fresh: dict[str, str]) -> None:
    want = (regen.HERE / name).read_text(encoding="utf-8")
    got = fresh.get(name)
    assert got is not None, f"{name} is no longer rendered; run `make golden`"
    if got != want:
        diff = "".join(
            difflib.unified_diff(
                want.splitlines(True), got.splitlines(True), f"golden/{name}", "fresh", n=2
            )
        )
        pytest.fail(f"{name} differs from its golden file (`make golden` if intended):\n{diff}")


def test_goldens_carry_the_option_constants(fresh: dict[str, str]) -> None:
    """The fixed options show as typed constants, ports in host order after a bswap16."""
    for name in ("tcpconnect.1.events.c", "tcpconnect.2.count.c"):
        text = fresh[name]
        pid, dport = ev("pid"), ev("dport")
        assert f"({pid} == 1234U)" in text
        assert f"({dport} == 80U || {dport} == 443U)" in text
        assert f"{dport} = __builtin_bswap16(" in text
        assert "$" not in text
