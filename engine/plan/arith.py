"""Arithmetic and bit operations on typed integers, with C's rules made explicit.

Types: an operand narrower than 4 bytes is first widened to s32 (C's integer promotion).
A constant (a literal, an enum constant, or a folded constant expression) has the type C gives
a decimal literal of its value: s32 if it fits, else s64, else u64. Then both operands take a
common type (C's usual arithmetic conversions): the wider of the two; at equal width, unsigned
wins. Shifts keep the (promoted) left operand's type. The result is computed in that type and
wraps: `ktime_ns + -1` is `ktime_ns - 1`, `args.sport + 3000000000` is an s64. A signed
+ - * << and unary - are computed in the unsigned type of the width (`via`) and converted
back, since C leaves signed overflow undefined and clang optimizes on that.

Refused at validation, since clang or the verifier would refuse (or the result is undefined):
a constant division or modulo by zero, a constant shift by a negative amount or by the
type's width or more, and signed division or modulo (BPF has no signed divide: use unsigned
values, e.g. a difference of u64 timestamps), unless both operands are known not to be
negative (a u8 or u16 promoted to s32, a constant >= 0): then the division is done unsigned,
which gives C's value. A division by a variable that is 0 gives 0 (and `%` by 0 leaves the
dividend), as BPF defines it; the C tests the divisor (`guard`), since C does not define it
(clang folded `x / x` to 1). Arithmetic on pointers is refused (C would scale by the pointee's
size). Expressions whose operands are all constants are folded here, exactly, then wrapped to
64 bits.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from engine.nodes import Transformer
from engine.plan import model as M
from engine.plan.values import VT, PlanError, Val, ValueResolver, VKind, constant_val, int_vt
from engine.spec import expr as E


def is_constant(val: Val) -> bool:
    return val.is_const


def literal_type(value: int) -> str:
    """The type C gives a decimal literal of this value: int, long, or (clang's extension for
    literals past long) unsigned long."""
    if -(1 << 31) <= value < 1 << 31:
        return "s32"
    return "s64" if -(1 << 63) <= value < 1 << 63 else "u64"


def promoted(ctype: str) -> str:
    """C's integer promotion: u8/s8/u16/s16 compute as s32."""
    return "s32" if int(ctype[1:]) < 32 else ctype


def common(a: str, b: str) -> str:
    """The usual arithmetic conversions, for two promoted types."""
    wa, wb = int(a[1:]), int(b[1:])
    if wa != wb:
        return a if wa > wb else b
    return a if a[0] == "u" else b


def wrap(value: int, ctype: str) -> int:
    """`value` as C stores it in `ctype` (two's complement)."""
    bits = int(ctype[1:])
    value &= (1 << bits) - 1
    if ctype[0] == "s" and value >= 1 << (bits - 1):
        value -= 1 << bits
    return value


FOLD_OPS: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
    "<<": lambda a, b: a << b, ">>": lambda a, b: a >> b,
    "&": lambda a, b: a & b, "|": lambda a, b: a | b, "^": lambda a, b: a ^ b,
}  # fmt: skip


def fold(op: str, a: int, b: int) -> int:
    """A constant operation, as C computes it (division truncates toward zero).

    Only `op` is computed: the caller has checked its operands (a shift amount 0..63, a
    divisor not 0), so no other operation's value, such as `1 << 8589934592`, is ever built.
    """
    if op == "/":
        q = abs(a) // abs(b)
        return q if (a < 0) == (b < 0) else -q
    if op == "%":
        return a - fold("/", a, b) * b
    return FOLD_OPS[op](a, b)


def binop(r: ValueResolver, node: E.BinOp) -> Val:
    left = operand_val(r, node.left)
    right = operand_val(r, node.right)
    if is_constant(left) and is_constant(right):
        a, b = _const(left), _const(right)
        if op_divides(node.op) and b == 0:
            raise PlanError(f"division by zero (`{node.op} 0`)", node.col)
        if node.op in ("<<", ">>") and not 0 <= b < 64:
            raise PlanError(f"a shift by {b} is outside 0..63", node.col)
        return constant_val(wrap(fold(node.op, a, b), "s64"))
    via = ""
    if node.op in ("<<", ">>"):
        operand_type(right, node.right)  # refuses pointers
        ctype = "s64" if is_constant(left) else operand_type(left, node.left)
        if is_constant(right):
            b = _const(right)
            width = int(ctype[1:])
            if not 0 <= b < width:
                article = "an" if ctype[0] == "s" else "a"
                raise PlanError(
                    f"{article} {ctype} shifted by {b}: the amount must be 0..{width - 1}",
                    node.col,
                )
    else:
        ctype = common(operand_type(left, node.left), operand_type(right, node.right))
        if op_divides(node.op):
            if is_constant(right) and _const(right) == 0:
                raise PlanError(f"division by zero (`{node.op} 0`)", node.col)
            if ctype[0] == "s" and not (never_negative(left) and never_negative(right)):
                raise PlanError(
                    f"`{node.op}` on a signed {ctype}: BPF has no signed division; divide "
                    "unsigned values (a difference of u64 times is unsigned)",
                    node.col,
                )
            if ctype[0] == "s":
                via = "u" + ctype[1:]  # both >= 0: the unsigned quotient is C's
    if ctype[0] == "s" and node.op in WRAPS:
        via = "u" + ctype[1:]  # two's complement wrap, where C's signed overflow is undefined
    parts: list[M.Operand] = []
    for val in (left, right):
        if is_constant(val):
            value = _const(val)
            if val is right and node.op in ("<<", ">>"):
                parts.append(M.Constant(literal(value, ctype)))  # checked above: 0..width-1
                continue
            parts.append(M.Constant(literal(wrap(value, ctype), ctype)))  # C's conversion
        else:
            parts.append(M.operand(val.var))
    dest = r.s.local()
    guard = op_divides(node.op) and not is_constant(right)
    r.s.emit(M.Arith(dest, ctype, node.op, parts[0], parts[1], via, guard))
    return Val(computed(ctype, left, right), var=dest)


def operand_val(r: ValueResolver, node: E.Node) -> Val:
    """An operand read into a local. A bitfield narrower than 32 bits is read into a 64-bit
    local but computes as C promotes it, as an s32 (`ip.version - 5` is -1, not 2^64 - 1)."""
    raw = r.leaf(node)
    val = r.number(raw, node)
    if raw.is_lvalue and 0 < raw.bits[1] < 32:
        return Val(int_vt("s32"), var=val.var)
    return val


def operand_type(val: Val, node: E.Node) -> str:
    """An operand's type after promotion; a constant's is its literal type (and must be one)."""
    if is_constant(val):
        value = _const(val)
        if not -(1 << 63) <= value < 1 << 64:
            raise PlanError(
                f"{value} does not fit 64 bits (-9223372036854775808..18446744073709551615)",
                _col(node),
            )
        return literal_type(value)
    if val.vt.kind is not VKind.INT:
        raise PlanError(
            f"arithmetic on a '{val.vt.label}' is not supported (numbers only; C would "
            "scale a pointer by its pointee's size)",
            _col(node),
        )
    return promoted(val.vt.ctype)


def never_negative(val: Val) -> bool:
    """Known >= 0 however it is computed: a constant >= 0, or a u8/u16 (promoted to s32)."""
    if is_constant(val):
        return _const(val) >= 0
    return val.vt.ctype[0] == "u"


def unary(r: ValueResolver, node: E.Unary) -> Val:
    val = operand_val(r, node.operand)
    if is_constant(val):
        v = _const(val)
        return constant_val(-v if node.op == "-" else ~v)
    ctype = operand_type(val, node.operand)
    via = "u" + ctype[1:] if node.op == "-" and ctype[0] == "s" else ""  # -INT_MIN wraps
    dest = r.s.local()
    r.s.emit(M.Arith(dest, ctype, node.op, None, M.operand(val.var), via))
    return Val(computed(ctype, val), var=dest)


WRAPS = ("+", "-", "*", "<<")  # signed overflow is undefined in C: computed unsigned


def computed(ctype: str, *operands: Val) -> VT:
    """A result's type, keeping where its operands came from (a user pointer read from state
    plus 8 still points to user memory)."""
    origins = tuple(dict.fromkeys(o for val in operands for o in val.vt.origins))
    return replace(int_vt(ctype), origins=origins)


def op_divides(op: str) -> bool:
    return op in ("/", "%")


def literal(value: int, ctype: str) -> str:
    """A typed C literal (the same spelling as engine.codegen.render.c_number)."""
    suffix = {"u64": "ULL", "s64": "LL"}.get(ctype, "U" if ctype[0] == "u" else "")
    if value == -(1 << 63):
        return "(-9223372036854775807LL - 1)"
    return f"({value}{suffix})" if value < 0 else f"{value}{suffix}"


def _col(node: E.Node) -> int:
    return int(getattr(node, "col", 0))


FILTER_ONLY = (
    "the filter can use this probe's fields and $options; put other conditions in an "
    "alternative's `where`"
)


def fields_only(operand: Callable[[E.Node], Val]) -> Callable[[E.Node], Val]:
    """A filter's operands: fields, constants and arithmetic on them; a member path, an index
    or a call would need steps that a filter (one C expression) cannot hold."""

    def leaf(node: E.Node) -> Val:
        if isinstance(node, (E.Attr, E.Index, E.Call, E.Cast)):
            raise PlanError(FILTER_ONLY, _col(node))
        return operand(node)

    return leaf


def inline(expr: M.CExpr, steps: list[M.Step]) -> M.CExpr:
    """A filter's arithmetic folded into its one C expression: each local an `arith` step
    computed becomes that computation (CArith). A filter reads only the event's slots, so any
    other step means it named something else, which only a `where` can read."""
    if any(isinstance(s, (M.Test, M.Select)) for s in steps):
        raise PlanError(
            "a comparison used as a number, or `a if c else b`, cannot be part of a filter "
            "(one C condition): compute it in a field, then filter on that field"
        )
    arith = {s.dest: s for s in steps if isinstance(s, M.Arith)}
    if len(arith) != len(steps):
        raise PlanError(FILTER_ONLY)
    return M.rewrite(Inline(arith), expr)


class Inline(Transformer):
    """Replaces each arith local by its computation. Only a CVar can name one; every other
    node kind is rebuilt from its children by the base class, so a new kind (a switch once)
    cannot keep a local the filter never declares."""

    def __init__(self, arith: dict[str, M.Arith]) -> None:
        self.arith = arith

    def part(self, op: M.Operand) -> M.Operand | M.CArith:
        step = self.arith.get(op.name) if isinstance(op, M.Local) else None
        if step is None:
            return op
        left = None if step.left is None else self.part(step.left)
        return M.CArith(step.op, left, self.part(step.right), step.ctype, step.via, step.guard)

    def visit_CVar(self, node: M.CVar) -> M.CExpr:
        if node.name not in self.arith:
            return node
        found = self.part(M.Local(node.name))
        assert isinstance(found, M.CArith)
        return found

    def visit_CArith(self, node: M.CArith) -> M.CExpr:
        return node  # already inlined: its operands are event slots and literals

    def visit_CInSet(self, node: M.CInSet) -> M.CExpr:
        left = self.visit(node.left)
        assert isinstance(left, M.CVar), "a set's left side is an event slot"
        return M.CInSet(left, node.set, node.negate)


def _const(val: Val) -> int:
    assert val.const is not None
    return val.const
