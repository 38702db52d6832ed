"""What the planner's passes share: the typed spec, kernel BTF, the problems found so far,
and what each pass leaves for the next (options, state maps, fields, probes, outputs).

Passes say a problem at a place of the typed spec (`engine.spec.model.At`); every problem
is collected before anything is raised, so one run reports all of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from engine.errors import Problem
from engine.kernel.btf import Btf
from engine.plan import model as M
from engine.plan.resolve import Scope
from engine.plan.values import Provenance
from engine.spec import expr as E
from engine.spec import model as S

# an alternative's resolved attach target: (kind, targets, the scope it binds), None: failed
Target = tuple[str, tuple[str, ...], Scope]


@dataclass
class Context:
    """One planning run: the input, the problems, and each pass's results."""

    spec: S.Spec
    btf: Btf
    tracefs_ok: bool
    problems: list[Problem] = dataclasses.field(default_factory=list)
    warnings: list[Problem] = dataclasses.field(default_factory=list)
    options: dict[str, M.Option] = dataclasses.field(default_factory=dict)
    mentioned: set[str] = dataclasses.field(default_factory=set)  # options something names
    states: dict[str, M.StateMap] = dataclasses.field(default_factory=dict)
    broken: set[str] = dataclasses.field(default_factory=set)  # fields that did not parse
    stashes: set[str] = dataclasses.field(default_factory=set)  # maps made for return probes
    function_owner: dict[str, int] = dataclasses.field(default_factory=dict)  # BPF fn -> probe
    provenance: Provenance = dataclasses.field(default_factory=Provenance)  # user pointers
    # id(cast) -> (the cast, kept so that no other node takes its id; its let/field place)
    cast_paths: dict[int, tuple[E.Node, S.At]] = dataclasses.field(default_factory=dict)
    # id(node) -> (a field's value or a stored member's, kept likewise; its place): where a
    # check made once every store is known (a user string read from state) says its problem
    node_paths: dict[int, tuple[E.Node, S.At]] = dataclasses.field(default_factory=dict)
    # (probe index, alternative index) -> its attach target (the attach pass)
    targets: dict[tuple[int, int], Target | None] = dataclasses.field(default_factory=dict)
    # the `func` builtin's table: each attach target's name, once, in probe order (attach pass)
    func_names: list[str] = dataclasses.field(default_factory=list)
    # (kind, target) -> its name in func_names (attach pass); BPF function name -> its target
    func_label: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)
    fn_target: dict[str, str] = dataclasses.field(default_factory=dict)
    traceable: tuple[frozenset[str] | None] | None = None  # the live kernel's, read once
    fields: dict[str, M.Field] = dataclasses.field(default_factory=dict)  # the event's
    probes: list[M.Probe | None] = dataclasses.field(default_factory=list)  # None: failed
    columns: tuple[M.Column, ...] = ()
    count_by: tuple[M.Column, ...] = ()
    count_header: str = "COUNT"
    aggregations: list[M.Aggregation] = dataclasses.field(default_factory=list)
    derived: list[M.Derived] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.problems.extend(self.spec.problems)  # expressions that did not parse
        self.mentioned.update(n for e in self.spec.expressions() for n in e.options)

    def problem(self, message: str, at: S.At, col: int = 0, key: bool = False) -> None:
        """A problem at a value of the spec (`col` characters into it), or at its key."""
        if message:  # an AlreadyReported error has none: it was said where its `let` is
            self.problems.append(Problem(message, at.key if key else at.col(col)))

    def enum_lookup(self, name: str) -> int | None:
        found = self.btf.enum_constant(name)
        return found[1] if found else None
