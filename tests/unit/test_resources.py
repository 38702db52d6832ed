"""The resources pass: the maps a bound Program needs are declared once (engine.plan.resources);
the C declares exactly those, and the runtime opens and reads them by the same declarations."""

from __future__ import annotations

import ast
import itertools
import pathlib
import re

import pytest
from btf_fixture import BTF

from engine.codegen import render
from engine.plan import model as M
from engine.plan import planner
from engine.plan import resources as R
from engine.plan.bind import bind
from engine.plan.shapes import option_shapes
from engine.runtime.runner import Session
from engine.spec.loader import load_document
from tests.live_specs import offline

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPECS = offline(sorted((ROOT / "specs").glob("*.yaml"))) + sorted(
    (ROOT / "tests" / "specs" / "good").glob("*.yaml")
)
MACRO_NAME = {  # the map name's place among a bcc macro's arguments
    "BPF_PERF_OUTPUT": 0,
    "BPF_RINGBUF_OUTPUT": 0,
    "BPF_ARRAY": 0,
    "BPF_PERCPU_ARRAY": 0,
    "BPF_HASH": 0,
    "BPF_PERCPU_HASH": 0,
    "BPF_TABLE": 3,
    "BPF_F_TABLE": 3,
    "BPF_TABLE_PINNED": 3,
    "BPF_STACK_TRACE": 0,
    "BPF_CGROUP_ARRAY": 0,
}


def declared_in(c: str) -> list[str]:
    """The name of every map the C declares, in order."""
    names = []
    for line in c.splitlines():
        m = re.match(r"^(BPF_\w+)\((.*)\);", line)
        if m and m.group(1) in MACRO_NAME:
            args = [a.strip() for a in m.group(2).split(",")]
            names.append(args[MACRO_NAME[m.group(1)]])
    return names


def programs() -> list[M.Program]:
    out = []
    for path in SPECS:
        plan = planner.plan(load_document(str(path)), BTF)
        counts = (False, True) if plan.counted else (False,)
        for shape, count, (transport, wakeup), clear in itertools.product(
            option_shapes(plan)[:3], counts, (("ringbuf", 0), ("ringbuf", 4), ("perf", 0)), (0, 1)
        ):
            program = bind(
                plan,
                count=count,
                options=shape.values,
                transport=transport,
                wakeup_batch=wakeup,
                clear=bool(clear),
                cgroups=("/sys/fs/cgroup/a", "/sys/fs/cgroup/b") if clear else (),
            )
            out.append(program)
    return out


PROGRAMS = programs()


def test_the_c_declares_exactly_the_declared_maps() -> None:
    kinds = set()
    for program in PROGRAMS:
        res = R.declare(program)
        names = [m.name for m in res.all()]
        assert len(names) == len(set(names)), names
        assert declared_in(render.render_c(program)) == names
        kinds.update(m.type for m in res.all())
    assert kinds == set(R.MapType)  # every map type is exercised


def test_every_counter_index_names_its_counter() -> None:
    for program in PROGRAMS:
        res = R.declare(program)
        assert res.errors.map.size == len(res.errors.names) == len(program.errors)
        for st in program.states:
            assert res.errors.names[st.index] == f"state '{st.name}': failed updates"
            assert res.state_keys is not None
            inserted = res.state_keys.names[R.inserted_counter(st.index)]
            deleted = res.state_keys.names[R.deleted_counter(st.index)]
            assert (inserted, deleted) == (
                f"state '{st.name}': keys inserted",
                f"state '{st.name}': keys deleted",
            )
        for sink in program.aggregations:
            assert res.errors.names[sink.index].startswith(f"aggregation '{sink.agg.name}'")


def test_aggregation_maps_follow_the_sink() -> None:
    sinks = [(p, s) for p in PROGRAMS for s in p.aggregations]
    assert sinks
    for program, sink in sinks:
        decls = R.declare(program).of(sink)
        assert [(h.name, o.name) for h, o in decls.epochs] == [
            (m.hash, m.other) for m in sink.map_sets
        ]
        assert len(decls.epochs) == sink.epochs
        assert (decls.zero is not None) == bool(sink.buckets)
        assert all(h.flags == (R.NO_PREALLOC if sink.buckets else "") for h, _ in decls.epochs)


class FakeBpf(dict):  # type: ignore[type-arg]
    """bcc's BPF object as the runtime indexes it: map name -> table."""


def test_the_runtime_reads_the_declared_counters() -> None:
    program = next(p for p in PROGRAMS if p.states and p.aggregations)
    res = R.declare(program)
    session = Session(program, verbose=False)
    bpf = FakeBpf()
    bpf[res.errors.map.name] = {i: [i, 1] for i in range(res.errors.map.size)}
    bpf[res.lost.name] = {0: [2, 3]}
    session.bpf = bpf
    assert session.errors() == [i + 1 for i in range(len(program.errors))]
    assert session.lost() == 5


BPF_OBJECTS = ("bpf", "b", "self.bpf")  # how the runtime holds bcc's BPF object


def test_no_map_name_in_runtime_string_literals() -> None:
    """The runtime opens a map (`bpf[NAME]`, `get_table(NAME)`) only by a name from
    engine.plan.resources, never by a string written in the runtime."""
    for module in ("runner", "sinks", "aggregates"):
        tree = ast.parse((ROOT / "engine" / "runtime" / f"{module}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Subscript) and ast.unparse(node.value) in BPF_OBJECTS:
                index = node.slice
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "get_table":
                index = node.args[0]
            else:
                continue
            assert not isinstance(index, (ast.Constant, ast.JoinedStr)), (
                module,
                ast.unparse(node),
            )


@pytest.mark.parametrize(
    ("decl", "c"),
    [
        (
            R.MapDecl("a", R.MapType.ARRAY, "", "u32", 1, note="why"),
            "BPF_ARRAY(a, u32, 1);  // why",
        ),
        (R.MapDecl("b", R.MapType.PERCPU_ARRAY, "", "u64", 3), "BPF_PERCPU_ARRAY(b, u64, 3);"),
        (R.MapDecl("c", R.MapType.HASH, "u16", "u8", 9), "BPF_HASH(c, u16, u8, 9);"),
        (
            R.MapDecl("d", R.MapType.PERCPU_HASH, "struct k", "u64", 5),
            "BPF_PERCPU_HASH(d, struct k, u64, 5);",
        ),
        (
            R.MapDecl("e", R.MapType.PERCPU_HASH, "struct k", "u64", 5, R.NO_PREALLOC),
            'BPF_F_TABLE("percpu_hash", struct k, u64, e, 5, BPF_F_NO_PREALLOC);',
        ),
        (
            R.MapDecl("f", R.MapType.LRU_HASH, "struct k", "struct v", 7),
            'BPF_TABLE("lru_hash", struct k, struct v, f, 7);',
        ),
        (
            R.MapDecl("g", R.MapType.HASH, "u64", "u8", 1, pinned="/sys/fs/bpf/x"),
            'BPF_TABLE_PINNED("hash", u64, u8, g, 1, "/sys/fs/bpf/x");',
        ),
        (R.MapDecl("h", R.MapType.RINGBUF, "", "", 64), "BPF_RINGBUF_OUTPUT(h, 64);"),
        (R.MapDecl("i", R.MapType.PERF, "", "", 0), "BPF_PERF_OUTPUT(i);"),
    ],
)
def test_one_declaration_per_map_type(decl: R.MapDecl, c: str) -> None:
    macro = render.environment().get_template("partials/map.c.j2").module.declare  # type: ignore[attr-defined]
    assert str(macro(decl)) == c
