"""`--btf` names a BTF file: an empty value, a device, a FIFO or an oversized file is a usage
error (exit 2, naming the flag), read with a bound; and SARIF names files by URI.

`validate --btf /dev/zero` read the device whole, growing until the process died, and
`--btf ''` quietly meant the running kernel. Each child runs with its address space limited,
so the unbounded read fails the test instead of the machine.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import UsageError
from engine.kernel import btf as B
from engine.plan.layout import load_btf

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "btf" / "linux-6.18.44-fc.btf.xz"
EMPTY = (
    "engine: error: --btf: an empty path; name a BTF file, or leave --btf out for the running "
    "kernel's"
)


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def engine(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120, preexec_fn=_limit,
    )  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [
        ("validate", "--btf", "/dev/zero", "specs/icmp.yaml"),
        ("validate", "--btf", "/dev/zero", "--btf", str(FIXTURE), "specs/icmp.yaml"),
        ("render", "specs/icmp.yaml", "--btf", "/dev/zero"),
        ("explain", "--btf", "/dev/zero", "icmp_echo"),
    ],
)
def test_a_device_is_refused_not_read(args: tuple[str, ...]) -> None:
    done = engine(*args)
    assert (done.returncode, done.stderr) == (
        2, "engine: error: --btf: /dev/zero: not a regular file (a BTF file is one)\n"
    )  # fmt: skip


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "btf"
    os.mkfifo(fifo)
    done = engine("validate", "--btf", str(fifo), "specs/icmp.yaml")
    assert (done.returncode, done.stderr) == (
        2, f"engine: error: --btf: {fifo}: not a regular file (a BTF file is one)\n"
    )  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [
        ("validate", "--btf", "", "specs/icmp.yaml"),
        ("validate", "--btf=", "specs/icmp.yaml"),
        ("validate", "--btf", " ", "--btf", str(FIXTURE), "specs/icmp.yaml"),
        ("render", "specs/icmp.yaml", "--btf", ""),
        ("explain", "--btf", "", "icmp_echo"),
    ],
)
def test_an_empty_path_is_refused_not_the_running_kernel(args: tuple[str, ...]) -> None:
    done = engine(*args)
    assert (done.returncode, done.stderr, done.stdout) == (2, EMPTY + "\n", "")


def test_btf_is_read_with_a_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_BTF bytes, a file or what its .xz unpacks to is refused, not read on."""
    monkeypatch.setattr(B, "MAX_BTF", 1 << 20)
    big = tmp_path / "big.btf"
    with open(big, "wb") as f:
        f.truncate((1 << 20) + 1)
    for path in (big, FIXTURE):  # the fixture unpacks to about 6 MiB
        with pytest.raises(B.BtfError, match=r": larger than 1 MiB; not a kernel's BTF$"):
            B.Btf.load(str(path))
    with pytest.raises(UsageError, match=r"^--btf: .*big.btf: larger than 1 MiB"):
        load_btf(str(big))


def test_sarif_uris_are_percent_encoded(tmp_path: Path) -> None:
    """A SARIF uri is a URI reference: spaces, `#` and `%` in a path are escaped (a relative
    path stays relative; an absolute one is a file: URI)."""
    folder = tmp_path / "sarif test #1 100%"
    folder.mkdir()
    spec = folder / "bad spec.yaml"
    spec.write_text((REPO / "specs" / "icmp.yaml").read_text().replace("icmp_echo", "nosuch"))
    rel = str(spec.relative_to(tmp_path))
    out = engine(
        "validate", "--format", "sarif", "--btf", str(FIXTURE), rel, str(spec), cwd=tmp_path
    )
    results = json.loads(out.stdout)["runs"][0]["results"]
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results}
    encoded = "sarif%20test%20%231%20100%25/bad%20spec.yaml"
    assert uris == {encoded, tmp_path.as_uri() + "/" + encoded}
