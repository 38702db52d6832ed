"""The `.pre-commit-hooks.yaml` hook, run by pre-commit itself on a temporary repository.

pre-commit installs this checkout (as a hook repository made from the working tree, so
uncommitted edits are what is tested) into its own virtualenv from PyPI, then runs
`engine validate` on the staged specs against a folder of kernel BTF: the matrix.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "tests" / "fixtures" / "btf"
PRE_COMMIT = Path(sys.executable).with_name("pre-commit")
HOOK_FILES = [".pre-commit-hooks.yaml", "pyproject.toml", "README.md", "engine", "templates"]

pytestmark = pytest.mark.skipif(
    not PRE_COMMIT.exists(), reason=f"needs pre-commit ({PRE_COMMIT}): pip install -e '.[test]'"
)


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    return subprocess.run(
        ["git", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", *args],
        cwd=cwd, env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def hook_repo(tmp: Path) -> tuple[Path, str]:
    """A git repository holding this working tree's hook definition and package."""
    repo = tmp / "hook-repo"
    repo.mkdir()
    for name in HOOK_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, repo / name)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "hook")
    return repo, git(repo, "rev-parse", "HEAD")


def test_hook_validates_staged_specs_on_every_kernel(tmp_path: Path) -> None:
    repo, rev = hook_repo(tmp_path)
    user = tmp_path / "user"
    (user / "specs").mkdir(parents=True)
    shutil.copytree(FIX, user / "kernels")
    shutil.copy(REPO / "specs/tcpconnect.yaml", user / "specs/tcpconnect.yaml")
    (user / "notes.yaml").write_text("not: a spec\n")  # outside specs/: not checked
    (user / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {repo}\n    rev: {rev}\n    hooks:\n"
        "      - id: engine-validate\n        args: [--btf, kernels/]\n"
    )
    git(user, "init", "-q")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache")}

    def run() -> subprocess.CompletedProcess[str]:
        git(user, "add", "-A")
        return subprocess.run(
            [str(PRE_COMMIT), "run", "--color", "never"],
            cwd=user, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    ok = run()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "engine validate" in ok.stdout and "Passed" in ok.stdout, ok.stdout

    shutil.copy(REPO / "specs/drops.yaml", user / "specs/drops.yaml")
    bad = run()
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "Failed" in bad.stdout
    assert (
        "  linux-6.1.0-57-amd64        INVALID  specs/drops.yaml:23:31: error: unknown name "
        "'SKB_CONSUMED'" in bad.stdout
    ), bad.stdout
    assert "2 specs x 3 kernels: 5 valid, 1 invalid" in bad.stdout
    assert "notes.yaml" not in bad.stdout
