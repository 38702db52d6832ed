"""tests/specs/bad specs marked `# live:`: their problems need the running kernel (syscalls/*
records come from its tracefs, which a BTF file does not have), so they are validated here,
as root, against the live kernel, and must say exactly their `# expect:` lines
(tests/unit/test_spec_folders.py checks the others against the BTF fixture)."""

from __future__ import annotations

import os
import pathlib

import pytest

from engine.verbs.validate import validate_path
from tests.unit.test_spec_folders import LIVE_BAD, expectations, short

pytestmark = pytest.mark.kernel


@pytest.mark.skipif(os.geteuid() != 0, reason="tracefs's syscalls/* formats need root")
@pytest.mark.parametrize("path", LIVE_BAD, ids=[p.name for p in LIVE_BAD])
def test_live_bad_spec(path: pathlib.Path) -> None:
    expected = expectations(path)
    assert expected, f"{path.name} has no '# expect:' line"
    assert sorted(short(p) for p in validate_path(str(path), None)) == sorted(expected)


def test_there_are_live_bad_specs() -> None:
    assert LIVE_BAD
