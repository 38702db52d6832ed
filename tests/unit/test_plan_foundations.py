"""The modules the planner stands on: values, layout, the type-source protocol, the decoder
table. They sit below the planner, so every plan module depends on them and none of them on
a plan module above (issue 18: no import cycle, `plan` does not import `runtime`)."""

from __future__ import annotations

import ast
import inspect
import pathlib

import pytest
from btf_fixture import BTF

from engine import decoders as neutral
from engine.kernel.btf import Btf, Kind
from engine.plan import layout as L
from engine.plan import types as T
from engine.plan import values as V
from engine.runtime import decoders as runtime_decoders

ROOT = pathlib.Path(__file__).resolve().parents[2]


def engine_imports(path: pathlib.Path) -> set[str]:
    """Every `engine.*` module a file imports, at any depth (lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("engine"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("engine"))
    return found


@pytest.mark.parametrize("module", ["values", "types", "layout"])
def test_foundations_import_no_plan_module_above_them(module: str) -> None:
    above = {f"engine.plan.{m}" for m in ("resolve", "arith", "state", "bind", "planner")}
    imported = engine_imports(ROOT / "engine" / "plan" / f"{module}.py")
    assert not imported & above, imported & above


def test_plan_imports_no_runtime() -> None:
    for path in (ROOT / "engine" / "plan").rglob("*.py"):
        bad = {m for m in engine_imports(path) if m.startswith("engine.runtime")}
        assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize("module", ["arith", "state"])
def test_arith_and_state_do_not_import_resolve(module: str) -> None:
    """resolve -> arith/state, never back: they reach the resolver through ValueResolver."""
    imported = engine_imports(ROOT / "engine" / "plan" / f"{module}.py")
    assert "engine.plan.resolve" not in imported


def test_btf_implements_every_type_source_method() -> None:
    """Structural conformance (mypy checks it in types.kernel_types); here the signatures."""
    for proto in (T.TypeSource, T.KernelTypeSource):
        for name, member in vars(proto).items():
            if name.startswith("_") or not callable(member):
                continue
            ours = inspect.signature(getattr(Btf, name))
            want = inspect.signature(member)
            assert list(ours.parameters) == list(want.parameters), name
    assert isinstance(T.kernel_types(L.load_btf(BTF)).path, str)


def test_vt_of_reads_types_through_the_protocol() -> None:
    source: T.TypeSource = T.kernel_types(L.load_btf(BTF))
    sock = source.find("sock", Kind.STRUCT)
    assert sock is not None
    vt = V.vt_of(source, sock.id)
    assert (vt.kind, vt.label, vt.size) == (V.VKind.STRUCT, "struct sock", sock.size)
    hit = source.member(sock.id, "sk_type")
    assert hit is not None and V.vt_of(source, hit.type_id).kind is V.VKind.INT


def test_values() -> None:
    assert V.int_vt("s32") == V.VT(V.VKind.INT, 4, True, label="s32")
    c = V.constant_val(7)
    assert c.is_const and not c.is_lvalue and c.var == "7" and V.is_constant(c)
    assert V.ctype_range("u8") == (0, 255) and V.ctype_range("s16") == (-32768, 32767)
    with pytest.raises(V.PlanError, match="does not fit a u8"):
        V.fits(256, "u8", V.E.Num(256, 3))
    assert isinstance(V.AlreadyReported(), V.PlanError)


def test_layout_rounds_and_aligns() -> None:
    lay = L.layout("t", [("a", "u8", 0), ("b", "u64", 0), ("c", "char", 5)])
    assert [(s.name, s.offset, s.size) for s in lay.slots] == [
        ("a", 0, 1),
        ("b", 8, 8),
        ("c", 16, 5),
    ]
    assert lay.size == 24 and lay.align == 0
    state = L.layout("v", [("x", "u32", 0)], L.STATE_VALUE_ALIGN)
    assert (state.size, state.align) == (8, 8)
    assert [L._slot(n) for n in (0, 1, 8, 9)] == [0, 8, 8, 16]


def test_load_btf_once_per_path() -> None:
    assert L.load_btf(BTF) is L.load_btf(BTF)
    with pytest.raises(Exception, match="empty path"):
        L.load_btf(" ")


def test_decoder_names_are_the_runtime_registry() -> None:
    """One table of names: the runtime converts exactly the decoders the planner accepts."""
    assert list(runtime_decoders.REGISTRY) == list(neutral.DECODERS)
    for name, dec in runtime_decoders.REGISTRY.items():
        assert dec.info is neutral.DECODERS[name]
    sized = {n for n, d in neutral.DECODERS.items() if d.size}
    cgroup_ids = {"cgroup", *neutral.CONTAINER_DECODERS}
    assert list(runtime_decoders.CONTAINER_TEXT) == list(neutral.CONTAINER_DECODERS)
    assert sized == {"elapsed", "ms", "secs", "ksym", "kstack", "ustack"} | cgroup_ids
    assert all(neutral.DECODERS[n].accepts for n in sized)
