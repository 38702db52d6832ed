"""Specs that plan only on the running kernel: a `# live:` line in the spec's first comment
block (syscalls/* records come from its tracefs, which the BTF fixture does not have). The
offline tests (the BTF fixture, the goldens, validation as nobody) leave them out;
tests/kernel/test_plan_live.py plans and renders them on the live kernel, as root."""

from __future__ import annotations

import pathlib
import re
from typing import Iterable

LIVE = re.compile(r"#\s*live:")


def needs_live_kernel(path: pathlib.Path | str) -> bool:
    """A `# live:` line in the spec's first comment block."""
    for line in pathlib.Path(path).read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            return False
        if LIVE.match(line):
            return True
    return False


def offline(paths: Iterable[pathlib.Path]) -> list[pathlib.Path]:
    """The specs of `paths` that plan against a BTF file alone."""
    return [p for p in paths if not needs_live_kernel(p)]
