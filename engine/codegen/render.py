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

from engine.plan import model as M

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
    env.filters["pyrepr"] = repr
    env.filters["slot"] = M.slot_name
    env.tests["ctrue"] = lambda e: isinstance(e, M.CTrue)
    env.globals["ctypes_names"] = CTYPES
    env.globals["fail"] = _fail
    return env


def _fail(message: str) -> str:
    """A template reached a case it has no text for: a bug, never silently empty C."""
    raise TypeError(message)


def render_c(program: M.Program) -> str:
    """The BPF C program for bcc."""
    return environment().get_template("program.c.j2").render(program=program)


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
    if isinstance(expr, M.CTrue):
        return "(1)"
    if isinstance(expr, M.CVar):
        return expr.name
    if isinstance(expr, M.CNum):
        return c_number(expr)
    if isinstance(expr, M.CCompare):
        return f"({c_expr(expr.left)} {expr.op} {c_expr(expr.right)})"
    if isinstance(expr, M.CIn):
        if isinstance(expr.values, M.COption):
            raise ValueError(f"option ${expr.values.option} is not bound")
        left = c_expr(expr.left)
        if not expr.values:
            return "(1)" if expr.negate else "(0)"
        terms = " || ".join(f"{left} == {c_number(v)}" for v in expr.values)
        return f"(!({terms}))" if expr.negate else f"({terms})"
    if isinstance(expr, M.CInSet):
        found = f"({expr.set.map}.lookup(&({expr.set.ctype}){{{expr.left.name}}}) != 0)"
        return f"(!{found})" if expr.negate else found
    if isinstance(expr, M.CStrEq):
        if isinstance(expr.value, M.COption):
            raise ValueError(f"option ${expr.value.option} is not bound")
        data = expr.value + (b"\0" if len(expr.value) < expr.size else b"")
        text = "(" + " && ".join(f"{expr.slot}[{i}] == {b}" for i, b in enumerate(data)) + ")"
        return f"(!{text})" if expr.negate else text
    if isinstance(expr, M.CBool):
        return "(" + f" {expr.op} ".join(c_expr(t) for t in expr.terms) + ")"
    if isinstance(expr, M.CNot):
        return f"(!{c_expr(expr.term)})"
    if isinstance(expr, M.COption):
        raise ValueError(f"option ${expr.option} is not bound")
    if isinstance(expr, M.CArith):
        cast = expr.via or expr.ctype
        right = f"({cast}){c_arith_operand(expr.right)}"
        if expr.left is None:
            return f"(({expr.ctype})({expr.op}{right}))"
        left = f"({cast}){c_arith_operand(expr.left)}"
        if expr.guard:  # BPF's x / 0 == 0, x % 0 == x (the `arith` step's guard)
            zero = left if expr.op == "%" else "0"
            return f"(({expr.ctype})({right} != 0 ? {left} {expr.op} {right} : {zero}))"
        return f"(({expr.ctype})({left} {expr.op} {right}))"
    raise TypeError(f"not an expression: {expr!r}")


def c_arith_operand(part: str | M.CArith) -> str:
    return c_expr(part) if isinstance(part, M.CArith) else part
