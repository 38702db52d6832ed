"""The event and count-key layouts: the planner's C layout and the ctypes decoder agree.

The BPF C side asserts the same sizes and offsets with _Static_assert (compiled in
tests/kernel/test_compile_all.py); here every spec's decoder is loaded and its ctypes
structures are compared slot by slot with the plan. `layout()` itself is checked without a
kernel.
"""

from __future__ import annotations

import ctypes
import pathlib

import pytest
from btf_fixture import BTF

from engine.codegen import render
from engine.plan import model as M
from engine.plan import planner
from engine.plan.layout import layout
from engine.spec.loader import load_document
from tests.live_specs import offline

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPECS = offline(sorted((ROOT / "specs").glob("*.yaml"))) + sorted(
    (ROOT / "tests" / "specs" / "good").glob("*.yaml")
)
SIZES = {"u8": 1, "u16": 2, "u32": 4, "u64": 8, "s8": 1, "s16": 2, "s32": 4, "s64": 8}


def compare(structure: type[ctypes.Structure], lay: M.Layout) -> None:
    assert ctypes.sizeof(structure) == lay.size
    names = [name for name, *_ in structure._fields_]
    assert names == [s.name for s in lay.slots]
    for slot in lay.slots:
        member = getattr(structure, slot.name)
        assert (member.offset, member.size) == (slot.offset, slot.size), slot


@pytest.mark.parametrize("path", SPECS, ids=[f"{p.parent.name}/{p.name}" for p in SPECS])
def test_decoder_matches_plan(path: pathlib.Path) -> None:
    plan = planner.plan(load_document(str(path)), BTF)
    decoder = render.load_decoder(plan)
    compare(decoder.Event, plan.event)
    assert not hasattr(decoder, "Key")  # a count key is an aggregation's (AggSink.key)
    assert [f[0] for f in decoder.FIELDS] == [f.name for f in plan.fields]


def test_tcpconnect_event_is_72_bytes() -> None:
    plan = planner.plan(load_document(str(ROOT / "specs" / "tcpconnect.yaml")), BTF)
    decoder = render.load_decoder(plan)
    assert plan.event.size == ctypes.sizeof(decoder.Event) == 72


# --- layout() without a kernel ---------------------------------------------------------------


def test_natural_alignment_and_tail_padding() -> None:
    lay = layout("event_t", [("a", "u8", 0), ("b", "u64", 0), ("c", "u16", 0)])
    assert [(s.offset, s.size) for s in lay.slots] == [(0, 1), (8, 8), (16, 2)]
    assert lay.size == 24


def test_inet_addr_aligns_to_two() -> None:
    lay = layout("key_t", [("x", "u8", 0), ("addr", "struct inet_addr", 0), ("p", "u16", 0)])
    assert [(s.offset, s.size) for s in lay.slots] == [(0, 1), (2, 18), (20, 2)]
    assert lay.size == 22


def test_char_and_integer_arrays() -> None:
    lay = layout("event_t", [("comm", "char", 16), ("v", "u32", 0), ("h", "u8", 6)])
    assert [(s.offset, s.size) for s in lay.slots] == [(0, 16), (16, 4), (20, 6)]
    assert lay.size == 28
    lay = layout("event_t", [("c", "char", 3), ("w", "u16", 3)])
    assert [(s.offset, s.size) for s in lay.slots] == [(0, 3), (4, 6)]


def test_empty_layout_is_one_byte() -> None:
    assert layout("event_t", []).size == 1


@pytest.mark.parametrize("ctype", sorted(SIZES))
def test_layout_agrees_with_ctypes(ctype: str) -> None:
    """Every scalar after every other: offsets as a C compiler (and ctypes) lays them out."""
    for before in sorted(SIZES):
        members = [("a", before, 0), ("b", ctype, 0), ("c", "char", 3), ("d", ctype, 2)]
        lay = layout("event_t", members)
        names = {k: getattr(ctypes, f"c_{'u' if k[0] == 'u' else ''}int{SIZES[k] * 8}")
                 for k in SIZES}  # fmt: skip

        class S(ctypes.Structure):
            _fields_ = [
                ("a", names[before]),
                ("b", names[ctype]),
                ("c", ctypes.c_char * 3),
                ("d", names[ctype] * 2),
            ]

        compare(S, lay)
