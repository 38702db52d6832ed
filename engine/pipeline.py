"""The pipeline up to a Plan, in one place: load (YAML with locations) -> JSON Schema ->
plan (names, offsets and types resolved against kernel BTF).

Every verb that needs a plan (run, render, validate, validate --compile) and the golden
regenerator call this, so a spec means the same whichever way it enters.
"""

from __future__ import annotations

from engine.errors import Problem, SpecError
from engine.plan import model as M
from engine.plan import planner
from engine.runtime.prom import metric_problems
from engine.spec.loader import Document, load_document
from engine.spec.schema import check_schema


def plan_document(document: Document, btf: str | None = None) -> M.Plan:
    """A loaded document's Plan; SpecError carries every problem (schema ones first: the
    planner may assume the schema's shape)."""
    problems = check_schema(document)
    if problems:
        raise SpecError(problems)
    return planner.plan(document, btf)


def plan_spec(path: str, btf: str | None = None) -> M.Plan:
    """The Plan of the spec file at `path` (SpecError with every problem found)."""
    return plan_document(load_document(path), btf)


def problems_of(path: str, btf: str | None = None) -> list[Problem]:
    """Every problem of the spec at `path`, empty when it plans and would serve. An EngineError (BTF
    unreadable, say) is not the spec's fault and propagates."""
    try:
        document = load_document(path)
        plan = plan_document(document, btf)
    except SpecError as error:
        return error.problems
    # What `engine serve` checks too (one function), so a spec that validates also serves.
    return metric_problems(document, plan)


def warnings_of(path: str, btf: str | None = None) -> list[Problem]:
    """What is valid but probably not meant in the spec at `path` (an option nothing uses);
    empty when it does not plan (`problems_of` says why)."""
    try:
        document = load_document(path)
        if check_schema(document):
            return []
        return planner.plan_with_warnings(document, btf)[1]
    except SpecError:
        return []
