"""The running kernel against the golden files' BTF fixture.

The golden files are planned against a committed 6.18 BTF (tests/fixtures/btf/). On the
machine at hand, its own kernel must plan the same C and decoders up to integer literals:
offsets, sizes and enum values may move between kernels, anything else (another statement,
another map, a field read another way) fails with the diff. On the fixture's own kernel
release the files must be byte-identical.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import pathlib
import re
import sys
from types import ModuleType

import pytest

pytestmark = pytest.mark.kernel

ROOT = pathlib.Path(__file__).resolve().parents[2]
VMLINUX = pathlib.Path("/sys/kernel/btf/vmlinux")
NUMBER = re.compile(r"\b(?:0x[0-9a-fA-F]+|\d+)\b")


def _regen() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "golden_regenerate", ROOT / "tests" / "golden" / "regenerate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("golden_regenerate", module)
    spec.loader.exec_module(module)
    return module


def beyond_numbers(fixture: str, live: str) -> list[str]:
    """The diff lines (+/-) between two renders once every integer literal is masked: what
    differs in more than an offset, a size or an enum value."""
    a = [NUMBER.sub("N", line) for line in fixture.splitlines()]
    b = [NUMBER.sub("N", line) for line in live.splitlines()]
    diff = difflib.unified_diff(a, b, "fixture", "live", n=0, lineterm="")
    return [d for d in diff if d[:1] in "+-" and not d.startswith(("+++", "---"))]


def fixture_release() -> str:
    """The kernel release the committed fixture was taken from (linux-RELEASE.btf.xz)."""
    return pathlib.Path(_regen().FIXTURE).name.removeprefix("linux-").removesuffix(".btf.xz")


def test_beyond_numbers_sees_a_changed_statement_and_forgives_an_offset() -> None:
    c = "int p0(void *ctx) {\n    bpf_probe_read_kernel(&v, 2, (void *)p + 16);\n}\n"
    assert beyond_numbers(c, c.replace("+ 16", "+ 24").replace(", 2,", ", 4,")) == []
    moved = c.replace("bpf_probe_read_kernel", "bpf_probe_read_user")
    assert beyond_numbers(c, moved) == [
        "-    bpf_probe_read_kernel(&v, N, (void *)p + N);",
        "+    bpf_probe_read_user(&v, N, (void *)p + N);",
    ]
    assert beyond_numbers(c, c + "BPF_HASH(extra, u32, u64);\n") == ["+BPF_HASH(extra, u32, u64);"]


def test_live_kernel_plans_like_the_fixture_up_to_numbers() -> None:
    if not VMLINUX.exists():
        pytest.fail(f"{VMLINUX} is missing: the kernel tests need kernel BTF")
    regen = _regen()
    fixture = dict(regen.renders())
    live = dict(regen.renders(btf=None))
    assert sorted(live) == sorted(fixture)
    if os.uname().release.startswith(fixture_release()):
        differing = sorted(n for n in fixture if fixture[n] != live[n])
        assert differing == [], f"the fixture's own kernel renders these differently: {differing}"
    problems = {n: beyond_numbers(fixture[n], live[n]) for n in sorted(fixture)}
    report = "\n".join(f"{n}:\n" + "\n".join(d[:40]) for n, d in problems.items() if d)
    assert not report, f"this kernel plans another shape than the fixture:\n{report}"
