"""Tree nodes and the walkers over them: `Node`, `Visitor`, `Transformer`.

The spec's expression trees (engine.spec.expr) and the plan's IR (engine.plan.ir) are both
frozen dataclasses. Each node class names the attributes that hold its children
(`child_fields`), so `children()` and `map_children()` come from one place, and a walker is a
`Visitor` or `Transformer` that overrides only the node kinds it handles (`visit_<Class>`);
the rest are walked through their children. A node class that does not declare its children,
or an object that is not a node, is an error: a walker never skips a node kind silently (a
filter walker that did so once rendered a C local before its declaration).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Generic, TypeVar

N = TypeVar("N", bound="Node")
NODE_CLASSES: set[str] = {"Node"}  # every node class's name: what a `visit_<Class>` may name
R = TypeVar("R")


class Node:
    """A tree node: a frozen dataclass whose `child_fields` attributes hold its children.

    A child attribute holds a node, None, a tuple of nodes, or a tuple of (key, node) pairs
    (a map: a state key's parts by slot); anything else in it (a token string) is not a child.
    """

    # every concrete node class declares its own (an empty tuple for a leaf)
    child_fields: ClassVar[tuple[str, ...]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        NODE_CLASSES.add(cls.__name__)

    def children(self) -> tuple[Node, ...]:
        """The node's children, in field order (a map's values in its order)."""
        found: list[Node] = []
        for name in _child_fields(self):
            found.extend(_nodes_in(getattr(self, name)))
        return tuple(found)

    def map_children(self: N, fn: Callable[[Node], Node]) -> N:
        """A copy with `fn` applied to every child (map values too); the node itself when
        it has no children."""
        names = _child_fields(self)
        if not names:
            return self
        changes = {name: _map(getattr(self, name), fn) for name in names}
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def _child_fields(node: Node) -> tuple[str, ...]:
    names = type(node).__dict__.get("child_fields")
    if names is None:
        raise TypeError(f"no case for {type(node).__name__}: it does not declare its children")
    return tuple(names)


def _nodes_in(value: Any) -> tuple[Node, ...]:
    if isinstance(value, Node):
        return (value,)
    if isinstance(value, tuple):
        found: list[Node] = []
        for item in value:
            if isinstance(item, Node):
                found.append(item)
            elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Node):
                found.append(item[1])
        return tuple(found)
    return ()


def _map(value: Any, fn: Callable[[Node], Node]) -> Any:
    if isinstance(value, Node):
        return fn(value)
    if isinstance(value, tuple):
        out: list[Any] = []
        for item in value:
            if isinstance(item, Node):
                out.append(fn(item))
            elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Node):
                out.append((item[0], fn(item[1])))
            else:
                out.append(item)
        return tuple(out)
    return value


def _check_cases(walker: type) -> None:
    """A `visit_<Class>` must name a node class: a misspelled case would never run."""
    for name in vars(walker):
        if name.startswith("visit_") and name[len("visit_") :] not in NODE_CLASSES:
            raise TypeError(f"{walker.__name__}.{name}: no node class {name[len('visit_') :]}")


def _handler(walker: object, node: object) -> Callable[[Any], Any] | None:
    """The walker's `visit_<Class>` for the node's class (or a base class's), else None."""
    if not isinstance(node, Node):
        raise TypeError(
            f"{type(walker).__name__}: no case for {type(node).__name__} (not a tree node)"
        )
    for klass in type(node).__mro__:
        method = getattr(walker, f"visit_{klass.__name__}", None)
        if method is not None:
            return method
        if klass is Node:
            break
    return None


class Visitor(Generic[R]):
    """Dispatch on the node's class to `visit_<Class>`; a class without a method is walked
    through its children (`generic_visit`) and yields `default`. A visitor that must handle
    every kind (an emitter) sets `exhaustive`, and then a kind it lacks raises."""

    exhaustive: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_cases(cls)

    def visit(self, node: Node) -> R:
        method = _handler(self, node)
        if method is not None:
            return method(node)
        if self.exhaustive:
            raise TypeError(f"{type(self).__name__}: no case for {type(node).__name__}")
        return self.generic_visit(node)

    def generic_visit(self, node: Node) -> R:
        for child in node.children():
            self.visit(child)
        return self.default()

    def default(self) -> R:
        return None  # type: ignore[return-value]


class Transformer:
    """Rebuild a tree: `visit_<Class>` returns the node's replacement; a class without a
    method is rebuilt from its transformed children, so a new node kind is carried through
    (its children transformed too) instead of being returned untouched."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_cases(cls)

    def visit(self, node: Node) -> Node:
        method = _handler(self, node)
        if method is not None:
            return method(node)
        return self.generic_visit(node)

    def generic_visit(self, node: Node) -> Node:
        return node.map_children(self.visit)
