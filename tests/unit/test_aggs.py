"""engine.aggs: the registry of aggregation kinds, each kind's merge and value, and that no
kind name is written outside the registry and the schema."""

from __future__ import annotations

import json
import pathlib
import re
from dataclasses import dataclass

import pytest

from engine import aggs

ROOT = pathlib.Path(__file__).resolve().parents[2]


@dataclass
class Slot:
    """A per-CPU struct leaf as bcc gives it (value/count, sum/count, buckets/sum)."""

    value: int = 0
    count: int = 0
    sum: int = 0
    buckets: tuple[int, ...] = ()


@dataclass(frozen=True)
class P:
    low: int = 0
    high: int = 0
    step: int = 0
    divisor: int = 1


def test_registry_matches_the_schema() -> None:
    schema = json.loads((ROOT / "engine" / "spec.schema.json").read_text())
    text = json.dumps(schema)
    for key in aggs.SPEC_KEYS:
        assert f'"{key}"' in text
    assert set(aggs.BY_SPEC_KEY) == set(aggs.SPEC_KEYS)
    assert {k.name for k in aggs.KINDS.values()} == set(aggs.KINDS)


@pytest.mark.parametrize("name", sorted(aggs.KINDS))
def test_every_kind_has_a_partial_and_a_metric_type(name: str) -> None:
    kind = aggs.KINDS[name]
    assert (ROOT / "templates" / "partials" / f"{kind.partial}.c.j2").is_file()
    assert kind.prom_types and kind.metric_types(True)


def test_count_and_sum_add_per_cpu_values_and_wrap() -> None:
    assert aggs.COUNT.merge([1, 0, 2], False) == 3
    assert aggs.SUM.merge([-5, 0, -107], True) == -112
    assert aggs.SUM.merge([2**64 - 1, 2], False) == 1
    assert aggs.SUM.merge([2**63, 2**63 - 1], True) == -1
    assert aggs.COUNT.value_ctype(True) == "u64" and aggs.SUM.value_ctype(True) == "s64"


def test_min_and_max_skip_unwritten_slots() -> None:
    slots = [Slot(0, 0), Slot(-7, 2), Slot(3, 1), Slot(0, 0)]
    assert aggs.MIN.merge(slots, True) == -7
    assert aggs.MAX.merge(slots, True) == 3  # the unwritten zeros are not a max of 0
    assert aggs.MIN.merge([Slot(0, 0)], True) is None
    assert aggs.MAX.fold([1, 9, 4]) == 9 and aggs.SUM.fold([1, 9, 4]) == 14
    assert aggs.MIN.members("s64", 0) == (("s64", "value", 0), ("u64", "count", 0))


def test_avg_merges_sums_and_counts_and_divides_as_c() -> None:
    slots = [Slot(sum=-2999, count=1), Slot(), Slot(sum=0, count=1)]
    merged = aggs.AVG.merge(slots, True)
    assert merged == (-2999, 2)
    assert aggs.AVG.number(P(divisor=1), merged) == -1499
    assert str(aggs.AVG.number(P(divisor=1000), merged)) == "-1.499"
    assert aggs.AVG.merge([Slot()], True) is None
    assert aggs.AVG.metric((10, 4)) == (2.5, 10, 4)


def test_histograms_merge_bucket_by_bucket() -> None:
    slots = [Slot(sum=-5, buckets=(0, 1, 0)), Slot(sum=2**64 - 3, buckets=(0, 2, 1))]
    assert aggs.LOG2.merge(slots, True) == ({1: 3, 2: 1}, -8)
    assert aggs.LOG2.merge([Slot(buckets=(0, 0))], False) is None
    assert aggs.LOG2.members("u64", 65) == (("u64", "buckets", 65), ("u64", "sum", 0))


def test_histogram_buckets_and_bounds() -> None:
    lin = P(low=0, high=100, step=10)
    assert aggs.LINEAR.buckets(lin) == 12 and aggs.LOG2.buckets(lin) == 65
    assert [aggs.LINEAR.index(lin, v) for v in (-5, 0, 9, 10, 99, 100)] == [0, 1, 1, 2, 10, 11]
    assert aggs.LINEAR.bounds(lin, 0) == (None, -1) and aggs.LINEAR.bounds(lin, 11) == (100, None)
    assert aggs.LINEAR.finite_bounds(lin)[:2] == (-1.0, 9.0)
    assert aggs.LOG2.bounds(lin, 1) == (0, 1) and aggs.LOG2.finite_bounds(lin) == ()
    assert aggs.LOG2.index(lin, 0) == 1 and aggs.LOG2.index(lin, 1024) == 11


def test_scalar_values_print_exactly() -> None:
    assert aggs.SUM.number(P(divisor=1), 5) == 5
    assert str(aggs.SUM.number(P(divisor=10**9), 0)) == "0.000000000"
    assert str(aggs.MAX.number(P(divisor=1000), 2**64 - 1)) == "18446744073709551.615"
    assert aggs.COUNT.metric(7) == (7, 0, 0)


def test_sum_of_a_signed_field_is_only_a_gauge() -> None:
    assert aggs.SUM.metric_types(True) == ("gauge",)
    assert aggs.SUM.metric_types(False)[0] == "counter"


def kind_literals() -> list[str]:
    """Lines outside engine/aggs that write an aggregation kind name as a string literal in
    a kind-like position (compared with, or keyed by, a kind)."""
    names = "|".join(sorted({*aggs.KINDS, *aggs.SPEC_KEYS}))
    pattern = re.compile(rf"""(kind\s*[!=]=\s*|kind\s+(not\s+)?in\s*\(|^\s*)["']({names})["']""")
    found = []
    for path in sorted((ROOT / "engine").rglob("*.py")):
        if "aggs" in path.parts:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    return found


def test_kind_names_are_written_only_in_the_registry() -> None:
    assert kind_literals() == []
