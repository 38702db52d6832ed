"""`engine explain` (and validate's JSON report) close every file they open, on every path.

Each command runs in a fresh interpreter with -X dev -W error::ResourceWarning, so a file
left to the garbage collector is reported on stderr ("ResourceWarning: unclosed file") even
when it is collected at exit; stderr must name none. The control shows the same flags do
report a leaked file.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from btf_fixture import BTF

REPO = Path(__file__).resolve().parents[2]
STRICT = [sys.executable, "-X", "dev", "-W", "error::ResourceWarning"]
TARGETS = [
    (["tcp_v4_connect"], 0),
    (["struct", "sock_common"], 0),
    (["--expand", "struct", "sock"], 0),
    (["enum", "TCP_CLOSE"], 0),
    (["sock/inet_sock_set_state"], 0),
    (["raw:sched_switch"], 0),
    (["no_such_function_here"], 1),
    (["nosuch/event"], 1),
]


def strict(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*STRICT, *args], cwd=REPO, capture_output=True, text=True, timeout=180, check=False
    )


def assert_no_leak(done: subprocess.CompletedProcess[str]) -> None:
    assert "ResourceWarning" not in done.stderr and "unclosed" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize(("args", "code"), TARGETS, ids=lambda x: str(x))
def test_explain_leaves_no_file_open(args: list[str], code: int) -> None:
    done = strict("-m", "engine.cli", "explain", "--btf", BTF, *args)
    assert done.returncode == code, done.stderr
    assert_no_leak(done)


def test_explain_bad_btf_leaves_no_file_open(tmp_path: Path) -> None:
    bad = tmp_path / "bad.btf"
    bad.write_bytes(b"\xfd7zXZ\x00not xz at all")
    done = strict("-m", "engine.cli", "explain", "--btf", str(bad), "tcp_v4_connect")
    assert done.returncode == 2, done.stderr
    assert_no_leak(done)


def test_validate_json_leaves_no_file_open() -> None:
    done = strict(
        "-m", "engine.cli", "validate", "--btf", BTF, "--format", "json", "specs/tcpconnect.yaml"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.lstrip().startswith(("{", "[")), done.stdout
    assert_no_leak(done)


def test_control_a_leaked_file_is_reported() -> None:
    """The check can fail: the same interpreter flags report a file nobody closed."""
    done = strict("-c", "f = open('/dev/null'); del f")
    assert "ResourceWarning" in done.stderr and "unclosed" in done.stderr, done.stderr
