"""The running kernel against the golden files' BTF fixture.

The golden files are planned against a committed 6.18 BTF (tests/fixtures/btf/). This says,
on the machine at hand, whether its own kernel plans the same C: a difference is not a bug,
but it tells which offsets or enum values moved, so a user reading a golden file knows.
"""

from __future__ import annotations

import difflib
import importlib.util
import pathlib
import sys
from types import ModuleType

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
VMLINUX = pathlib.Path("/sys/kernel/btf/vmlinux")


def _regen() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "golden_regenerate", ROOT / "tests" / "golden" / "regenerate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("golden_regenerate", module)
    spec.loader.exec_module(module)
    return module


def test_live_kernel_plans_like_the_fixture_or_says_how_it_differs() -> None:
    if not VMLINUX.exists():
        pytest.fail(f"{VMLINUX} is missing: the kernel tests need kernel BTF")
    regen = _regen()
    fixture = dict(regen.renders())
    live = dict(regen.renders(btf=None))
    assert sorted(live) == sorted(fixture)
    differing = {n for n in fixture if fixture[n] != live[n]}
    for name in sorted(differing):
        diff = difflib.unified_diff(
            fixture[name].splitlines(True), live[name].splitlines(True), "fixture", "live", n=0
        )
        print(f"{name} differs on this kernel:\n{''.join(list(diff)[:40])}")
    # Whatever the offsets, every C file has the same shape: same functions, same maps.
    for name in fixture:
        if name.endswith(".c"):
            shape = [ln for ln in fixture[name].splitlines() if ln.startswith(("int ", "BPF_"))]
            lshape = [ln for ln in live[name].splitlines() if ln.startswith(("int ", "BPF_"))]
            assert shape == lshape, name
