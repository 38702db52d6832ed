"""Every YAML spec shown in README.md and docs/spec.md's seed section validates: the examples a
new user copies first must stay true as the engine changes."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest

from engine.kernel.btf import VMLINUX
from engine.verbs.validate import validate_path

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^( *)```yaml\n(.*?)^\1```", re.S | re.M)


def readme_specs() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = [textwrap.dedent(m.group(2)) for m in BLOCK.finditer(text)]
    return [b for b in blocks if b.lstrip("# \n").startswith(("name:", "yaml-language-server"))]


@pytest.mark.skipif(not os.path.exists(VMLINUX), reason=f"no kernel BTF at {VMLINUX}")
@pytest.mark.parametrize("index", range(len(readme_specs())))
def test_readme_spec_validates(index: int, tmp_path: Path) -> None:
    spec = tmp_path / f"readme-{index}.yaml"
    spec.write_text(readme_specs()[index])
    assert [p.format() for p in validate_path(str(spec), None)] == []


def test_readme_has_its_examples() -> None:
    assert len(readme_specs()) == 2  # the first spec and the tutorial's
