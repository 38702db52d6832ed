"""Every IR node (expression trees, steps, step operands) and every spec expression node
through every walker (engine.nodes Visitor / Transformer subclasses) and, for steps, through
its template partial.

The node classes and the walkers are enumerated from the code, so a new node kind without an
example here, or a new walker without a row here, fails this test: a walker that never saw a
node kind is how `$slow and port / 2 > 5` once rendered a local before its declaration.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Callable, ClassVar

import pytest

from engine import nodes
from engine.codegen import render
from engine.memory import AddressSpace
from engine.plan import arith, bind, ir, resolve, state
from engine.plan import model as M
from engine.spec import expr as E

ROOT = pathlib.Path(__file__).resolve().parents[2]

# --- an example of every node class -----------------------------------------------------------

V1 = M.CVar("v1", "u32")
SPORT = M.CVar("ev.f_sport", "u16")
GT = M.CCompare(">", V1, M.CNum(5, "s32"))
SET = M.SetMap("set_ports", "u16", (1, 2, 3))
DIV = M.CArith("/", M.Member("ev", "f_sport"), M.Constant("2U"), "u32")

CEXPRS: dict[type, M.CExpr] = {
    M.CVar: V1,
    M.CNum: M.CNum(5, "s32"),
    M.COption: M.COption("pid", "u32", False),
    M.CCompare: GT,
    M.CIn: M.CIn(SPORT, (M.CNum(22, "u16"), M.CNum(80, "u16"))),
    M.CInSet: M.CInSet(SPORT, SET),
    M.CStrEq: M.CStrEq("ev.f_comm", b"curl", 16),
    M.CInetEq: M.CInetEq("ev.f_saddr", (2, b"\x7f\x00\x00\x01")),
    M.CBool: M.CBool("&&", (GT, M.CTrue())),
    M.CNot: M.CNot(GT),
    M.CTrue: M.CTrue(),
    M.CArith: DIV,
    M.CSwitch: M.CSwitch("slow", True, GT),
}

L1, L2, KEY = M.Local("v1"), M.Local("v2"), M.Local("v9")
TS = M.Member("v3", "f_ts")
STEPS: dict[type, M.Step] = {
    M.Builtin: M.Builtin("v1", "u32", "tgid"),
    M.Comm: M.Comm("ev.f_comm", 16),
    M.CommLocal: M.CommLocal("v8", 16),
    M.Arg: M.Arg("v1", "u64", 0),
    M.Stashed: M.Stashed("v1", "u64", "f_arg0"),
    M.Load: M.Load("v2", "u16", L1, 12, 2),
    M.LoadBits: M.LoadBits("v2", "u64", L1, 4, 1, 4, 15),
    M.AddrOf: M.AddrOf("v2", L1, 8),
    M.Add: M.Add("v3", L1, L2),
    M.Store: M.Store("ev.f_ts", TS, 0),
    M.Copy: M.Copy("ev.f_addr", L1, 4, 16),
    M.CopyStr: M.CopyStr("ev.f_name", L1, 0, 64),
    M.DataLocStr: M.DataLocStr("ev.f_name", M.Local("ctx_addr"), 8, 64),
    M.Inet: M.Inet("ev.f_daddr", L2, L1, 4, L1, 56),
    M.Arith: M.Arith("v4", "u32", "/", L1, M.Constant("2U")),
    M.Test: M.Test("v5", M.CBool("&&", (GT, M.CStrEq("ev.f_comm", b"curl", 16)))),
    M.Select: M.Select("v6", "s64", L1, L2, M.Constant("(-1LL)")),
    M.StateKey: M.StateKey("v9", "start", (("k0", L1), ("k1", M.Constant("7U")))),
    M.StateRead: M.StateRead("v3", "start", KEY, True, (("f_ts", M.Constant("0ULL")),), True),
    M.StateHas: M.StateHas("v5", "start", KEY),
    M.StatePut: M.StatePut("v6", "start", KEY, (("f_ts", L2),), ("f_comm",)),
    M.StateDelete: M.StateDelete("v7", "start", KEY),
    M.CopyLocal: M.CopyLocal("ev.f_comm", M.Member("v3", "f_comm"), 16),
}
# the locals each step reads (its operands' locals: a constant reads none, a member its struct)
READS: dict[type, set[str]] = {
    M.Builtin: set(), M.Comm: set(), M.CommLocal: set(), M.Arg: set(), M.Stashed: set(),
    M.Load: {"v1"}, M.LoadBits: {"v1"}, M.AddrOf: {"v1"}, M.Add: {"v1", "v2"},
    M.Store: {"v3"}, M.Copy: {"v1"}, M.CopyStr: {"v1"}, M.DataLocStr: {"ctx_addr"},
    M.Inet: {"v1", "v2"}, M.Arith: {"v1"}, M.Test: {"v1", "ev.f_comm"},
    M.Select: {"v1", "v2"}, M.StateKey: {"v1"}, M.StateRead: {"v9"},
    M.StateHas: {"v9"}, M.StatePut: {"v9", "v2"}, M.StateDelete: {"v9"},
    M.CopyLocal: {"v3"},
}  # fmt: skip

OPERANDS: dict[type, M.Operand] = {M.Local: L1, M.Member: TS, M.Constant: M.Constant("(-5LL)")}

SK = E.Name("sk", 0)
EXPRS: dict[type, E.Node] = {
    E.Num: E.Num(5, 0),
    E.Str: E.Str("curl", 0),
    E.Name: SK,
    E.Option: E.Option("pid", 0),
    E.Attr: E.Attr(SK, "sk_family", 3),
    E.Index: E.Index(SK, 1, 2),
    E.Call: E.Call("take", (E.Name("start", 5), E.Name("tid", 12)), 0),
    E.ListOf: E.ListOf((SK, E.Option("pid", 4)), 0),
    E.Compare: E.Compare(">", SK, E.Option("min", 6), 0),
    E.BoolOp: E.BoolOp("and", (E.Option("slow", 0), E.Compare(">", SK, E.Num(5, 9), 0)), 0),
    E.Not: E.Not(SK, 0),
    E.Cast: E.Cast(SK, "struct sock", 6),
    E.BinOp: E.BinOp("/", SK, E.Num(2, 5), 3),
    E.Unary: E.Unary("-", SK, 0),
    E.IfElse: E.IfElse(E.Compare(">", SK, E.Num(5, 9), 0), SK, E.Num(0, 12), 3),
}


def concrete(base: type) -> set[type]:
    """The engine's dataclass node classes under `base` (test-made subclasses left out)."""
    found: set[type] = set()
    todo = [base]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("engine.") and dataclasses.is_dataclass(sub):
                found.add(sub)
    return found


def test_every_node_class_has_an_example() -> None:
    assert concrete(M.CNode) == set(CEXPRS)
    assert concrete(M.StepBase) == set(STEPS) == set(READS)
    assert concrete(M.Operand) == set(OPERANDS)
    assert concrete(E.ExprNode) == set(EXPRS)
    for table in (CEXPRS, STEPS, OPERANDS, EXPRS):
        assert all(type(node) is cls for cls, node in table.items())


ALL_NODES = [*CEXPRS.values(), *STEPS.values(), *OPERANDS.values(), *EXPRS.values()]


@pytest.mark.parametrize("node", ALL_NODES, ids=lambda n: type(n).__name__)
def test_children_and_the_base_walkers(node: nodes.Node) -> None:
    """children() are nodes, map_children(identity) rebuilds the node, the base Visitor
    reaches every node below, and the base Transformer gives an equal tree back."""
    assert all(isinstance(c, nodes.Node) for c in node.children())
    assert node.map_children(lambda c: c) == node
    seen: list[nodes.Node] = []

    class Every(nodes.Visitor[None]):
        def visit(self, n: nodes.Node) -> None:
            seen.append(n)
            super().visit(n)

    Every().visit(node)
    assert seen[0] is node and len(seen) == 1 + _count_below(node)
    assert nodes.Transformer().visit(node) == node


def _count_below(node: nodes.Node) -> int:
    return sum(1 + _count_below(c) for c in node.children())


# --- every walker the engine defines, over every node kind it walks ---------------------------

ARITH_V1 = {"v1": M.Arith("v1", "u32", "/", M.Member("ev", "f_sport"), M.Constant("2U"))}


def _c(e: Any) -> Any:
    return render.c_expr(e)


def _bound(e: Any) -> Any:
    return bind.bind_expr(e, {"pid": 7, "slow": True})


# walker class name -> how the test runs it over an expression (a CExpr or an E.Node)
CEXPR_WALKERS: dict[str, Callable[[Any], Any]] = {
    "Inline": lambda e: arith.inline(e, list(ARITH_V1.values())),
    "_SlotsRead": bind.slots_read,
    "_SetMaps": bind.set_maps,
    "BindOptions": _bound,
    "_CEmitter": _c,
    "_LocalsRead": lambda e: ir.Test("v9", e).reads(),
}
EXPR_WALKERS: dict[str, Callable[[Any], Any]] = {
    "_Names": E.names_in,
    "_Options": E.options_in,
    "_StateCalls": state.uses_state,
    "_Effects": lambda e: _effects(e),
}


def _effects(e: E.Node) -> str:
    """What _Effects says of a tree: "" when it may be part of a value, else its error."""
    try:
        resolve._value_only(e)
    except resolve.PlanError as err:
        return err.message
    return ""


def test_every_walker_is_tested() -> None:
    walkers = concrete_walkers(nodes.Visitor) | concrete_walkers(nodes.Transformer)
    assert walkers == set(CEXPR_WALKERS) | set(EXPR_WALKERS)


def concrete_walkers(base: type) -> set[str]:
    found, todo = set(), [base]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("engine."):
                found.add(sub.__name__)
    return found


# what the emitter cannot write: an option or a switch that bind has not replaced yet
UNBOUND = (M.COption, M.CSwitch)


@pytest.mark.parametrize("walker", sorted(CEXPR_WALKERS))
@pytest.mark.parametrize("cls", list(CEXPRS), ids=lambda c: c.__name__)
def test_cexpr_walkers(walker: str, cls: type) -> None:
    node = CEXPRS[cls]
    run = CEXPR_WALKERS[walker]
    if walker == "_CEmitter" and cls in UNBOUND:
        with pytest.raises(ValueError, match="not bound"):
            run(node)
        return
    result = run(node)
    if walker == "_CEmitter":
        assert isinstance(result, str) and result.startswith(("(", "v", "e", "5"))
        assert "v1" not in result or cls in (M.CVar, M.CCompare, M.CBool, M.CNot)
    if walker == "Inline":  # no arith local is left anywhere (v1 became its computation)
        assert "v1" not in bind.slots_read(result)


def test_inline_reaches_a_local_under_every_node_kind() -> None:
    """Under each node kind that holds a term (a switch among them), inline replaces the
    arith local: the C reads ev.f_sport, never the undeclared v1."""
    for cls in (M.CCompare, M.CBool, M.CNot, M.CSwitch):
        out = arith.inline(CEXPRS[cls], list(ARITH_V1.values()))
        assert "v1" not in bind.slots_read(out) and "ev.f_sport" in bind.slots_read(out), cls
    inlined = arith.inline(CEXPRS[M.CSwitch], [ARITH_V1["v1"]])
    on = render.c_expr(bind.bind_expr(inlined, {"slow": True}))
    assert on == "(((u32)((u32)ev.f_sport / (u32)2U)) > 5)"


def test_walker_results() -> None:
    assert bind.slots_read(CEXPRS[M.CStrEq]) == {"ev.f_comm"}
    assert bind.slots_read(CEXPRS[M.CInetEq]) == {"ev.f_saddr"}
    assert bind.slots_read(DIV) == {"ev.f_sport", "2U"}
    assert bind.set_maps(M.CBool("||", (GT, CEXPRS[M.CInSet]))) == [SET]
    assert _bound(M.CCompare("==", SPORT, M.COption("pid", "u16", False))) == M.CCompare(
        "==", SPORT, M.CNum(7, "u16")
    )
    assert _bound(M.CSwitch("slow", False, GT)) == M.CTrue()
    assert _c(CEXPRS[M.CIn]) == "(ev.f_sport == 22U || ev.f_sport == 80U)"
    assert E.names_in(EXPRS[E.BoolOp]) == [SK]
    assert E.options_in(EXPRS[E.ListOf]) == ["pid"]
    assert state.uses_state(EXPRS[E.Call]) and not state.uses_state(EXPRS[E.BinOp])


@pytest.mark.parametrize("walker", sorted(EXPR_WALKERS))
@pytest.mark.parametrize("cls", list(EXPRS), ids=lambda c: c.__name__)
def test_expr_walkers(walker: str, cls: type) -> None:
    node = EXPRS[cls]
    result = EXPR_WALKERS[walker](node)
    if walker == "_Names":
        assert all(isinstance(n, E.Name) for n in result)
        assert (SK in result) == (cls not in (E.Num, E.Str, E.Option, E.Call))
    if walker == "_Options":
        assert set(result) <= {"pid", "min", "slow"}
    if walker == "_Effects":  # an option anywhere below, or a take(), is refused
        refused = bool(E.options_in(node)) or cls is E.Call
        assert bool(result) == refused, result


# --- steps: reads() from typed operands, one partial per kind ---------------------------------


@pytest.mark.parametrize("cls", list(STEPS), ids=lambda c: c.__name__)
def test_step_reads_and_partial(cls: type) -> None:
    step = STEPS[cls]
    assert step.reads() == READS[cls]
    assert step.writes() == step.dest
    assert step.partial == f"partials/steps/{step.kind}.c.j2"
    c = render.environment().get_template("partials/step.c.j2").render(s=step)
    assert c.strip() and "{{" not in c and "{%" not in c
    for op in step.operands():
        assert str(op) in c, (str(op), c)


def test_every_partial_is_a_step_kinds() -> None:
    on_disk = {p.name for p in (ROOT / "templates" / "partials" / "steps").glob("*.c.j2")}
    assert on_disk == {f"{s.kind}.c.j2" for s in STEPS.values()}
    ladder = (ROOT / "templates" / "partials" / "step.c.j2").read_text()
    assert "s.kind" not in ladder  # the step names its partial; no ladder


READS_MEMORY = (M.Load, M.LoadBits, M.Copy, M.CopyStr, M.DataLocStr, M.Inet)


@pytest.mark.parametrize("cls", READS_MEMORY, ids=lambda c: c.__name__)
def test_a_read_uses_its_address_spaces_helper(cls: type) -> None:
    """A read step's C calls its space's helper: kernel by default, the user one for USER."""
    template = render.environment().get_template("partials/step.c.j2")
    kernel = template.render(s=STEPS[cls])
    user = template.render(s=dataclasses.replace(STEPS[cls], space=AddressSpace.USER))
    assert "bpf_probe_read_kernel" in kernel and "_user" not in kernel
    assert "bpf_probe_read_user" in user and "_kernel" not in user


def test_operand_spelling() -> None:
    """M.operand reads a planner value's text once, into its kind."""
    assert M.operand("v3") == M.Local("v3")
    assert M.operand("v3.f_ts") == M.Member("v3", "f_ts")
    assert M.operand("ev.f_pid") == M.Member("ev", "f_pid")
    for text in ("5", "-5", "(-5LL)", "2U"):
        assert M.operand(text) == M.Constant(text)
    assert [str(op) for op in OPERANDS.values()] == ["v1", "v3.f_ts", "(-5LL)"]


# --- a node kind no walker knows is an error, never skipped -----------------------------------


@dataclasses.dataclass(frozen=True)
class CWrap(M.CNode):
    """A new expression kind that declares its children: every walker walks into it."""

    child_fields: ClassVar[tuple[str, ...]] = ("term",)
    term: M.CExpr


@dataclasses.dataclass(frozen=True)
class CForgot(M.CNode):
    """A new expression kind that does not say what it holds."""

    term: M.CExpr


def test_a_new_kind_with_children_is_walked_into() -> None:
    """What would have caught the switch bug: inline, a Transformer, rebuilds a kind it has
    no case for from its children, so the arith local inside is replaced."""
    out = arith.inline(CWrap(GT), [ARITH_V1["v1"]])  # type: ignore[arg-type]
    assert isinstance(out, CWrap) and isinstance(out.term, M.CCompare)
    assert isinstance(out.term.left, M.CArith)


def test_a_kind_without_children_raises_in_every_walker() -> None:
    for run in (*CEXPR_WALKERS.values(), *EXPR_WALKERS.values()):
        with pytest.raises(TypeError, match="no case for CForgot"):
            run(CForgot(GT))


def test_an_exhaustive_visitor_refuses_a_kind_it_has_no_case_for() -> None:
    with pytest.raises(TypeError, match="_CEmitter: no case for CWrap"):
        render.c_expr(CWrap(GT))  # type: ignore[arg-type]


def test_not_a_node_raises() -> None:
    with pytest.raises(TypeError, match="no case for str"):
        nodes.Transformer().visit("v1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="no case for int"):
        bind.slots_read(5)  # type: ignore[arg-type]


def test_ir_is_reexported_by_the_model() -> None:
    """model.py keeps `M.Load`, `M.CVar`: the same classes as engine.plan.ir's."""
    for cls in [*CEXPRS, *STEPS, *OPERANDS]:
        assert getattr(M, cls.__name__) is getattr(ir, cls.__name__)


def test_a_misspelled_case_is_refused_where_the_walker_is_defined() -> None:
    with pytest.raises(TypeError, match=r"Typo\.visit_CSwtich: no node class CSwtich"):

        class Typo(nodes.Transformer):
            def visit_CSwtich(self, node: M.CSwitch) -> M.CExpr:
                return node
