"""Arithmetic and bit operations on typed integers, with C's rules made explicit.

Types: an operand narrower than 4 bytes is first widened to s32 (C's integer promotion).
Then both take a common type: the wider of the two; at equal width, unsigned wins; an integer
literal takes the other operand's type (and must fit it). Shifts keep the (promoted) left
operand's type. The result is computed in that type and wraps as C's does.

Refused at validation, since clang or the verifier would refuse (or the result is undefined):
a constant division or modulo by zero, a constant shift by a negative amount or by the
type's width or more, and signed division or modulo (BPF has no signed divide: use unsigned
values, e.g. a difference of u64 timestamps). A division by a variable that is 0 gives 0,
as BPF defines it. Expressions whose operands are all constants are folded here.
"""

from __future__ import annotations

from engine.plan import model as M
from engine.plan.resolve import VT, PlanError, Resolver, Val, ctype_range, int_vt
from engine.spec import expr as E

CONSTANT = ("integer", "enum constant")
INTEGER = VT("int", 8, True, label="integer")


def is_constant(val: Val) -> bool:
    return val.vt.label in CONSTANT


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


def fold(op: str, a: int, b: int) -> int:
    """A constant operation, as C computes it (division truncates toward zero)."""
    if op == "/":
        q = abs(a) // abs(b)
        return q if (a < 0) == (b < 0) else -q
    if op == "%":
        return a - fold("/", a, b) * b
    return {
        "+": a + b, "-": a - b, "*": a * b, "<<": a << b if b >= 0 else 0, ">>": a >> b,
        "&": a & b, "|": a | b, "^": a ^ b,
    }[op]  # fmt: skip


def binop(r: Resolver, node: E.BinOp) -> Val:
    left = r.number(r.value(node.left), node.left)
    right = r.number(r.value(node.right), node.right)
    if is_constant(left) and is_constant(right):
        a, b = int(left.var), int(right.var)
        if op_divides(node.op) and b == 0:
            raise PlanError(f"division by zero (`{node.op} 0`)", node.col)
        if node.op in ("<<", ">>") and not 0 <= b < 64:
            raise PlanError(f"a shift by {b} is outside 0..63", node.col)
        return Val(INTEGER, var=str(wrap(fold(node.op, a, b), "s64")))
    if node.op in ("<<", ">>"):
        ctype = promoted(left.vt.ctype) if not is_constant(left) else promoted(right.vt.ctype)
        if is_constant(left):
            ctype = "s64"
        if is_constant(right):
            b = int(right.var)
            width = int(ctype[1:])
            if not 0 <= b < width:
                raise PlanError(
                    f"a {ctype} shifted by {b}: the amount must be 0..{width - 1}", node.col
                )
    else:
        if is_constant(left):
            ctype = promoted(right.vt.ctype)
        elif is_constant(right):
            ctype = promoted(left.vt.ctype)
        else:
            ctype = common(promoted(left.vt.ctype), promoted(right.vt.ctype))
        if op_divides(node.op):
            if is_constant(right) and int(right.var) == 0:
                raise PlanError(f"division by zero (`{node.op} 0`)", node.col)
            if ctype[0] == "s":
                raise PlanError(
                    f"`{node.op}` on a signed {ctype}: BPF has no signed division; divide "
                    "unsigned values (a difference of u64 times is unsigned)",
                    node.col,
                )
    parts = []
    for val, side in ((left, node.left), (right, node.right)):
        if is_constant(val):
            lo, hi = ctype_range(ctype)
            value = int(val.var)
            if not lo <= value <= hi:
                raise PlanError(f"{value} does not fit a {ctype} ({lo}..{hi})", _col(side))
            parts.append(_literal(value, ctype))
        else:
            parts.append(val.var)
    dest = r.s.local()
    r.s.emit(M.Arith(dest, ctype, node.op, parts[0], parts[1]))
    return Val(int_vt(ctype), var=dest)


def unary(r: Resolver, node: E.Unary) -> Val:
    val = r.number(r.value(node.operand), node.operand)
    if is_constant(val):
        v = int(val.var)
        return Val(INTEGER, var=str(-v if node.op == "-" else ~v))
    ctype = promoted(val.vt.ctype)
    dest = r.s.local()
    r.s.emit(M.Arith(dest, ctype, node.op, "", val.var))
    return Val(int_vt(ctype), var=dest)


def op_divides(op: str) -> bool:
    return op in ("/", "%")


def _literal(value: int, ctype: str) -> str:
    """A typed C literal (the same spelling as engine.codegen.render.c_number)."""
    suffix = {"u64": "ULL", "s64": "LL"}.get(ctype, "U" if ctype[0] == "u" else "")
    if value == -(1 << 63):
        return "(-9223372036854775807LL - 1)"
    return f"({value}{suffix})" if value < 0 else f"{value}{suffix}"


def _col(node: E.Node) -> int:
    return int(getattr(node, "col", 0))
