"""Every field `engine explain CATEGORY/EVENT` lists validates as `args.FIELD`, for every
tracepoint of the running kernel (root: tracefs lists them and settles each record).

Generated, not a hand list: a DEFINE_EVENT whose class BTF could not name used to plan to
an empty record (`irq/softirq_entry has no field 'vec'; fields:  `), and a field named like
a Python keyword (`args.from`) did not parse. Specs are built in memory and planned in
process, one per event; every failure is reported at once.
"""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import EngineError, SpecError
from engine.kernel import tracefs
from engine.plan import planner
from engine.plan.layout import load_btf
from engine.plan.tracepoints import RecordError, tracepoint_record
from engine.spec.loader import Document
from engine.verbs.explain import explain

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def events() -> list[str]:
    try:
        return tracefs.all_events()
    except tracefs.TracefsError as exc:
        pytest.skip(f"tracefs unreadable: {exc}")


def listed_fields(lines: list[str]) -> list[str]:
    """The FIELD column of explain's table."""
    start = next(i for i, line in enumerate(lines) if line.startswith("OFFSET"))
    fields = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        fields.append(line.split()[2])
    return fields


def spec(target: str, fields: list[str]) -> dict[str, Any]:
    return {
        "name": "every",
        "probes": [
            {
                "name": "p",
                "attach": [{"tracepoint": target}],
                "fields": {f"x{i}": f"args.{name}" for i, name in enumerate(fields)},
            }
        ],
        "output": {"columns": ["x0"]},
    }


def test_every_listed_field_validates(events: list[str]) -> None:
    btf = load_btf(None)
    failures: list[str] = []
    checked = refused = 0
    for target in events:
        try:
            lines = explain(btf, target)
        except EngineError as exc:
            # explain refuses it: validate must refuse it too, with the same reason
            refused += 1
            try:
                planner.plan(Document(target, spec(target, ["x"])))
                failures.append(f"{target}: explain refuses it ({exc}) but it plans")
            except SpecError as err:
                if [p.message for p in err.problems] != [str(exc)]:
                    failures.append(f"{target}: explain says {exc}; validate says {err}")
            continue
        fields = listed_fields(lines)
        if not fields:
            continue
        checked += len(fields)
        try:
            plan = planner.plan(Document(target, spec(target, fields)))
        except SpecError as err:
            failures.extend(f"{target}: {p.message}" for p in err.problems)
            continue
        if len(plan.fields) != len(fields):
            failures.append(f"{target}: {len(fields)} fields listed, {len(plan.fields)} planned")
    assert not failures, f"{len(failures)} of {checked} listed fields fail:\n" + "\n".join(failures)
    # This kernel has thousands of events; the ftrace/* ones are not tracepoints.
    assert len(events) > 100 and checked > 1000 and refused < len(events) // 10


def test_btf_alone_never_claims_a_wrong_offset(events: list[str]) -> None:
    """Offline (`--btf`, or without root) the record comes from BTF alone: where BTF cannot
    tell an event's class, fewer fields are offered, but none at another offset or size than
    the running kernel's tracefs says."""
    btf = load_btf(None)
    wrong: list[str] = []
    offered = 0
    for target in events:
        category, _, event = target.partition("/")
        try:
            record = tracepoint_record(btf, category, event, live=False)
        except RecordError:
            continue
        truth = {f.name: (f.offset, f.size) for f in tracefs.read_format(category, event).fields}
        for name, (offset, vt) in record.fields.items():
            offered += 1
            if truth.get(name) != (offset, vt.size):
                wrong.append(
                    f"{target}: {name} at {offset} ({vt.size} bytes); tracefs {truth.get(name)}"
                )
    assert not wrong, "\n".join(wrong)
    assert offered > 1000
