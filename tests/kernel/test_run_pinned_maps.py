"""`specs/tcpconnect.yaml --cgroupmap MAPPATH` and `--mntnsmap MAPPATH`, with bcc's meaning
(docs/special_filtering.md): trace only tasks whose cgroup v2 id, or mount namespace id, is a
key of a hash map another tool pinned.

The test is that other tool: it mounts a bpffs of its own in a temporary folder, pins two maps
there with bpftool, makes a cgroup under the cgroup v2 hierarchy and puts its id (the folder's
inode number) in one map, and the mount namespace id of a child started with `unshare -m` in
the other. Three children connect: one moved into the cgroup, one in the new mount namespace,
one in neither. The --cgroupmap engine prints exactly the first's row, the --mntnsmap engine
exactly the second's. Children, cgroup, maps and the bpffs mount are removed on every path.
A wrong path, a pinned map of the wrong type or key size: exit 2, one line naming the flag.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/tcpconnect.yaml"
CGROUP2 = Path("/sys/fs/cgroup/unified")  # this machine's cgroup v2 hierarchy (hybrid layout)


def cgroup2_root() -> Path | None:
    """Where cgroup v2 is mounted: the hybrid layout's unified/, or /sys/fs/cgroup itself."""
    for root in (CGROUP2, Path("/sys/fs/cgroup")):
        if (root / "cgroup.procs").exists() and (root / "cgroup.subtree_control").exists():
            return root
    return None


def bpftool(*args: str) -> None:
    subprocess.run(["bpftool", *args], check=True, capture_output=True, text=True, timeout=30)


def key_bytes(value: int) -> list[str]:
    return ["hex", *(f"{b:02x}" for b in struct.pack("<Q", value))]


@pytest.fixture
def bpffs() -> Iterator[Path]:
    """A bpffs instance of the test's own, unmounted (with whatever is pinned in it) at the end."""
    if shutil.which("bpftool") is None:
        pytest.skip("needs bpftool (scripts/setup.sh installs it)")
    where = Path(tempfile.mkdtemp(prefix="engine-bpffs-"))
    subprocess.run(["mount", "-t", "bpf", "bpf", str(where)], check=True, timeout=30)
    try:
        yield where
    finally:
        for pinned in where.iterdir():
            if not pinned.name.endswith(".debug"):
                with contextlib.suppress(OSError):
                    pinned.unlink()
        if subprocess.run(["umount", str(where)], timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], timeout=30)
        with contextlib.suppress(OSError):
            where.rmdir()


@pytest.fixture
def cgroup() -> Iterator[Path]:
    """A fresh cgroup v2 folder; at the end its tasks go back to the root and it is removed."""
    root = cgroup2_root()
    if root is None:
        pytest.skip("needs a cgroup v2 hierarchy (/sys/fs/cgroup/unified or /sys/fs/cgroup)")
    path = root / f"engine-test-{os.getpid()}-{time.monotonic_ns()}"
    path.mkdir()
    try:
        yield path
    finally:
        deadline = time.monotonic() + 10
        while True:
            pids = (path / "cgroup.procs").read_text().split()
            for pid in pids:
                with contextlib.suppress(OSError):
                    (root / "cgroup.procs").write_text(pid)
            try:
                path.rmdir()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def expected(child) -> dict:
    return {
        "pid": child.pid, "comm": child.comm, "ip": 4, "saddr": "127.0.0.1",
        "daddr": "127.0.0.1", "dport": child.ports[0],
    }  # fmt: skip


def test_cgroupmap_and_mntnsmap_print_exactly_the_tasks_in_the_maps(
    engine, conn_child, bpffs, cgroup
):
    cgmap, nsmap = bpffs / "cgroupset", bpffs / "mntnsset"
    bpftool("map", "create", str(cgmap), "type", "hash", "key", "8", "value", "8",
            "entries", "128", "name", "cgroupset", "flags", "0")  # fmt: skip
    bpftool("map", "create", str(nsmap), "type", "hash", "key", "8", "value", "4",
            "entries", "128", "name", "mount_ns_set", "flags", "0")  # fmt: skip

    in_cgroup = conn_child(comm="in-cgroup", wait=True)
    in_mntns = conn_child(comm="in-mntns", wait=True, prefix=["unshare", "-m"])
    outside = conn_child(comm="outside", wait=True)

    (cgroup / "cgroup.procs").write_text(str(in_cgroup.pid))
    assert f"0::/{cgroup.name}" in Path(f"/proc/{in_cgroup.pid}/cgroup").read_text()
    cgroup_id = cgroup.stat().st_ino  # a cgroup v2 id is its folder's inode number
    bpftool("map", "update", "pinned", str(cgmap), "key", *key_bytes(cgroup_id),
            "value", "hex", *["00"] * 8)  # fmt: skip
    mntns_id = os.stat(f"/proc/{in_mntns.pid}/ns/mnt").st_ino
    assert mntns_id != os.stat("/proc/self/ns/mnt").st_ino, "unshare -m made no new namespace"
    bpftool("map", "update", "pinned", str(nsmap), "key", *key_bytes(mntns_id),
            "value", "hex", *["00"] * 4)  # fmt: skip

    by_cgroup = engine(SPEC, "-o", "json", "--cgroupmap", str(cgmap), ready=False)
    by_mntns = engine(SPEC, "-o", "json", "--mntnsmap", str(nsmap), ready=False)
    for e in (by_cgroup, by_mntns):
        e.wait_ready(timeout=180)
    for child in (outside, in_cgroup, in_mntns):  # outside first: its row would come first
        child.go()
        child.run()
    by_cgroup.wait_stdout(lambda lines: len(lines) >= 1)
    by_mntns.wait_stdout(lambda lines: len(lines) >= 1)
    cg, ns = by_cgroup.stop(), by_mntns.stop()
    assert (cg.code, ns.code) == (0, 0), (cg.stderr, ns.stderr)
    assert cg.json_rows() == [expected(in_cgroup)]
    assert ns.json_rows() == [expected(in_mntns)]


def test_wrong_pinned_maps_are_usage_errors_naming_the_flag(bpffs):
    array, narrow, missing = bpffs / "array", bpffs / "narrow", bpffs / "missing"
    bpftool("map", "create", str(array), "type", "array", "key", "4", "value", "8",
            "entries", "4", "name", "arr")  # fmt: skip
    bpftool("map", "create", str(narrow), "type", "hash", "key", "4", "value", "8",
            "entries", "4", "name", "narrow")  # fmt: skip
    cases = [
        ("--cgroupmap", missing, f"'{missing}': no such file (pin a map there first: bpftool map"),
        ("--mntnsmap", array, f"'{array}' is a map of type 2 (array), not a hash map"),
        ("--cgroupmap", narrow, f"'{narrow}' has 4-byte keys; the ids it holds are u64"),
        ("--mntnsmap", Path("/etc/passwd"), "'/etc/passwd' is not a BPF object pinned"),
    ]
    for flag, path, why in cases:
        r = subprocess.run(
            [sys.executable, "-m", "engine.cli", "run", SPEC, flag, str(path)],
            cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert (r.returncode, r.stdout) == (2, ""), r.stderr
        (line,) = r.stderr.splitlines()
        assert line.startswith(f"engine run: error: argument {flag}: {why}"), line
