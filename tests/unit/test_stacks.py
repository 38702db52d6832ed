"""Stacks as values: the kstack/ustack builtins through the planner, stack ids to frames
(engine.runtime.stacks with a stand-in map and symbolizer), and the layouts every renderer
gives a table keyed by stacks (bcc profile's blocks, JSON arrays, CSV `;`, folded lines)."""

from __future__ import annotations

import json
import pathlib
from decimal import Decimal

import pytest

from engine.output import RENDERERS
from engine.output.values import Column, Number, Order, Stack, Symbol, Table, Text
from engine.plan import planner
from engine.plan.bind import bind
from engine.runtime.stacks import KERNEL, USER, StackReader
from engine.spec.loader import load_document
from engine.verbs.validate import validate_path
from tests.plan_context import FIXTURE as BTF

K = Stack((Symbol("hot_syscall"), Symbol("do_syscall_64")), KERNEL)
U = Stack((Symbol("hot_a"), Symbol("hot_outer"), Symbol("main")), USER)
U2 = Stack((Symbol("hot_b"), Symbol("hot_outer"), Symbol("main")), USER)
COLS = (
    Column("kstack", "KSTACK", 24, stack=True),
    Column("ustack", "USTACK", 24, stack=True),
    Column("comm", "COMM", 16),
    Column("pid", "PID", 7),
    Column("count", "COUNT", 8),
)
TABLE = Table(
    COLS,
    (
        (K, U, "spin", 42, Number(7)),
        (Stack((), KERNEL), U2, "spin", 42, Number(3)),
    ),
    keys=4,
)
ORDER = Order(column=4, natural=(0, 1, 2, 3))


def test_table_prints_bcc_profile_blocks_largest_last() -> None:
    assert RENDERERS["table"](()).table(TABLE, ORDER) == (
        "    hot_b\n    hot_outer\n    main\n    -                spin (42)\n        3\n\n"
        "    hot_syscall\n    do_syscall_64\n    --\n    hot_a\n    hot_outer\n    main\n"
        "    -                spin (42)\n        7\n\n"
    )


def test_json_frames_are_arrays_and_csv_joins_them() -> None:
    row = TABLE.rows[0]
    doc = json.loads(RENDERERS["json"](COLS).row(row))
    assert doc["kstack"] == ["hot_syscall", "do_syscall_64"]
    assert doc["ustack"] == ["hot_a", "hot_outer", "main"]
    assert (
        RENDERERS["csv"](COLS).row(row)
        == "hot_syscall;do_syscall_64,hot_a;hot_outer;main,spin,42,7\n"
    )


def test_folded_lines_are_root_first_user_then_kernel_and_add_up() -> None:
    doubled = Table(COLS, (*TABLE.rows, (K, U, "spin", 43, Number(Decimal(5)))), keys=4)
    assert RENDERERS["folded"](()).table(doubled, ORDER) == (
        "spin;main;hot_outer;hot_a;do_syscall_64;hot_syscall 12\nspin;main;hot_outer;hot_b 3\n"
    )


class Map:
    """A stand-in for bcc's stack table: walk(id) yields addresses, KeyError when gone."""

    def __init__(self, stacks: dict[int, list[int]]) -> None:
        self.stacks = stacks

    def walk(self, stack_id: int):
        return iter(self.stacks[stack_id])


class Names:
    def kernel(self, addr: int):
        return Symbol(f"k{addr:x}", 4)

    def user(self, pid: int, addr: int):
        return Symbol(f"u{pid}_{addr:x}") if addr != 0xBAD else Text("[unknown]")

    def report(self) -> str:
        return ""


def test_stack_ids_to_frames_errors_and_cuts() -> None:
    reader = StackReader(Map({1: [0x10, 0x20, 0x30], 2: [0x40, 0xBAD]}), Names())  # type: ignore[arg-type]
    assert reader.stack(1, KERNEL).lines() == ["k10", "k20", "k30"]  # offsets dropped, as bcc
    assert reader.stack(1, KERNEL, frames=2).lines() == ["k10", "k20"]
    assert reader.stack((7 << 32) | 2, USER).lines() == ["u7_40", "[unknown]"]
    assert reader.stack((-14) & 0xFFFFFFFF, KERNEL).lines() == []  # -EFAULT: none, not an error
    assert reader.stack((-17) & 0xFFFFFFFF, KERNEL).lines() == ["[Missed Kernel Stack]"]
    assert reader.stack((-12) & 0xFFFFFFFF, USER).lines() == ["[Missed User Stack]"]
    assert reader.stack(9, KERNEL).lines() == ["[Lost Stack]"]
    assert reader.report() == "stacks: 1 ids gone from the stack map when read"


SPEC = """\
name: st
probes:
  - name: exec
    attach:
      - tracepoint: sched/sched_process_exec
    fields:
      FIELDS
output:
  aggregations:
    - {name: execs, count: true, by: [s]}
"""


def problems(tmp_path: pathlib.Path, fields: str) -> list[str]:
    path = tmp_path / "s.yaml"
    path.write_text(SPEC.replace("FIELDS", fields))
    return [
        f"{p.location.line}:{p.location.col}: {p.message}" for p in validate_path(str(path), BTF)
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("s: kstack(0)", "7:10: kstack(N) takes one number, the most frames to print, 1 to 127"),
        ("s: ustack(pid)", "7:10: ustack(N) takes one number, the most frames to print, 1 to 127"),
        ("s: {value: kstack, decode: hex}", "decoder 'hex' does not fit a stack (kstack)"),
    ],
)
def test_stack_refusals(tmp_path: pathlib.Path, fields: str, message: str) -> None:
    found = problems(tmp_path, fields)
    assert len(found) == 1 and message in found[0], found


def test_a_stack_key_declares_the_map_and_counts_its_errors(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SPEC.replace("FIELDS", "s: ustack(5)"))
    plan = planner.plan(load_document(str(path)), BTF)
    (field,) = plan.fields
    assert (field.decoder, field.frames) == ("ustack", 5)
    program = bind(plan, stack_storage=1024)
    assert program.stack_storage == 1024
    assert program.errors[program.stack_errors + 1].startswith("user stacks not stored")
    assert not problems(tmp_path, "s: kstack(127)")


def test_metrics_refuse_a_stack_label(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SPEC.replace("FIELDS", "s: kstack") + "metrics:\n  execs: {}\n")
    found = [
        f"{p.location.line}:{p.location.col}: {p.message}" for p in validate_path(str(path), BTF)
    ]
    assert found == [
        "10:39: metrics: key field 's' of aggregation 'execs' is a stack, which cannot be a "
        "Prometheus label; print stacks with engine run (-o folded)"
    ]
