"""`specs/mountsnoop.yaml` against a bpftrace script on the same syscall tracepoints, at the same
time: in a mount namespace of its own (`unshare -m`), a shell mounts a tmpfs named after this
test on a temp directory and unmounts it. Exact: each call's source, target, type and flags as
bpftrace reads them at the entry, the results (0), umount's empty source and type, and the
namespace (not this test's)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from oracle import BpftraceJson

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SCRIPT = """
BEGIN { printf("READY\\n"); }
tracepoint:syscalls:sys_enter_mount /str(args->dir_name) == "%s"/ {
  printf("MOUNT %%s|%%s|%%s|%%d\\n", str(args->dev_name), str(args->dir_name), str(args->type),
         args->flags);
}
tracepoint:syscalls:sys_enter_umount /str(args->name) == "%s"/ {
  printf("UMOUNT %%s|%%d\\n", str(args->name), args->flags);
}
"""


@pytest.fixture
def target() -> Iterator[Path]:
    """A short mount point (bpftrace compares strings of at most 64 bytes)."""
    made = Path(tempfile.mkdtemp(prefix="h21m", dir="/tmp"))
    try:
        yield made
    finally:
        made.rmdir()


def test_mount_and_umount_rows_match_bpftrace(engine, target: Path) -> None:
    oracle = BpftraceJson(SCRIPT % (target, target))
    try:
        ours = engine("specs/mountsnoop.yaml", "-o", "json")
        done = subprocess.run(
            ["unshare", "-m", "sh", "-c", f"mount -t tmpfs h21src {target} && umount {target}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        ours.wait_rows(lambda rows: any(r["target"] == str(target) and not r["source"]
                                        for r in rows))  # fmt: skip
        result = ours.stop()
        theirs = [
            r["data"].split(" ", 1)
            for r in oracle.stop()
            if r.get("type") == "printf" and r["data"].startswith(("MOUNT ", "UMOUNT "))
        ]
    finally:
        oracle.kill()
    assert result.code == 0, result.stderr
    rows = [r for r in result.json_rows() if r["target"] == str(target)]
    mount, umount = rows
    assert [t[0] for t in theirs] == ["MOUNT", "UMOUNT"]
    src, tgt, fstype, flags = theirs[0][1].strip().split("|")
    assert (mount["comm"], mount["source"], mount["target"], mount["fstype"]) == (
        "mount",
        src,
        tgt,
        fstype,
    )
    assert (src, fstype) == ("h21src", "tmpfs")
    assert int(mount["flags"], 16) == int(flags) and mount["ret"] == 0
    name, uflags = theirs[1][1].strip().split("|")
    assert (umount["comm"], umount["source"], umount["target"], umount["fstype"]) == (
        "umount",
        "",
        name,
        "",
    )
    assert int(umount["flags"], 16) == int(uflags) and umount["ret"] == 0
    host = os.stat("/proc/self/ns/mnt").st_ino
    assert mount["mntns"] == umount["mntns"] != host
