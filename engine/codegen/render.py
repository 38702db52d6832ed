"""Render: the model -> BPF C text and a Python decoder module, through Jinja templates.

One Jinja environment (StrictUndefined, trim/lstrip blocks) loads templates shipped as the
`engine.templates` package, so an installed engine finds them as the source tree does.
Filter and `where` trees become C here, in `c_expr`: it writes only generated local names,
operators and typed integer literals.
"""

from __future__ import annotations

import functools
import types
from importlib import resources
from typing import Any

import jinja2

from engine.attach import KINDS, arg_c
from engine.nodes import Visitor
from engine.plan import model as M
from engine.plan import strmatch
from engine.plan.resources import declare, deleted_counter, inserted_counter, state_map_name

CTYPES = {
    "u8": "ctypes.c_uint8",
    "u16": "ctypes.c_uint16",
    "u32": "ctypes.c_uint32",
    "u64": "ctypes.c_uint64",
    "s8": "ctypes.c_int8",
    "s16": "ctypes.c_int16",
    "s32": "ctypes.c_int32",
    "s64": "ctypes.c_int64",
    "char": "ctypes.c_char",
}


class _PackageLoader(jinja2.BaseLoader):
    """Templates from the engine.templates package (works from a wheel or a checkout)."""

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Any]:
        node = resources.files("engine.templates")
        for part in template.split("/"):
            node = node / part
        try:
            source = node.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            raise jinja2.TemplateNotFound(template) from None
        return source, template, lambda: True


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=_PackageLoader(),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["c_expr"] = c_expr
    env.filters["arg_c"] = arg_c
    env.filters["attach_partial"] = lambda kind: KINDS[kind].partial  # the kind names it
    env.filters["state_map"] = state_map_name
    env.filters["inserted_counter"] = inserted_counter
    env.filters["deleted_counter"] = deleted_counter
    env.filters["pyrepr"] = repr
    env.filters["slot"] = M.slot_name
    env.tests["ctrue"] = lambda e: isinstance(e, M.CTrue)
    env.globals["ctypes_names"] = CTYPES
    env.globals["step_partial"] = step_partial
    return env


def step_partial(step: M.Step) -> str:
    """The template a step names (its `partial`); a step kind without one is a bug."""
    name = getattr(step, "partial", None)
    if name is None:
        raise TypeError(f"no template for step kind {step.kind}")
    try:
        environment().get_template(name)
    except jinja2.TemplateNotFound:
        raise TypeError(f"no template for step kind {step.kind}: {name} is missing") from None
    return str(name)


def render_c(program: M.Program) -> str:
    """The BPF C program for bcc."""
    template = environment().get_template("program.c.j2")
    return template.render(program=program, resources=declare(program))


def render_decoder(plan: M.Plan) -> str:
    """The Python decoder module's source."""
    template = environment().get_template("decoder.py.j2")
    return template.render(plan=plan)


def load_decoder(plan: M.Plan) -> types.ModuleType:
    """Render the decoder and load it as a module (its layout asserts run on import)."""
    source = render_decoder(plan)
    module = types.ModuleType(f"engine_decoder_{plan.name}")
    exec(compile(source, f"<decoder {plan.name}>", "exec"), module.__dict__)
    return module


# --- expression emitter -------------------------------------------------------------------


def c_number(num: M.CNum) -> str:
    """A typed literal: suffixes keep 64-bit constants 64-bit, negatives parenthesized."""
    suffix = {"u64": "ULL", "s64": "LL"}.get(num.ctype, "U" if num.ctype[0] == "u" else "")
    if num.value == -(1 << 63):  # its literal would not fit: clang would make it unsigned
        return "(-9223372036854775807LL - 1)"
    text = f"{num.value}{suffix}"
    return f"({text})" if num.value < 0 else text


def c_expr(expr: M.CExpr) -> str:
    """C for a bound expression tree; always parenthesized, so precedence never leaks."""
    return _CEmitter().visit(expr)


class _CEmitter(Visitor[str]):
    """One case per expression kind (`exhaustive`: a kind without one is a TypeError)."""

    exhaustive = True

    def visit_CTrue(self, expr: M.CTrue) -> str:
        return "(1)"

    def visit_CVar(self, expr: M.CVar) -> str:
        return expr.name

    def visit_CNum(self, expr: M.CNum) -> str:
        return c_number(expr)

    def visit_COption(self, expr: M.COption) -> str:
        raise ValueError(f"option ${expr.option} is not bound")

    def visit_CCompare(self, expr: M.CCompare) -> str:
        return f"({self.visit(expr.left)} {expr.op} {self.visit(expr.right)})"

    def visit_CIn(self, expr: M.CIn) -> str:
        if isinstance(expr.values, M.COption):
            raise ValueError(f"option ${expr.values.option} is not bound")
        left = self.visit(expr.left)
        if not expr.values:
            return "(1)" if expr.negate else "(0)"
        terms = " || ".join(f"{left} == {c_number(v)}" for v in expr.values)
        return f"(!({terms}))" if expr.negate else f"({terms})"

    def visit_CInSet(self, expr: M.CInSet) -> str:
        found = f"({expr.set.map}.lookup(&({expr.set.ctype}){{{expr.left.name}}}) != 0)"
        return f"(!{found})" if expr.negate else found

    def visit_CStrEq(self, expr: M.CStrEq) -> str:
        if isinstance(expr.value, M.COption):
            raise ValueError(f"option ${expr.value.option} is not bound")
        text = strmatch.c_text(expr.slot, expr.size, expr.kind, expr.value)
        return f"(!{text})" if expr.negate else text

    def visit_CInetEq(self, expr: M.CInetEq) -> str:
        if isinstance(expr.value, M.COption):
            raise ValueError(f"option ${expr.value.option} is not bound")
        family, packed = expr.value
        terms = [f"{expr.slot}.family == {family}"]
        terms += [f"{expr.slot}.addr[{i}] == {b}" for i, b in enumerate(packed)]
        text = "(" + " && ".join(terms) + ")"
        return f"(!{text})" if expr.negate else text

    def visit_CBool(self, expr: M.CBool) -> str:
        return "(" + f" {expr.op} ".join(self.visit(t) for t in expr.terms) + ")"

    def visit_CNot(self, expr: M.CNot) -> str:
        return f"(!{self.visit(expr.term)})"

    def visit_CSwitch(self, expr: M.CSwitch) -> str:
        raise ValueError(f"switch ${expr.option} is not bound")

    def visit_CArith(self, expr: M.CArith) -> str:
        cast = expr.via or expr.ctype
        right = f"({cast}){self.operand(expr.right)}"
        if expr.left is None:
            return f"(({expr.ctype})({expr.op}{right}))"
        left = f"({cast}){self.operand(expr.left)}"
        if expr.guard:  # BPF's x / 0 == 0, x % 0 == x (the `arith` step's guard)
            zero = left if expr.op == "%" else "0"
            return f"(({expr.ctype})({right} != 0 ? {left} {expr.op} {right} : {zero}))"
        return f"(({expr.ctype})({left} {expr.op} {right}))"

    def operand(self, part: M.Operand | M.CArith) -> str:
        return self.visit(part) if isinstance(part, M.CArith) else str(part)
