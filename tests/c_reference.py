"""A reference evaluator of the spec language's integer arithmetic, written from C's rules and
BPF's, independently of engine/plan/arith.py (which it checks: tests/unit/test_arith_reference.py
for types, tests/kernel/test_arith_kernel_reference.py for values computed in the kernel).

C (C11 6.3.1.1, 6.3.1.8, 6.5.5-6.5.7): an operand of a type narrower than int is promoted to
int (int holds every u8/s8/u16/s16 value); the usual arithmetic conversions then bring both
operands to one type: the same signedness -> the wider; an unsigned of rank >= the signed's ->
the unsigned; else the signed, which here is always wider and so holds every value of the
unsigned. A shift has its promoted left operand's type. Division truncates toward zero.

BPF (Documentation/bpf/standardization/instruction-set.rst): `dst = (src != 0) ? (dst / src) :
0` and `dst = (src != 0) ? (dst % src) : dst`.

Where C leaves a result undefined or gives a literal no value-based type, docs/spec.md
("Arithmetic") settles it, and this evaluator follows the docs:
- a constant's type is C's type of a *decimal* literal of its value (int, long, unsigned long),
  whatever its spelling (hex, or negative: `-5` is one constant, an int);
- a constant left operand of a shift is a long (s64);
- signed + - * << and unary - wrap (two's complement), as unsigned arithmetic does;
- a division or modulo by zero gives BPF's value;
- refused (the planner rejects these, so the generator does not make them): a signed division
  or modulo unless both operands cannot be negative (a constant >= 0 or an unsigned-typed
  value), a constant divisor 0, a constant shift amount outside 0..width-1 of the shifted type.
A shift by a variable amount of the width or more stays undefined (the generator masks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Union

from hypothesis import strategies as st


@dataclass(frozen=True)
class CType:
    bits: int
    signed: bool

    @property
    def name(self) -> str:
        return f"{'s' if self.signed else 'u'}{self.bits}"

    def convert(self, value: int) -> int:
        """C's conversion of any integer to this type (modulo 2^bits; signed: two's complement,
        clang's implementation-defined choice for out-of-range values)."""
        value %= 1 << self.bits
        if self.signed and value >= 1 << (self.bits - 1):
            value -= 1 << self.bits
        return value


def ctype(name: str) -> CType:
    return CType(int(name[1:]), name[0] == "s")


INT, LONG, ULONG = CType(32, True), CType(64, True), CType(64, False)


class Refused(Exception):
    """The planner refuses this expression (so the generator avoids it)."""


@dataclass(frozen=True)
class Var:
    name: str  # spec text, e.g. `x.a`
    type: CType


@dataclass(frozen=True)
class Const:
    value: int


@dataclass(frozen=True)
class Bin:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Un:
    op: str  # - or ~
    operand: Node


@dataclass(frozen=True)
class Cmp:
    """A comparison as a value: an int, 1 or 0."""

    op: str  # == != < <= > >=
    left: Node
    right: Node


@dataclass(frozen=True)
class Cond:
    """`then if test else other`: C's `test ? then : other`."""

    test: Node
    then: Node
    other: Node


Node = Union[Var, Const, Bin, Un, Cmp, Cond]


def text(node: Node) -> str:
    """Spec text, every operation parenthesized."""
    if isinstance(node, Var):
        return node.name
    if isinstance(node, Const):
        return f"({node.value})" if node.value < 0 else str(node.value)
    if isinstance(node, Un):
        return f"({node.op}{text(node.operand)})"
    if isinstance(node, Cond):
        return f"({text(node.then)} if {text(node.test)} else {text(node.other)})"
    return f"({text(node.left)} {node.op} {text(node.right)})"


def const_type(value: int) -> CType:
    if -(1 << 31) <= value < 1 << 31:
        return INT
    if -(1 << 63) <= value < 1 << 63:
        return LONG
    if 0 <= value < 1 << 64:
        return ULONG
    raise Refused(f"{value} is not a 64-bit constant")


def promote(t: CType) -> CType:
    return INT if t.bits < 32 else t


def declared(node: Node) -> CType:
    """The type before promotion: a value's own, a constant's literal type, an operation's."""
    if isinstance(node, Var):
        return node.type
    if isinstance(node, Const):
        return const_type(node.value)
    return type_of(node)


def usual(a: CType, b: CType) -> CType:
    """C11 6.3.1.8 on two promoted types (rank is width here)."""
    if a == b:
        return a
    if a.signed == b.signed:
        return a if a.bits > b.bits else b
    unsigned, signed = (a, b) if not a.signed else (b, a)
    if unsigned.bits >= signed.bits:
        return unsigned
    return signed  # wider, so it holds every value of the unsigned type


def cannot_be_negative(node: Node) -> bool:
    if isinstance(node, Const):
        return node.value >= 0
    return not declared(node).signed


def type_of(node: Node) -> CType:
    """The type the expression computes in; Refused where the planner refuses."""
    if isinstance(node, (Var, Const)):
        return promote(declared(node))
    if isinstance(node, Un):
        if isinstance(node.operand, Const):
            raise Refused("a constant expression (folded by the planner: not this evaluator's)")
        return type_of(node.operand)
    if isinstance(node, Cond):
        if all(isinstance(n, Const) for n in (node.test, node.then, node.other)):
            raise Refused("a constant expression (folded by the planner: not this evaluator's)")
        if not isinstance(node.test, Const):
            type_of(node.test)
        return usual(promote(declared(node.then)), promote(declared(node.other)))
    if isinstance(node, Cmp):
        if isinstance(node.left, Const) and isinstance(node.right, Const):
            raise Refused("a comparison of two constants")
        for side, other in ((node.left, node.right), (node.right, node.left)):
            if isinstance(side, Const):
                t = declared(other)  # the planner types a constant as the other side
                lo = -(1 << (t.bits - 1)) if t.signed else 0
                hi = (1 << (t.bits - 1 if t.signed else t.bits)) - 1
                if not lo <= side.value <= hi:
                    raise Refused(f"{side.value} does not fit a {t.name}")
            else:
                type_of(side)
        return INT
    if isinstance(node.left, Const) and isinstance(node.right, Const):
        raise Refused("a constant expression (folded by the planner: not this evaluator's)")
    if node.op in ("<<", ">>"):
        t = LONG if isinstance(node.left, Const) else type_of(node.left)
        type_of(node.right)
        if isinstance(node.right, Const) and not 0 <= node.right.value < t.bits:
            raise Refused(f"a {t.name} shifted by {node.right.value}")
        return t
    t = usual(type_of(node.left), type_of(node.right))
    if node.op in ("/", "%"):
        if isinstance(node.right, Const) and node.right.value == 0:
            raise Refused("a constant divisor 0")
        if t.signed and not (cannot_be_negative(node.left) and cannot_be_negative(node.right)):
            raise Refused("a signed division")
    return t


def evaluate(node: Node, env: Mapping[str, int]) -> int:
    """The value, in type_of(node)'s range; `env` maps each Var's name to its value."""
    if isinstance(node, Var):
        return node.type.convert(env[node.name])
    if isinstance(node, Const):
        return node.value
    t = type_of(node)
    if isinstance(node, Cond):
        chosen = node.then if evaluate(node.test, env) != 0 else node.other
        return t.convert(evaluate(chosen, env))
    if isinstance(node, Cmp):
        a, b = evaluate(node.left, env), evaluate(node.right, env)
        if not isinstance(node.left, Const) and not isinstance(node.right, Const):
            common = usual(type_of(node.left), type_of(node.right))
            a, b = common.convert(a), common.convert(b)  # C's conversions before comparing
        ops = {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}
        return int(ops[node.op])
    if isinstance(node, Un):
        x = t.convert(evaluate(node.operand, env))
        return t.convert(-x if node.op == "-" else ~x)
    a = evaluate(node.left, env)
    b = evaluate(node.right, env)
    if node.op in ("<<", ">>"):
        a = t.convert(a)
        return t.convert(a << b if node.op == "<<" else a >> b)  # >> of a negative: arithmetic
    a, b = t.convert(a), t.convert(b)
    if node.op == "/":
        return t.convert(_cdiv(a, b) if b else 0)
    if node.op == "%":
        return t.convert(a - _cdiv(a, b) * b if b else a)
    result = {"+": a + b, "-": a - b, "*": a * b, "&": a & b, "|": a | b, "^": a ^ b}[node.op]
    return t.convert(result)


def _cdiv(a: int, b: int) -> int:
    """C's quotient: truncated toward zero."""
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


# --- the spec the tests run: typed values from a syscall's six arguments --------------------

# A state map's members convert the raw arguments (u64) to each integer type, as C's
# assignment does; the exit probe reads them back as `x.a` .. `x.h`.
MEMBERS = {
    "a": "u8",
    "b": "s8",
    "c": "u16",
    "d": "s16",
    "e": "u32",
    "f": "s32",
    "g": "u64",
    "h": "s64",
}
ARG_OF = {"a": 0, "b": 1, "c": 2, "d": 3, "e": 4, "f": 5, "g": 0, "h": 1}  # syscall argument
LEAVES = tuple(Var(f"x.{m}", ctype(t)) for m, t in MEMBERS.items())
NR = 0x1F0F0  # no such syscall: ENOSYS, nothing done, but raw_syscalls/* see its arguments


def env_of(args: tuple[int, ...]) -> dict[str, int]:
    """The members' values (before conversion) for one call's six u64 arguments."""
    return {f"x.{m}": args[ARG_OF[m]] for m in MEMBERS}


def spec_text(exprs: list[Node]) -> str:
    values = "".join(f"          {m}: args.args[{ARG_OF[m]}]\n" for m in MEMBERS)
    fields = "      tag: x.g\n" + "".join(f"      e{i}: {text(e)}\n" for i, e in enumerate(exprs))
    return f"""\
name: arithref
description: Random arithmetic on a syscall's arguments, against tests/c_reference.py.
state:
  vals: {{key: u32, value: {{{", ".join(f"{m}: {t}" for m, t in MEMBERS.items())}}}}}
probes:
  - name: enter
    attach:
      - tracepoint: raw_syscalls/sys_enter
        where: args.id == {NR}
    store:
      vals:
        key: tid
        value:
{values}  - name: exit
    attach:
      - tracepoint: raw_syscalls/sys_exit
        where: args.id == {NR}
    let:
      x: take(vals, tid)
    fields:
{fields}output:
  columns: [tag, {", ".join(f"e{i}" for i in range(len(exprs)))}]
"""


# --- random expressions -----------------------------------------------------------------------

BINARY = ("+", "-", "*", "/", "%", "<<", ">>", "&", "|", "^")
SAFE = ("+", "-", "*", "&", "|", "^")  # never refused on valid operands
EDGES = tuple(
    sorted(
        {
            v + d
            for v in (0, 1 << 7, 1 << 8, 1 << 15, 1 << 16, 1 << 31, 1 << 32, 1 << 63)
            for d in (-1, 0, 1)
        }
        | {-v for v in (1, 2, 128, 129, 32768, 1 << 31, (1 << 31) + 1, 1 << 63)}
        | {3, 5, 7, 1000, 3000000000, (1 << 64) - 1}
    )
)


def constants() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(EDGES), st.integers(-(1 << 63), (1 << 64) - 1))


def arguments() -> st.SearchStrategy[int]:
    """A syscall argument (a u64): edges of every width, or anything."""
    edges = [v % (1 << 64) for v in EDGES]
    return st.one_of(st.sampled_from(edges), st.integers(0, (1 << 64) - 1))


COMPARE = ("==", "!=", "<", "<=", ">", ">=")


@st.composite
def choices(draw: st.DrawFn, depth: int, valid: bool) -> Node:
    """A comparison as a value, or `then if test else other` (its test often a comparison);
    a constant arm at times. When the planner would refuse it, a leaf instead."""
    left = draw(expressions(depth, valid))
    right = draw(st.one_of(expressions(depth, valid), st.builds(Const, constants())))
    test: Node = Cmp(draw(st.sampled_from(COMPARE)), left, right)
    if draw(st.booleans()):
        then = draw(st.one_of(expressions(depth, valid), st.builds(Const, constants())))
        other = draw(st.one_of(expressions(depth, valid), st.builds(Const, constants())))
        if draw(st.integers(0, 3)) == 0:
            test = left  # a bare value as the test: nonzero is true
        test = Cond(test, then, other)
    try:
        type_of(test)
    except Refused:
        return draw(st.sampled_from(LEAVES))
    return test


@st.composite
def expressions(draw: st.DrawFn, depth: int = 3, valid: bool = True) -> Node:
    """A random tree over LEAVES, with no operation on constants alone (the planner folds
    those). `valid`: only what the planner accepts (shift amounts in range or masked, no signed
    division, no constant divisor 0); else anything, to compare refusals."""
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(LEAVES))
    if draw(st.integers(0, 7)) == 0:
        return Un(draw(st.sampled_from("-~")), draw(expressions(depth - 1, valid)))
    if draw(st.integers(0, 9)) == 0:
        return draw(choices(depth - 1, valid))
    op = draw(st.sampled_from(BINARY))
    left = draw(expressions(depth - 1, valid))
    right = draw(expressions(depth - 1, valid))
    side = draw(st.integers(0, 4))  # a constant on the right, on the left, x OP x, or none
    if side == 0:
        right = Const(draw(constants()))
    elif side == 1:
        left = Const(draw(constants()))
    elif side == 2:
        right = left  # `x - x`, `x / x`: identities a compiler sees through
    node = Bin(op, left, right)
    if not valid:
        return node
    if op in ("<<", ">>"):
        bits = LONG.bits if isinstance(left, Const) else type_of(left).bits
        if isinstance(right, Const):
            return Bin(op, left, Const(draw(st.integers(0, bits - 1))))
        return Bin(op, left, Bin("&", right, Const(bits - 1)))  # a variable amount, masked
    if op in ("/", "%") and isinstance(right, Const) and right.value == 0:
        node = Bin(op, left, Const(draw(st.integers(1, 1000))))
    try:
        type_of(node)
    except Refused:
        node = Bin(draw(st.sampled_from(SAFE)), left, node.right)
    return node
