"""The one way in: load (YAML with locations) -> JSON Schema -> typed spec -> plan.

Every verb (run, render, validate, verify, serve) and the golden regenerator call `check`
(or `load` then `check_spec`, where the typed spec is needed even when it does not plan), so a
spec means the same whichever way it enters, and each spec is loaded and planned once.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import Problem, SpecError
from engine.plan import model as M
from engine.plan import planner
from engine.runtime.prom import metric_problems
from engine.spec import model as S
from engine.spec.loader import Document, load_document
from engine.spec.schema import check_schema


@dataclass(frozen=True)
class Checked:
    """A spec that plans: its typed model, its plan, and what is valid but probably not meant
    (an option nothing uses)."""

    spec: S.Spec
    plan: M.Plan
    warnings: tuple[Problem, ...]

    def serve_problems(self) -> list[Problem]:
        """What `engine serve` would refuse (its metric checks), for `engine validate`."""
        return metric_problems(self.spec, self.plan)


def typed(document: Document) -> S.Spec:
    """A loaded document's typed spec; SpecError with the schema's problems (the model may
    assume the schema's shape)."""
    problems = check_schema(document)
    if problems:
        raise SpecError(problems)
    return S.build(document)


def load(path: str) -> S.Spec:
    """The typed spec of the file at `path` (SpecError: it does not load or fit the schema)."""
    return typed(load_document(path))


def check_spec(spec: S.Spec, btf: str | None = None) -> Checked:
    """Plan a typed spec against kernel BTF (`btf` None: the running kernel's); SpecError
    with every problem found."""
    plan, warnings = planner.plan_with_warnings(spec, btf)
    return Checked(spec, plan, tuple(warnings))


def check(path: str, btf: str | None = None) -> Checked:
    """The spec file at `path`, loaded, checked and planned; SpecError with every problem."""
    return check_spec(load(path), btf)


def verdict(path: str, btf: str | None = None) -> tuple[list[Problem], list[Problem]]:
    """(problems, warnings) of the spec at `path`, for `engine validate`: every problem, the
    serve checks included (a spec that validates also serves), and when there is none what is
    valid but probably not meant. An EngineError (BTF unreadable, say) is not the spec's
    fault and propagates."""
    try:
        checked = check(path, btf)
    except SpecError as error:
        return error.problems, []
    problems = checked.serve_problems()
    return problems, [] if problems else list(checked.warnings)
