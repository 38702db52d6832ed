"""Sampling targets (engine.attach.perf) through the planner: what `profile:` and `perf_event:`
parse to, what they bind and generate, an option's rate bound per run, and the refusals (one
line at the place written, saying what would be right)."""

from __future__ import annotations

import pathlib

import pytest

from engine.attach import KINDS, TargetError
from engine.attach.perf import TYPE_HARDWARE, TYPE_SOFTWARE, Sampling
from engine.codegen.render import render_c
from engine.errors import UsageError
from engine.plan import planner
from engine.plan.bind import bind
from engine.spec.loader import load_document
from engine.verbs.validate import validate_path
from tests.plan_context import FIXTURE as BTF

PROFILE, PERF_EVENT = KINDS["profile"], KINDS["perf_event"]
SPEC = """\
name: s
options:
  frequency: {flag: -F/--frequency, type: u32, default: 49, help: Hz}
probes:
  - name: sample
    attach:
      - ATTACH
    fields:
      comm: comm
      kstack: kstack
output:
  aggregations:
    - {name: samples, count: true, by: [kstack, comm]}
"""


@pytest.mark.parametrize(
    ("text", "sampling"),
    [
        ("hz:49", Sampling(TYPE_SOFTWARE, 0, 0, 49, (), "hz:49")),
        ("ms:10", Sampling(TYPE_SOFTWARE, 0, 10_000_000, 0, (), "ms:10")),
        ("ns:$p", Sampling(TYPE_SOFTWARE, 0, "p", 0, (), "ns:$p")),
        ("hz:$f cpus:0,2-3", Sampling(TYPE_SOFTWARE, 0, 0, "f", (0, 2, 3), "hz:$f cpus:0,2-3")),
    ],
)
def test_profile_targets(text: str, sampling: Sampling) -> None:
    assert PROFILE.parse_target(text) == sampling


@pytest.mark.parametrize(
    ("text", "sampling"),
    [
        ("software:page-faults", Sampling(TYPE_SOFTWARE, 2, 1, 0, (), "software:page-faults")),
        ("software:cs:10", Sampling(TYPE_SOFTWARE, 3, 10, 0, (), "software:cs:10")),
        (
            "hardware:cache-misses:500 cpus:1",
            Sampling(TYPE_HARDWARE, 3, 500, 0, (1,), "hardware:cache-misses:500 cpus:1"),
        ),
    ],
)
def test_perf_event_targets(text: str, sampling: Sampling) -> None:
    assert PERF_EVENT.parse_target(text) == sampling


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        ("profile", "hz:0", "'hz:0': the rate must be 1 to 100000 hz, or a positive period"),
        ("profile", "ms:$p", "'ms:$p': an option's period is in ns (write ns:$p)"),
        ("profile", "hz:49 cpus:3-1", "CPU range '3-1' runs backwards"),
        ("perf_event", "software:page-fault", "did you mean 'page-faults'?"),
        ("perf_event", "software:cs:0", "'software:cs:0': the period must be at least 1 event"),
    ],
)
def test_refusals(kind: str, text: str, message: str) -> None:
    with pytest.raises(TargetError) as err:
        KINDS[kind].parse_target(text)
    assert message in err.value.message


def plan_of(tmp_path: pathlib.Path, attach: str):
    path = tmp_path / "s.yaml"
    path.write_text(SPEC.replace("ATTACH", attach))
    return planner.plan(load_document(str(path)), BTF), path


def test_a_rate_option_is_bound_per_run_with_its_default(tmp_path: pathlib.Path) -> None:
    plan, _ = plan_of(tmp_path, "profile: hz:$frequency cpus:0")
    (fn,) = bind(plan).probes[0].alternative.functions
    assert (fn.kind, fn.target) == ("profile", "hz:49 cpus:0")
    (fn,) = bind(plan, options={"frequency": 99}).probes[0].alternative.functions
    assert fn.target == "hz:99 cpus:0"
    with pytest.raises(UsageError, match=r"option \$frequency needs a positive value"):
        bind(plan, options={"frequency": 0})


def test_the_program_reads_the_sample_and_its_stack(tmp_path: pathlib.Path) -> None:
    plan, _ = plan_of(tmp_path, "perf_event: software:cpu-clock:1000000")
    c = render_c(bind(plan))
    assert "#include <uapi/linux/bpf_perf_event.h>" in c
    assert "(struct bpf_perf_event_data *ctx)" in c
    assert "BPF_STACK_TRACE(stack_traces, 16384);" in c
    assert "stack_traces.get_stackid(ctx, 0)" in c


@pytest.mark.parametrize(
    ("attach", "message"),
    [
        (
            "profile: hz:$nope",
            "unknown option '$nope'",
        ),
        (
            "profile: every:5",
            "7:18: 'every:5' is not a valid profile: use hz:N, or s:N, ms:N, us:N, ns:N",
        ),
        (
            "perf_event: software:nosuch",
            "no software event 'nosuch'; software events: ",
        ),
    ],
)
def test_located_problems(tmp_path: pathlib.Path, attach: str, message: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SPEC.replace("ATTACH", attach))
    found = [
        f"{p.location.line}:{p.location.col}: {p.message}" for p in validate_path(str(path), BTF)
    ]
    assert len(found) == 1 and found[0].startswith("7:") and message in found[0], found
