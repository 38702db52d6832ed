"""Every test in tests/kernel carries the `kernel` marker, so `-m "not kernel"` leaves out all
that needs root or the running kernel (three files once had none: the review of issue 18).

The marker comes from the module's `pytestmark` or the test's own decorators; a test that needs
neither root nor the kernel is named in UNMARKED, with the reason."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
KERNEL_TESTS = ROOT / "tests" / "kernel"
UNMARKED = {
    # a usage error, raised before anything loads: runs everywhere
    "test_run_alternative.py::test_out_of_range_is_a_usage_error_before_anything_loads",
}


def _marks_kernel(node: ast.expr) -> bool:
    """`pytest.mark.kernel` anywhere in the expression (a list, a call's arguments)."""
    return any(
        isinstance(n, ast.Attribute)
        and n.attr == "kernel"
        and isinstance(n.value, ast.Attribute)
        and n.value.attr == "mark"
        for n in ast.walk(node)
    )


def unmarked_tests(source: str, filename: str) -> list[str]:
    """`FILE::TEST` for every test function in `source` without the kernel marker."""
    tree = ast.parse(source)
    for stmt in tree.body:
        named = isinstance(stmt, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in stmt.targets
        )
        if named and _marks_kernel(stmt.value):  # type: ignore[attr-defined]
            return []
    return [
        f"{filename}::{f.name}"
        for f in tree.body
        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
        and f.name.startswith("test")
        and not any(_marks_kernel(d) for d in f.decorator_list)
    ]


def test_the_check_finds_a_file_without_the_marker() -> None:
    bare = "import pytest\n\ndef test_a():\n    pass\n"
    assert unmarked_tests(bare, "f.py") == ["f.py::test_a"]
    module = "import pytest\n\npytestmark = [pytest.mark.kernel]\n\ndef test_a():\n    pass\n"
    assert unmarked_tests(module, "f.py") == []
    other = "import pytest\n\npytestmark = pytest.mark.vm\n\ndef test_a():\n    pass\n"
    assert unmarked_tests(other, "f.py") == ["f.py::test_a"]
    per_test = "import pytest\n\n@pytest.mark.kernel\ndef test_a():\n    pass\n"
    assert unmarked_tests(per_test, "f.py") == []


def test_every_kernel_test_is_marked() -> None:
    found = [
        name
        for path in sorted(KERNEL_TESTS.glob("test_*.py"))
        for name in unmarked_tests(path.read_text(encoding="utf-8"), path.name)
    ]
    assert sorted(set(found) - UNMARKED) == []
    assert set(found) >= UNMARKED, "an UNMARKED entry is marked now (or gone): drop it"
