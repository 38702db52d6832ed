"""Derived columns (`output.derived`): an expression over one key's aggregation values,
computed when the table prints, in integers as C computes them (division truncates toward
zero; a division or modulo by 0 gives 0, as BPF's, instead of an error mid-table)."""

from __future__ import annotations

from typing import Mapping

from engine.spec import expr as E


def evaluate(node: E.Node, values: Mapping[str, int]) -> int:
    """The value for one key; an aggregation the key lacks counts 0 (the table shows 0)."""
    if isinstance(node, E.Num):
        return node.value
    if isinstance(node, E.Name):
        return int(values.get(node.name, 0))
    if isinstance(node, E.Unary):
        return -evaluate(node.operand, values)
    assert isinstance(node, E.BinOp), node  # engine.plan.passes.outputs.check_derived
    a, b = evaluate(node.left, values), evaluate(node.right, values)
    if node.op in ("/", "%"):
        if b == 0:
            return 0
        q = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)
        return q if node.op == "/" else a - q * b
    return {"+": a + b, "-": a - b, "*": a * b}[node.op]
