"""Every YAML example in README.md and docs/spec.md is true: the examples a new user copies
first must stay true as the engine changes.

A whole spec (README's first spec and tutorial) must validate against the committed BTF
fixture. docs/spec.md shows parts of the seed specs under a `### `specs/NAME.yaml`` heading:
each part must be what that spec says (a mapping of the spec holds every key the part shows,
with that value; a shown mapping may leave keys out, as the docs leave out `width`), and the
spec must validate.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from btf_fixture import BTF

from engine.verbs.validate import validate_path

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^( *)```yaml\n(.*?)^\1```", re.S | re.M)
HEADING = re.compile(r"^#+ .*$", re.M)
SPEC_HEADING = re.compile(r"^### `(specs/\w+\.yaml)`$")


def yaml_blocks(doc: str) -> list[tuple[str, str]]:
    """(the heading above it, the dedented text) of every ```yaml block of a document."""
    text = (ROOT / doc).read_text()
    out = []
    for m in BLOCK.finditer(text):
        headings = HEADING.findall(text, 0, m.start())
        out.append((headings[-1] if headings else "", textwrap.dedent(m.group(2))))
    return out


def is_spec(block: str) -> bool:
    return block.lstrip("# \n").startswith(("name:", "yaml-language-server"))


def readme_specs() -> list[str]:
    return [b for _, b in yaml_blocks("README.md") if is_spec(b)]


DOC_PARTS = [(h, b) for h, b in yaml_blocks("docs/spec.md") if not is_spec(b)]


@pytest.mark.parametrize("index", range(len(readme_specs())))
def test_readme_spec_validates(index: int, tmp_path: Path) -> None:
    spec = tmp_path / f"readme-{index}.yaml"
    spec.write_text(readme_specs()[index])
    assert [p.format() for p in validate_path(str(spec), BTF)] == []


def test_readme_has_its_examples() -> None:
    assert len(readme_specs()) == 2  # the first spec and the tutorial's
    assert all(is_spec(b) for _, b in yaml_blocks("README.md"))


DOC_SPECS = [b for _, b in yaml_blocks("docs/spec.md") if is_spec(b)]


def test_docs_examples_are_all_found() -> None:
    """docs/spec.md's yaml blocks: the two parts of the seed specs it explains, and the
    worked example of state and aggregations, the `metrics` example, the user-space probes'
    worked example, the sampling and stacks examples and the shared fields (whole specs)."""
    assert len(yaml_blocks("docs/spec.md")) == 8
    assert len(DOC_PARTS) == 2 and len(DOC_SPECS) == 6


@pytest.mark.parametrize("index", range(len(DOC_SPECS)))
def test_docs_spec_validates(index: int, tmp_path: Path) -> None:
    spec = tmp_path / f"docs-{index}.yaml"
    spec.write_text(DOC_SPECS[index])
    assert [p.format() for p in validate_path(str(spec), BTF)] == []


def shows(spec: Any, part: Any) -> bool:
    """`part` is `spec` with some mapping keys left out (lists and scalars are equal)."""
    if isinstance(part, dict):
        return isinstance(spec, dict) and all(
            k in spec and shows(spec[k], v) for k, v in part.items()
        )
    if isinstance(part, list):
        return isinstance(spec, list) and len(spec) == len(part) and all(map(shows, spec, part))
    return bool(spec == part and type(spec) is type(part))


def holders(tree: Any, part: dict[str, Any]) -> list[dict[str, Any]]:
    """The mappings in `tree` that show `part`."""
    found = []
    if isinstance(tree, dict):
        if shows(tree, part):
            found.append(tree)
        for v in tree.values():
            found += holders(v, part)
    elif isinstance(tree, list):
        for v in tree:
            found += holders(v, part)
    return found


@pytest.mark.parametrize(("heading", "block"), DOC_PARTS, ids=[h for h, _ in DOC_PARTS])
def test_docs_example_is_what_its_spec_says(heading: str, block: str) -> None:
    match = SPEC_HEADING.match(heading)
    assert match, (
        f"a docs/spec.md yaml example is not under a ### `specs/NAME.yaml` heading: {heading!r}"
    )
    spec = ROOT / match.group(1)
    part = yaml.safe_load(block)
    assert isinstance(part, dict) and part, block
    assert holders(yaml.safe_load(spec.read_text()), part), (
        f"{spec.name} has no mapping with all of docs/spec.md's example:\n{block}"
    )
    assert [p.format() for p in validate_path(str(spec), BTF)] == []
