"""Fuzzing the pipeline in process: mutated specs through loader, schema, planner, bind, render.

Properties, for every generated spec:
- nothing is raised but the engine's own SpecError (a traceback is a bug, whatever the input);
- every problem is one line located at file:line:col (only whole-file problems lack a line);
- a spec that plans binds in every mode, alternative and option shape (engine.plan.shapes),
  renders C whose generated locals are all declared before use (tests/c_locals.py) and a
  decoder that loads;
- the did-you-mean work per spec is bounded (each suggestion compares at most a shortlist).
Planning uses the committed BTF fixture, so this runs anywhere. The budget is small here (see
FUZZ_EXAMPLES); `make fuzz` runs a long, randomized one and docs/performance.md keeps its count.
"""

from __future__ import annotations

import os
import pathlib
import time
from typing import Any

import pytest
from c_locals import local_problems
from fuzz_mutate import built_specs, mutated_specs, mutated_texts
from hypothesis import HealthCheck, given, settings

from engine import errors
from engine.codegen import render
from engine.errors import Problem, SpecError
from engine.plan import model as M
from engine.plan import planner
from engine.plan.bind import bind
from engine.plan.layout import load_btf
from engine.plan.shapes import option_shapes
from engine.plan.values import PINNED
from engine.spec.loader import EMPTY_SPEC, load_text
from engine.spec.schema import check_schema

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = str(ROOT / "tests" / "fixtures" / "btf" / "linux-6.18.44-fc.btf.xz")
FILE = "fuzz.yaml"
LONG = os.environ.get("FUZZ_LONG") == "1"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "70"))
# Problems about the whole file, which have no line to point at.
WHOLE_FILE = (EMPTY_SPEC, "file too large")
SLOWEST: list[tuple[float, str]] = []  # (seconds, spec) of the slowest examples, for the report
CHECKED = [0]  # examples check() ran in this session: what the report must account for

SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=not LONG,  # the same examples in `make test`; new ones in `make fuzz`
    deadline=None,  # no wall-clock limit in tests: bounded work is asserted by counting
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)


@pytest.fixture(scope="module", autouse=True)
def _btf() -> None:
    load_btf(FIXTURE)  # read once, outside the examples


def located(problems: list[Problem], text: str) -> None:
    assert problems, "a SpecError with no problem"
    for p in problems:
        assert p.message and "\n" not in p.message, repr(p.message)
        assert p.location.file == FILE
        if p.location.line == 0:
            assert p.message.startswith(WHOLE_FILE), f"unlocated: {p.message}\n{text}"
        else:
            assert p.location.col >= 1, f"no column: {p.format()}\n{text}"


def option_values(plan: M.Plan) -> dict[str, Any]:
    """A valid value for every option, so bind turns each placeholder into a constant."""
    out: dict[str, Any] = {}
    for o in plan.options:
        if o.ctype == "bool":
            out[o.name] = True
        elif o.ctype == "str":
            out[o.name] = "curl"
        elif o.ctype == "inet":
            out[o.name] = "127.0.0.1"
        elif o.ctype == PINNED:
            out[o.name] = "/sys/fs/bpf/engine-fuzz"  # a path: bind writes it into the C
        else:
            out[o.name] = [1, 2] if o.is_list else 1
    return out


def pipeline(text: str) -> M.Plan | None:
    """Everything `validate` and `render` do, in process; the plan when the spec is accepted."""
    try:
        document = load_text(text, FILE)
        problems = check_schema(document)
        if problems:
            located(problems, text)
            return None
        plan = planner.plan(document, FIXTURE)
    except SpecError as error:
        located(error.problems, text)
        return None
    counts = (False, True) if plan.counted else (False,)
    for options in [{}, option_values(plan), *(s.values for s in option_shapes(plan))]:
        for probe in plan.probes:
            for index in range(len(probe.alternatives)):
                for count in counts:
                    program = bind(plan, count=count, options=options, choices={probe.name: index})
                    c = render.render_c(program)
                    assert c and local_problems(c) == [], (options, index, count)
    module = render.load_decoder(plan)
    assert len(module.FIELDS) == len(plan.fields)
    return plan


def check(text: str) -> None:
    before = _compared()
    started = time.perf_counter()
    pipeline(text)
    spent = time.perf_counter() - started
    SLOWEST.append((spent, text))
    SLOWEST.sort(key=lambda t: -t[0])
    del SLOWEST[5:]
    CHECKED[0] += 1
    # bounded work: a spec's suggestions compare at most a shortlist each, never a pool
    assert _compared() - before <= errors.SHORTLIST * 4 * max(1, text.count("\n")), text


def _compared() -> int:
    from engine.plan.resolve import _INDEXES

    return sum(ix.compared for per_btf in _INDEXES.values() for ix in per_btf.values())


@SETTINGS
@given(mutated_specs())
def test_mutated_specs(text: str) -> None:
    check(text)


@SETTINGS
@given(mutated_specs(sites_only=True))
def test_mutated_expressions(text: str) -> None:
    check(text)


@SETTINGS
@given(mutated_texts())
def test_mutated_texts(text: str) -> None:
    check(text)


@SETTINGS
@given(built_specs())
def test_built_specs(text: str) -> None:
    """Switches, wide keys and state values: most plan, and bind in every option shape."""
    check(text)


def slowest_problems(slowest: list[tuple[float, str]], checked: int) -> list[str]:
    """What is wrong with the slowest-examples record after `checked` examples: it must hold
    the min(5, checked) slowest, slowest first, each a real duration of a real spec."""
    problems = []
    if len(slowest) != min(5, checked):
        problems.append(f"{len(slowest)} examples recorded after {checked} checked")
    times = [t for t, _ in slowest]
    if times != sorted(times, reverse=True):
        problems.append(f"not slowest first: {times}")
    problems += [f"not a duration: {t!r}" for t in times if not 0 < t < float("inf")]
    problems += [f"not a spec: {text!r}" for t, text in slowest if not isinstance(text, str)]
    return problems


def test_slowest_problems_sees_a_broken_record() -> None:
    good = [(0.5, "a"), (0.2, "b")]
    assert slowest_problems(good, 2) == []
    assert slowest_problems([], 3) == ["0 examples recorded after 3 checked"]
    assert slowest_problems(good[::-1], 2) == ["not slowest first: [0.2, 0.5]"]
    assert slowest_problems([(-1.0, "a")], 1) == ["not a duration: -1.0"]


def test_report_slowest(capsys: pytest.CaptureFixture[str]) -> None:
    """Not a time limit: prints the slowest examples seen, for docs/performance.md; fails when
    the examples above did not record what the report says."""
    if not CHECKED[0]:
        pytest.skip("no fuzz example ran before the report (run the whole file)")
    assert slowest_problems(SLOWEST, CHECKED[0]) == []
    with capsys.disabled():
        print(f"\nfuzz: slowest example {SLOWEST[0][0]:.3f} s of {CHECKED[0]}")
