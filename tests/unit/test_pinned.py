"""engine.kernel.pinned before any syscall: a path that could not be written into the C as it
is, or that does not exist, is refused with one sentence; bind refuses an unsafe path even when
a caller skipped the check. (Real pinned maps: tests/kernel/test_run_pinned_maps.py.)"""

from __future__ import annotations

import pathlib

import pytest
from btf_fixture import BTF

from engine.errors import UsageError
from engine.kernel import pinned
from engine.plan import planner
from engine.plan.bind import bind
from engine.spec.loader import load_document

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "path", ['/sys/fs/bpf/a"b', "/sys/fs/bpf/a:b", "/sys/fs/bpf/a\\b", "/sys/fs/bpf/a\nb", "/a b"]
)
def test_unsafe_paths_are_refused(path: str) -> None:
    with pytest.raises(pinned.PinnedError, match="must be an absolute path of letters"):
        pinned.key_set(path)


def test_a_missing_path_says_how_to_pin_one(tmp_path: pathlib.Path) -> None:
    with pytest.raises(pinned.PinnedError) as e:
        pinned.key_set(str(tmp_path / "none"))
    assert str(e.value) == (
        f"'{tmp_path / 'none'}': no such file (pin a map there first: bpftool map create PATH "
        "type hash key 8 value 8 entries N name NAME)"
    )


def test_bind_refuses_a_path_it_would_write_into_c_unsafely() -> None:
    plan = planner.plan(load_document(str(ROOT / "specs" / "tcpconnect.yaml")), BTF)
    with pytest.raises(UsageError, match="--cgroupmap: '/x\"y' is not a path"):
        bind(plan, options={"cgroupmap": '/x"y'})
