"""Regressions of issue 11 that the spec folders cannot say: --help, FIFOs, decoders, speed.

Each test failed before its fix. Planning uses the committed BTF fixture, so these run on any
machine (tests/specs/bad/sem_*.yaml carry the located messages against the live kernel).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import threading

import pytest

from engine import errors
from engine.codegen import render
from engine.errors import NameIndex, SpecError
from engine.kernel.btf import Kind
from engine.plan import planner, resolve
from engine.plan.layout import load_btf
from engine.spec.loader import load_document, load_text
from engine.verbs.validate import validate_path

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = str(ROOT / "tests" / "fixtures" / "btf" / "linux-6.18.44-fc.btf.xz")


def plan_text(text: str) -> object:
    return planner.plan(load_text(text, "t.yaml"), FIXTURE)


# --- 4: spec text is never a format string ------------------------------------------------


def test_percent_in_help_and_description_prints_as_written() -> None:
    spec = ROOT / "tests" / "specs" / "good" / "percent-help.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", str(spec), "--btf", FIXTURE, "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = " ".join(done.stdout.split())  # argparse wraps help lines
    assert "percent: 100% of execs, %(prog)s and %s stay text" in out
    assert "only 50% of pids, %d (u32)" in out
    assert "add 100% more %(default)s" in out


# --- 7: a FIFO is refused at once, and the spec is read once -------------------------------


def test_fifo_spec_is_refused_without_waiting(tmp_path: pathlib.Path) -> None:
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    result: list[list[errors.Problem]] = []
    worker = threading.Thread(target=lambda: result.append(validate_path(str(fifo), None)))
    worker.daemon = True
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():  # unblock the reader so the test process can end
        with open(fifo, "w"):
            pass
        pytest.fail("validate blocked on a FIFO")
    assert [p.format() for p in result[0]] == [
        f"{fifo}: error: is a FIFO (named pipe), not a regular file; a spec is a file"
    ]


def test_planner_never_reopens_the_spec(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\nprobes:\n  - name: p\n    attach:\n      - tracepoint: sched/sched_process_exec\n"
        "        where: 'pid == 1 and nosuch == 2'\n    fields:\n      pid: tgid\n"
        "output:\n  columns: [pid]\n"
    )
    document = load_document(str(path))
    path.unlink()  # a second read of the path would find nothing (and lose the column)
    with pytest.raises(SpecError) as caught:
        planner.plan(document, FIXTURE)
    (problem,) = caught.value.problems
    assert (problem.location.line, problem.location.col) == (6, 30)
    assert problem.message.startswith("unknown name 'nosuch'")


# --- 12: enum tables are named by slot, not by upper-cased field name ------------------------

CASES = """
name: cases
probes:
  - name: states
    attach:
      - tracepoint: sock/inet_sock_set_state
    fields:
      x: {value: args.newstate, decode: {enum: TCP_ESTABLISHED}}
      X: {value: args.protocol, decode: {enum: IPPROTO_TCP}}
output:
  columns: [x, X]
  count: {by: [x, X]}
"""


def test_enum_fields_differing_only_in_case_keep_their_own_tables() -> None:
    plan = plan_text(CASES)
    module = render.load_decoder(plan)  # type: ignore[arg-type]
    ev = module.Event()
    ev.f_x, ev.f_X = 1, 6
    assert list(module.decode_event(ev, None)) == ["TCP_ESTABLISHED", "IPPROTO_TCP"]
    ev.f_x, ev.f_X = 7, 17
    assert list(module.decode_event(ev, None)) == ["TCP_CLOSE", "IPPROTO_UDP"]


# --- 6: did-you-mean compares a short list, whatever the pool ----------------------------


@pytest.fixture(scope="module")
def functions() -> NameIndex:
    btf = load_btf(FIXTURE)
    return resolve.name_index(btf, "functions", lambda: btf.names(Kind.FUNC))


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("tcp_v4_conect", "tcp_v4_connect"),
        ("do_sys_opnat2", "do_sys_openat2"),
        ("TCP_V4_CONNECT", "tcp_v4_connect"),
        ("vfs_raed", "vfs_read"),
    ],
)
def test_kernel_function_suggestions_compare_a_shortlist(
    functions: NameIndex, typo: str, meant: str
) -> None:
    assert len(functions.names) > 50_000
    before = functions.compared
    assert errors.did_you_mean(typo, functions) == f"; did you mean '{meant}'?"
    assert functions.compared - before == errors.SHORTLIST


def test_one_index_per_btf_and_kind() -> None:
    btf = load_btf(FIXTURE)
    first = resolve.name_index(btf, "functions", lambda: btf.names(Kind.FUNC))
    again = resolve.name_index(btf, "functions", lambda: pytest.fail("rebuilt"))  # type: ignore[arg-type,return-value]
    assert first is again


def test_64_unknown_kprobe_targets_compare_at_most_a_shortlist_each() -> None:
    targets = ", ".join(f"tcp_v4_conect{i}" for i in range(64))
    text = (
        f"name: many\nprobes:\n  - name: p\n    attach:\n      - kprobe: [{targets}]\n"
        "    fields:\n      pid: tgid\noutput:\n  columns: [pid]\n"
    )
    btf = load_btf(FIXTURE)
    index = resolve.name_index(btf, "functions", lambda: btf.names(Kind.FUNC))
    before = index.compared
    with pytest.raises(SpecError) as caught:
        plan_text(text)
    assert len(caught.value.problems) == 64
    assert index.compared - before == 64 * errors.SHORTLIST  # not 64 x 56,000


def test_small_pools_are_compared_whole() -> None:
    index = NameIndex(["skc_dport", "skc_prot", "skc_family"])
    assert index.suggest("skc_dprot") == "; did you mean 'skc_dport'?"
    assert index.compared == 3
