"""--cgroup (engine.kernel.cgroups, bind, the templates): a path is resolved in a cgroup2
mount, as written or relative to it, with a did-you-mean; the C checks the task only where a
probe sends events, so store-only probes still pair across tasks. The kernel test
(tests/kernel/test_cgroup_scope.py) moves real children into real directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.codegen import render
from engine.errors import UsageError
from engine.kernel import cgroups
from engine.plan import planner
from engine.plan.bind import bind
from engine.spec.loader import load_text
from tests.unit.test_arith import FIXTURE

ROOT = Path(__file__).resolve().parents[2]


def test_mounts_reads_cgroup2_lines(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu\n"
        "35 25 0:31 / /sys/fs/cgroup/unified rw,relatime shared:14 - cgroup2 cgroup2 rw\n"
        "36 25 0:32 / /mnt/with\\040space rw - cgroup2 none rw\n"
    )
    assert cgroups.mounts(str(info)) == ["/sys/fs/cgroup/unified", "/mnt/with space"]
    assert cgroups.mounts(str(tmp_path / "missing")) == []


def test_resolve_as_written_or_below_the_mount(tmp_path: Path) -> None:
    mount = tmp_path / "unified"
    (mount / "libpod_parent" / "libpod-abc").mkdir(parents=True)
    found = cgroups.resolve(str(mount / "libpod_parent"), [str(mount)])
    assert found.path == str(mount / "libpod_parent") and found.name == "/libpod_parent"
    assert found.id == (mount / "libpod_parent").stat().st_ino
    relative = cgroups.resolve("/libpod_parent/libpod-abc", [str(mount)])
    assert relative.name == "/libpod_parent/libpod-abc"
    assert cgroups.resolve("/", [str(mount)]).name == "/"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("/libpod_parent/libpod-abd", "; did you mean 'libpod-abc'?"),
        ("/tmp", ""),  # a directory, but in no cgroup2 mount
        ("libpod_parent/x/y", ""),
    ],
)
def test_resolve_says_why_not(tmp_path: Path, text: str, want: str) -> None:
    mount = tmp_path / "unified"
    (mount / "libpod_parent" / "libpod-abc").mkdir(parents=True)
    with pytest.raises(cgroups.CgroupError) as info:
        cgroups.resolve(text, [str(mount)])
    assert str(info.value) == (
        f"'{text}' is no cgroup v2 directory (cgroup2 is mounted at {mount}){want}"
    )
    with pytest.raises(cgroups.CgroupError, match="no cgroup v2 hierarchy is mounted"):
        cgroups.resolve(text, [])


def test_at_most_max_cgroups() -> None:
    from engine.cli import cgroup_paths

    assert cgroup_paths(["/a", "/b", "/a"]) == ("/a", "/b")
    assert cgroup_paths(None) == ()
    with pytest.raises(UsageError, match="--cgroup: 65 directories; at most 64"):
        cgroup_paths([f"/d{i}" for i in range(65)])


def test_only_probes_that_send_events_check_the_task() -> None:
    spec = load_text((ROOT / "specs/runqslower.yaml").read_text(), "specs/runqslower.yaml")
    plan = planner.plan(spec, FIXTURE)
    c = render.render_c(bind(plan, cgroups=["/sys/fs/cgroup/unified/a", "/x/b"]))
    assert "BPF_CGROUP_ARRAY(engine_cgroups, 2);" in c
    assert "for (int i = 0; i < 2; i++)" in c
    senders = [p for p in plan.probes if p.emits]
    assert 0 < len(senders) < len(plan.probes)  # runqslower's wakeups only store
    assert c.count("if (!engine_in_cgroups())") == len(senders)
    assert "engine_cgroups" not in render.render_c(bind(plan))


def test_cgroup_names_walk_again_at_most_once_a_period(tmp_path: Path) -> None:
    mount = tmp_path / "unified"
    (mount / "system.slice" / "ssh.service").mkdir(parents=True)
    now = [100.0]
    names = cgroups.CgroupNames([str(mount)], every=1.0, clock=lambda: now[0])
    ino = (mount / "system.slice" / "ssh.service").stat().st_ino
    assert names.name(ino) == "/system.slice/ssh.service"
    assert names.name(mount.stat().st_ino) == "/"
    assert names.walks == 1
    (mount / "later").mkdir()  # a cgroup made after the first walk
    later = (mount / "later").stat().st_ino
    assert names.name(later) == f"cgroup:{later}" and names.walks == 1  # within the period
    assert names.name(123456789) == "cgroup:123456789" and names.walks == 1
    now[0] += 1.0
    assert names.name(later) == "/later" and names.walks == 2
    assert names.name(123456789) == "cgroup:123456789" and names.walks == 2  # found nowhere
