"""A read carries the address space of the family that binds its value (engine/memory.py).

Today's kinds all read kernel memory; a user-space family (uprobes) declares USER, and then its
pointer arguments are user pointers: strings are copied with bpf_probe_read_user_str and a
member read through one is refused. Checked by planning a kprobe spec against the committed
BTF fixture with the kprobe kind's space switched to USER, against the same spec as it is.
"""

from __future__ import annotations

import dataclasses

import pytest
from btf_fixture import BTF

from engine import attach
from engine.codegen import render
from engine.errors import SpecError
from engine.memory import AddressSpace
from engine.plan import model as M
from engine.plan import planner
from engine.plan.bind import bind
from engine.spec.loader import load_text

SPEC = """\
name: space
probes:
  - name: open
    attach:
      - kprobe: do_sys_openat2
    fields:
      path: {value: filename, decode: str}
output:
  columns: [path]
"""
MEMBER = SPEC.replace("{value: filename, decode: str}", "how.flags")


@pytest.fixture
def user_kprobe(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kprobe kind as a user-space family would be: same access, USER memory."""
    kinds = dict(attach.KINDS)
    kinds["kprobe"] = dataclasses.replace(kinds["kprobe"], address_space=AddressSpace.USER)
    monkeypatch.setattr("engine.plan.resolve.KINDS", kinds)


def copies(text: str) -> list[M.CopyStr]:
    plan = planner.plan(load_text(text, "space.yaml"), BTF)
    return [s for f in plan.probes[0].alternatives[0].fields for s in f.steps
            if isinstance(s, M.CopyStr)]  # fmt: skip


def test_kernel_families_read_kernel_memory() -> None:
    (copy,) = copies(SPEC)
    assert copy.space is AddressSpace.KERNEL
    plan = planner.plan(load_text(SPEC, "space.yaml"), BTF)
    assert "bpf_probe_read_kernel_str" in render.render_c(bind(plan))


@pytest.mark.usefixtures("user_kprobe")
def test_a_user_family_reads_its_pointers_as_user_memory() -> None:
    (copy,) = copies(SPEC)
    assert copy.space is AddressSpace.USER
    plan = planner.plan(load_text(SPEC, "space.yaml"), BTF)
    c = render.render_c(bind(plan))
    assert "bpf_probe_read_user_str" in c and "bpf_probe_read_kernel_str" not in c


@pytest.mark.usefixtures("user_kprobe")
def test_a_member_through_a_user_pointer_is_refused() -> None:
    with pytest.raises(SpecError) as error:
        planner.plan(load_text(MEMBER, "space.yaml"), BTF)
    assert "points to user memory" in str(error.value.problems[0].message)
    planner.plan(load_text(MEMBER.replace("kprobe", "fentry"), "space.yaml"), BTF)  # kernel: ok
