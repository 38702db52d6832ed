"""Every spec docs/bcc-tools.md names validates on the running kernel, as root.

tests/unit/test_bcc_tools_doc.py validates them against the committed BTF fixture, all but
those marked `# live:` (syscalls/* records come from the live kernel's tracefs, which a BTF
file does not have); here every one of them is validated against the running kernel, so those
are covered too."""

from __future__ import annotations

import os

import pytest

from engine.verbs.validate import validate_path
from tests.unit.test_bcc_tools_doc import NAMED, ROOT
from tests.unit.test_spec_folders import early_problems

pytestmark = pytest.mark.kernel


@pytest.mark.skipif(os.geteuid() != 0, reason="tracefs's syscalls/* formats need root")
@pytest.mark.parametrize("spec", NAMED)
def test_named_spec_validates_on_the_live_kernel(spec: str) -> None:
    path = ROOT / spec
    assert early_problems(path) == []
    assert validate_path(str(path), None) == []
