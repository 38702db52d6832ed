"""Spec expressions -> a small, whitelisted syntax tree.

Python's `ast` (eval mode) does the parsing; anything outside the whitelist is an error with
its column. Two spellings Python lacks are mapped first without moving columns: `$name`
(an option placeholder; `$` becomes `_` and the column is remembered), a Python keyword as a
member name (`args.from`: its first letter becomes `_`, likewise remembered) and a trailing
`EXPR as TYPE` cast. Nothing of the expression's text reaches generated C: later stages
turn names into BTF offsets and generated locals, and numbers into typed literals.
"""

from __future__ import annotations

import ast
import io
import keyword
import re
import tokenize
import warnings
from dataclasses import dataclass
from typing import ClassVar, Union

from engine import nodes

MAX_LENGTH = 1000
MAX_DEPTH = 32

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CAST = re.compile(
    r"^(?P<expr>.*\S)\s+as\s+(?P<type>(?:struct\s+|union\s+)?[A-Za-z_][A-Za-z0-9_]*)\s*$"
)


class ExprError(Exception):
    """A parse error at a 0-based column of the expression."""

    def __init__(self, message: str, col: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.col = col


class ExprNode(nodes.Node):
    """A node of a parsed spec expression."""


@dataclass(frozen=True)
class Num(ExprNode):
    child_fields: ClassVar[tuple[str, ...]] = ()
    value: int
    col: int


@dataclass(frozen=True)
class Str(ExprNode):
    """A string constant, compared with a string field in a filter (ASCII, as all expressions)."""

    child_fields: ClassVar[tuple[str, ...]] = ()

    value: str
    col: int


@dataclass(frozen=True)
class Name(ExprNode):
    child_fields: ClassVar[tuple[str, ...]] = ()
    name: str
    col: int


@dataclass(frozen=True)
class Option(ExprNode):
    """A `$name` placeholder for a spec option's value."""

    child_fields: ClassVar[tuple[str, ...]] = ()

    name: str
    col: int


@dataclass(frozen=True)
class Attr(ExprNode):
    child_fields: ClassVar[tuple[str, ...]] = ("base",)
    base: Node
    attr: str
    col: int


@dataclass(frozen=True)
class Index(ExprNode):
    child_fields: ClassVar[tuple[str, ...]] = ("base",)
    base: Node
    index: int
    col: int


@dataclass(frozen=True)
class Call(ExprNode):
    child_fields: ClassVar[tuple[str, ...]] = ("args",)
    func: str
    args: tuple[Node, ...]
    col: int


@dataclass(frozen=True)
class ListOf(ExprNode):
    child_fields: ClassVar[tuple[str, ...]] = ("items",)
    items: tuple[Node, ...]
    col: int


@dataclass(frozen=True)
class Compare(ExprNode):
    child_fields: ClassVar[tuple[str, ...]] = ("left", "right")
    op: str  # == != < <= > >= in notin
    left: Node
    right: Node
    col: int


@dataclass(frozen=True)
class BoolOp(ExprNode):
    child_fields: ClassVar[tuple[str, ...]] = ("values",)
    op: str  # and | or
    values: tuple[Node, ...]
    col: int


@dataclass(frozen=True)
class Not(ExprNode):
    child_fields: ClassVar[tuple[str, ...]] = ("operand",)
    operand: Node
    col: int


@dataclass(frozen=True)
class Cast(ExprNode):
    """`EXPR as TYPE`: reinterpret a pointer (or integer) as a pointer to a kernel type."""

    child_fields: ClassVar[tuple[str, ...]] = ("expr",)

    expr: Node
    type_name: str  # "sock", "struct sock" or "union x"
    col: int


@dataclass(frozen=True)
class BinOp(ExprNode):
    """Arithmetic or bit operation: + - * / % << >> & | ^ (`//` is `/`)."""

    child_fields: ClassVar[tuple[str, ...]] = ("left", "right")

    op: str
    left: Node
    right: Node
    col: int  # the operator's column


@dataclass(frozen=True)
class Unary(ExprNode):
    """`-x` or `~x` on an expression."""

    child_fields: ClassVar[tuple[str, ...]] = ("operand",)

    op: str
    operand: Node
    col: int


@dataclass(frozen=True)
class IfElse(ExprNode):
    """`a if cond else b`: C's `cond ? a : b`, typed by C's rules for the two arms."""

    child_fields: ClassVar[tuple[str, ...]] = ("test", "then", "other")

    test: Node
    then: Node
    other: Node
    col: int  # the `if`'s column


Node = Union[
    Num,
    Str,
    Name,
    Option,
    Attr,
    Index,
    Call,
    ListOf,
    Compare,
    BoolOp,
    Not,
    Cast,
    BinOp,
    Unary,
    IfElse,
]

_BIN_OPS: dict[type, str] = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "/", ast.Mod: "%",
    ast.LShift: "<<", ast.RShift: ">>", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^",
}  # fmt: skip

_COMPARE_OPS: dict[type, str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "notin",
}


def parse(text: str, *, allow_cast: bool = False) -> Node:
    """Parse one expression; raise ExprError with a 0-based column on anything not allowed."""
    if not text.strip():
        raise ExprError("empty expression")
    if len(text) > MAX_LENGTH:
        raise ExprError(f"expression too long ({len(text)} characters; at most {MAX_LENGTH})")
    for i, ch in enumerate(text):
        if not (" " <= ch <= "~"):
            raise ExprError(f"unexpected character {ch!r} in expression (ASCII only)", i)
    cast = _CAST.match(text)
    if cast and "as" not in text[: cast.start("expr")].split():
        if not allow_cast:
            raise ExprError(
                "a cast (`as TYPE`) is allowed only in `let` and field values", cast.end("expr") + 1
            )
        inner = _parse_plain(cast.group("expr"))
        type_name = " ".join(cast.group("type").split())
        return Cast(inner, type_name, cast.start("type"))
    return _parse_plain(text)


def _parse_plain(text: str) -> Node:
    # Columns where the text was respelled for Python: "$" (an option) or a keyword used as
    # a member name (`args.from`, `args.pass`: tracepoint fields), whose first letter is "_".
    marks: dict[int, str] = {}
    chars = list(text)
    for i, ch in enumerate(text):
        if ch == "$":
            if not _IDENT.match(text, i + 1):
                raise ExprError("expected an option name after '$'", i)
            marks[i] = "$"
            chars[i] = "_"
    for i, word in _keyword_members("".join(chars)):
        marks[i] = word
        chars[i] = "_"
    try:
        with warnings.catch_warnings():
            # `1and x` or `0x1for`: Python warns (on stderr) and reads on; here it is an error
            warnings.simplefilter("error", SyntaxWarning)
            tree = ast.parse("".join(chars), mode="eval")
    except SyntaxError as exc:
        col = max((exc.offset or 1) - 1, 0)
        raise ExprError(f"syntax error: {exc.msg}", col) from None
    except (ValueError, MemoryError, RecursionError):
        raise ExprError("expression cannot be parsed (too deeply nested?)") from None
    _SOURCE.append(text)
    try:
        return _convert(tree.body, marks, 0)
    finally:
        _SOURCE.pop()


def _keyword_members(text: str) -> list[tuple[int, str]]:
    """(column, word) of each Python keyword right after a `.` (outside strings)."""
    found: list[tuple[int, str]] = []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return found  # ast.parse says what is wrong
    for before, tok in zip(tokens, tokens[1:]):
        is_dot = before.type == tokenize.OP and before.string == "."
        word = tok.type == tokenize.NAME and keyword.iskeyword(tok.string)
        if is_dot and word and tok.start[0] == 1:  # expressions are one line
            found.append((tok.start[1], tok.string))
    return found


def _convert(node: ast.expr, marks: dict[int, str], depth: int) -> Node:
    if depth > MAX_DEPTH:
        raise ExprError(f"expression nested deeper than {MAX_DEPTH}", node.col_offset)
    col = node.col_offset
    sub = depth + 1
    if isinstance(node, ast.Constant):
        if isinstance(node.value, str):
            # escapes such as "\udc80" or "\xff" make what the text check could not see
            bad = next((ch for ch in node.value if not " " <= ch <= "~"), None)
            if bad is not None:
                raise ExprError(f"a string may hold printable ASCII only, not {bad!a}", col)
            return Str(node.value, col)
        if isinstance(node.value, bool) or not isinstance(node.value, int):
            raise ExprError(f"only integers and strings are allowed, not {node.value!r}", col)
        return Num(node.value, col)
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            value = node.operand.value
            if isinstance(value, int) and not isinstance(value, bool):
                return Num(-value, col)
        if isinstance(node.op, ast.Not):
            return Not(_convert(node.operand, marks, sub), col)
        if isinstance(node.op, (ast.USub, ast.Invert)):
            op = "-" if isinstance(node.op, ast.USub) else "~"
            return Unary(op, _convert(node.operand, marks, sub), col)
        raise ExprError("only `not`, `-` and `~` can stand before a value", col)
    if isinstance(node, ast.BinOp):
        bop = _BIN_OPS.get(type(node.op))
        if bop is None:
            raise ExprError("`**` and `@` are not allowed; use * and shifts", col)
        left = _convert(node.left, marks, sub)
        right = _convert(node.right, marks, sub)
        # the operator's column: just past the left operand, skipping spaces and parentheses
        return BinOp(bop, left, right, _operator_col(node))
    if isinstance(node, ast.Name):
        if marks.get(col) == "$":
            return Option(node.id[1:], col)
        return Name(node.id, col)
    if isinstance(node, ast.Attribute):
        attr_col = (node.end_col_offset or col) - len(node.attr)
        attr = marks.get(attr_col, node.attr)  # a keyword member, spelled back
        return Attr(_convert(node.value, marks, sub), attr, attr_col)
    if isinstance(node, ast.Subscript):
        index = node.slice
        if not (isinstance(index, ast.Constant) and type(index.value) is int and index.value >= 0):
            raise ExprError("an index must be a non-negative integer constant", index.col_offset)
        return Index(_convert(node.value, marks, sub), index.value, col)
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.keywords:
            raise ExprError("only calls of the engine's helpers, like transport_header(skb)", col)
        args = tuple(_convert(a, marks, sub) for a in node.args)
        return Call(node.func.id, args, col)
    if isinstance(node, (ast.List, ast.Tuple)):
        return ListOf(tuple(_convert(e, marks, sub) for e in node.elts), col)
    if isinstance(node, ast.BoolOp):
        op = "and" if isinstance(node.op, ast.And) else "or"
        return BoolOp(op, tuple(_convert(v, marks, sub) for v in node.values), col)
    if isinstance(node, ast.Compare):
        return _compare(node, marks, sub)
    if isinstance(node, ast.IfExp):
        then = _convert(node.body, marks, sub)
        test = _convert(node.test, marks, sub)
        other = _convert(node.orelse, marks, sub)
        return IfElse(test, then, other, _keyword_col(node.body, "if"))
    raise ExprError(f"{_describe(node)} is not allowed in an expression", col)


_SOURCE: list[str] = []  # the text being converted (a stack: parse is re-entrant)


def _operator_col(node: ast.BinOp) -> int:
    """Where a binary operator stands (errors such as a division by zero point at it): the
    first character after the left operand that is not a space or a closing parenthesis."""
    col = int(node.left.end_col_offset or node.col_offset)
    text = _SOURCE[-1] if _SOURCE else ""
    while col < len(text) and text[col] in " )":
        col += 1
    return col


def _keyword_col(before: ast.expr, word: str) -> int:
    """The column of the keyword that follows `before` (`if` in `a if c else b`)."""
    text = _SOURCE[-1] if _SOURCE else ""
    found = text.find(word, int(before.end_col_offset or 0))
    return found if found >= 0 else int(before.col_offset)


def _compare(node: ast.Compare, marks: dict[int, str], depth: int) -> Node:
    """`a < b < c` becomes `a < b and b < c`, as in Python."""
    terms: list[Node] = []
    left = _convert(node.left, marks, depth)
    for op, right_node in zip(node.ops, node.comparators):
        name = _COMPARE_OPS.get(type(op))
        if name is None:
            raise ExprError("`is` is not allowed; use == or !=", node.col_offset)
        right = _convert(right_node, marks, depth)
        terms.append(Compare(name, left, right, node.col_offset))
        left = right
    return terms[0] if len(terms) == 1 else BoolOp("and", tuple(terms), node.col_offset)


def _describe(node: ast.AST) -> str:
    names = {
        "Lambda": "a lambda",
        "Dict": "a mapping",
        "Set": "a set",
        "JoinedStr": "an f-string",
        "ListComp": "a comprehension",
        "GeneratorExp": "a comprehension",
        "Starred": "`*`",
        "NamedExpr": "`:=`",
        "Await": "`await`",
        "Yield": "`yield`",
    }
    return names.get(type(node).__name__, f"`{type(node).__name__}`")


class _Names(nodes.Visitor[None]):
    """The bare names of a tree; every other node is walked through its children."""

    def __init__(self) -> None:
        self.found: list[Name] = []

    def visit_Name(self, node: Name) -> None:
        self.found.append(node)


class _Options(nodes.Visitor[None]):
    def __init__(self) -> None:
        self.found: list[str] = []

    def visit_Option(self, node: Option) -> None:
        self.found.append(node.name)


def names_in(node: Node) -> list[Name]:
    """Every bare name the expression uses (not member names: an `Attr`'s name is a field)."""
    walker = _Names()
    walker.visit(node)
    return walker.found


def options_in(node: Node) -> list[str]:
    """The names of the `$options` anywhere in the expression, in order."""
    walker = _Options()
    walker.visit(node)
    return walker.found
