"""Fixtures every test folder shares: the committed kernel BTF and a synthetic one, and the
guarantee that no process a test started (with `procs.spawn`) outlives it.

pytest puts this folder on sys.path (rootdir-relative "prepend" import mode), so test modules
import the helpers beside it: `from btf_fixture import BTF`, `import btfwriter`.
"""

from __future__ import annotations

from pathlib import Path

import btfwriter
import pytest
from btf_fixture import BTF
from procs import (  # noqa: F401  (pytest finds the fixture and hooks by their names here)
    no_process_outlives_its_test,
    pytest_configure,
    pytest_sessionfinish,
)


@pytest.fixture(scope="session")
def fixture_btf() -> str:
    """Path of the committed 6.18 BTF fixture, as `--btf` takes it."""
    return BTF


@pytest.fixture(scope="session")
def synthetic_btf(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of btfwriter's synthetic kernel: other offsets than any real kernel's."""
    path: Path = tmp_path_factory.mktemp("btf") / "synthetic.btf"
    path.write_bytes(btfwriter.synthetic_kernel())
    return str(path)
