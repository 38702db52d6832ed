"""The USDT family offline: argument descriptors typed, targets parsed, probes found in the notes
of a C program built here (tests/fixtures/usdt/demo.c with <sys/sdt.h>), with did-you-mean.

`readelf -n` on the same file is the oracle for the descriptors the notes hold; the real
attach and argument values are tests/kernel/test_run_usdt.py's (against bpftrace).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine import pipeline
from engine.attach import KINDS, usdt
from engine.attach.base import ArgAccess

IN_CI = os.environ.get("CI", "").strip().lower() == "true"
SDT_HEADERS = ("/usr/include/sys/sdt.h", "/usr/include/x86_64-linux-gnu/sys/sdt.h")
DEMO_C = Path(__file__).resolve().parents[1] / "fixtures" / "usdt" / "demo.c"
SEM_C = DEMO_C.with_name("sem.c")  # demo:sem, an is-enabled probe (a semaphore)


def _need(ok: bool, message: str) -> None:
    if not ok:
        if IN_CI:
            pytest.fail(f"CI=true but {message}", pytrace=False)
        pytest.skip(message)


def build_demo(directory: Path, opt: str = "-O2") -> Path:
    """tests/fixtures/usdt/demo.c built with gcc into `directory` (as the kernel test does)."""
    _need(shutil.which("gcc") is not None, "needs gcc (scripts/setup.sh installs it)")
    has_sdt = any(os.path.exists(h) for h in SDT_HEADERS)
    _need(has_sdt, "needs sys/sdt.h (Debian's systemtap-sdt-dev; scripts/setup.sh installs it)")
    out = directory / "demo"
    subprocess.run(["gcc", opt, "-g0", "-o", str(out), str(DEMO_C)], check=True)
    return out


@pytest.mark.parametrize(
    "text, size, signed, operand",
    [
        ("-4@%eax", 4, True, "%eax"),
        ("8@%rdx", 8, False, "%rdx"),
        ("-2@%cx", 2, True, "%cx"),
        ("1@%sil", 1, False, "%sil"),
        ("-8@-16(%rbp)", 8, True, "-16(%rbp)"),
        ("8@(%r9,%rdx,8)", 8, False, "(%r9,%rdx,8)"),
        ("4@$42", 4, False, "$42"),
        ("-4@$-5", 4, True, "$-5"),
        ("8@counter+8(%rip)", 8, False, "counter+8(%rip)"),
        ("%eax", 4, False, "%eax"),  # unsized: the register's width, unsigned (as bcc)
        ("%r10w", 2, False, "%r10w"),
        ("-8(%rbp)", 8, False, "-8(%rbp)"),  # unsized memory: a word
    ],
)
def test_descriptor_types(text: str, size: int, signed: bool, operand: str) -> None:
    arg = usdt.parse_descriptor(text)
    assert (arg.size, arg.signed, arg.operand, arg.text) == (size, signed, operand, text)
    assert arg.ctype == f"{'s' if signed else 'u'}{size * 8}"
    assert (arg.vt.size, arg.vt.signed) == (size, signed)


@pytest.mark.parametrize("text", ["3@%eax", "-16@%xmm0", "", "4@", "a b"])
def test_bad_descriptors_are_refused(text: str) -> None:
    with pytest.raises(usdt.DescriptorError, match="USDT argument"):
        usdt.parse_descriptor(text)


def test_descriptor_lists() -> None:
    args = usdt.parse_descriptors("-4@%eax -4@%esi 8@%rdi -2@%cx 8@(%r9,%rdx,8)")
    assert [a.ctype for a in args] == ["s32", "s32", "u64", "s16", "u64"]
    assert usdt.parse_descriptors("") == ()


def test_usdt_access_reads_through_bcc_at_the_given_size() -> None:
    """bcc's reader takes a 1-based index and refuses a destination of another size."""
    c = ArgAccess.USDT.c_text(0, "s32")
    assert c == "({ s32 _usdt = 0; bpf_usdt_readarg(1, ctx, &_usdt); _usdt; })"
    assert "bpf_usdt_readarg(5, ctx, &_usdt)" in ArgAccess.USDT.c_text(4, "u64")
    assert ArgAccess.REGS.c_text(0, "s32") == "PT_REGS_PARM1(ctx)"  # others ignore the type


@pytest.mark.parametrize("opt", ["-O0", "-O2"])
def test_every_note_of_the_demo_is_typed(tmp_path: Path, opt: str) -> None:
    """Whatever operands gcc picks at this level, each descriptor readelf shows is typed, and
    the types are the C types of demo.c's probe arguments."""
    binary = build_demo(tmp_path, opt)
    text = subprocess.run(["readelf", "-n", str(binary)], capture_output=True, text=True).stdout
    notes = dict(re.findall(r"Name: (\S+)\n.*\n\s+Arguments: ([^\n]*)", text))
    assert set(notes) == {"tick", "done"}
    tick = [a.ctype for a in usdt.parse_descriptors(notes["tick"])]
    assert tick == ["s32", "s32", "u64", "s16", "u64"]  # int, int, uint64_t, short, char *
    assert [a.ctype for a in usdt.parse_descriptors(notes["done"])] == ["s32"]


SPEC = """\
name: usdt_check
description: one USDT probe's first argument
probes:
  - name: tick
    attach:
      - usdt: {target}
    fields:
      i: {field}
output:
  columns: [i]
"""


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("usdt_check")
    build_demo(d)
    return d


def verdict(directory: Path, target: str, field: str = "arg0") -> list[str]:
    """`engine validate`'s problems for a spec in `directory` attaching to `target`."""
    path = directory / "spec.yaml"
    path.write_text(SPEC.format(target=target, field=field))
    problems, _ = pipeline.verdict(str(path))
    return [f"{p.location.line}:{p.location.col}: {p.message}" for p in problems]


def test_a_probe_of_the_notes_binds_its_arguments(demo_dir: Path) -> None:
    assert verdict(demo_dir, "./demo:demo:tick") == []
    assert verdict(demo_dir, f"{demo_dir}/demo:demo:done") == []  # an absolute path
    assert verdict(demo_dir, "../" + demo_dir.name + "/demo:demo:tick", "arg4") == []
    plan = pipeline.check(str(demo_dir / "spec.yaml")).plan
    (fn,) = plan.probes[0].alternatives[0].functions
    assert fn.target == f"{demo_dir}/demo:demo:tick"  # bcc gets the resolved path


def test_a_missing_probe_says_what_the_notes_have(demo_dir: Path) -> None:
    assert verdict(demo_dir, "./demo:demo:tock") == [
        f"6:15: no USDT probe 'demo:tock' in {demo_dir}/demo; did you mean 'demo:tick'?"
    ]
    assert verdict(demo_dir, "./demo:dmeo:done") == [
        f"6:15: no USDT probe 'dmeo:done' in {demo_dir}/demo; did you mean 'demo:done'?"
    ]


def test_an_argument_past_the_notes_is_unknown(demo_dir: Path) -> None:
    (problem,) = verdict(demo_dir, "./demo:demo:done", "arg1")
    assert problem.startswith("8:10: unknown name 'arg1'; expected an argument (arg0)")


def test_binaries_without_notes_or_not_elf(demo_dir: Path) -> None:
    shutil.copy("/bin/true", demo_dir / "plain")
    (demo_dir / "text").write_text("#!/bin/sh\n")
    assert verdict(demo_dir, "./plain:demo:tick") == [
        f"6:15: no USDT probe 'demo:tick' in {demo_dir}/plain (it has no USDT probes)"
    ]
    assert verdict(demo_dir, "./text:demo:tick") == [f"6:15: not an ELF file: {demo_dir}/text"]
    assert verdict(demo_dir, "./gone:demo:tick") == [f"6:15: no such file: {demo_dir}/gone"]


@pytest.mark.parametrize("target", ["demo:tick", "./demo::tick", "./demo:demo:ti-ck"])
def test_targets_not_binary_provider_name(demo_dir: Path, target: str) -> None:
    (problem,) = verdict(demo_dir, target)
    assert problem.startswith(f"6:15: '{target}' is not a USDT probe: use BINARY:PROVIDER:NAME")


def test_one_probe_per_usdt_probe(demo_dir: Path) -> None:
    """bcc generates a probe's argument readers for one BPF function: a second is refused."""
    path = demo_dir / "twice.yaml"
    path.write_text(
        SPEC.format(target="./demo:demo:tick", field="arg0").replace(
            "output:",
            "  - name: again\n    attach:\n      - usdt: ./demo:demo:tick\n"
            "    fields:\n      i: arg1\noutput:",
        )
    )
    problems, _ = pipeline.verdict(str(path))
    assert [f"{p.location.line}:{p.location.col}: {p.message}" for p in problems] == [
        f"11:15: probe 'tick' already has a usdt on '{demo_dir}/demo:demo:tick'; bcc enables "
        "a USDT probe for one BPF function, so a spec can attach one probe to it (one probe "
        "can emit, count and store at once)"
    ]


DECLARED = """\
name: usdt_args
description: declared arguments
options:
  pid: {{flag: -p/--pid, type: u32, help: one process}}
probes:
  - name: tick
    attach:
      - usdt: ./demo:demo:tick
        args: {args}
    fields:
      v: {field}
output:
  columns: [v]
"""


def declared(directory: Path, args: str, field: str) -> list[str]:
    path = directory / "declared.yaml"
    path.write_text(DECLARED.format(args=args, field=field))
    problems, _ = pipeline.verdict(str(path))
    return [f"{p.location.line}:{p.location.col}: {p.message}" for p in problems]


ALL = "[int i, int neg, u64 big, short sh, const char *name]"


@pytest.mark.parametrize(
    "args, field",
    [
        (ALL, "name"),
        (ALL, "{value: name, decode: str}"),
        (ALL, "arg4"),  # the note's name stays
        ("[unsigned i, int _, u64 big]", "big"),  # same sizes, `_` names none
        ("[int i, int neg, void *p]", "p"),  # any pointer is 8 bytes
    ],
)
def test_declared_arguments_of_the_notes_size(demo_dir: Path, args: str, field: str) -> None:
    assert declared(demo_dir, args, field) == []


def test_declared_types_are_checked_against_the_note(demo_dir: Path) -> None:
    assert declared(demo_dir, "[long i]", "i") == [
        "9:16: 'long i': argument 0 of demo:tick is 4 bytes (`-4@%eax`); declare a 4-byte "
        "type, e.g. s32"
    ]
    assert declared(demo_dir, "[int i, int n, u64 b, short s, char *p, int more]", "i") == [
        "9:55: 'int more': demo:tick has 5 arguments (-4@%eax -4@%esi 8@%rdi -2@%cx 8@(%r9,%rdx,8))"
    ]
    (problem,) = declared(demo_dir, "[int i, struct sk s]", "i")
    assert problem.startswith("9:23: 'struct sk s': a struct passed by value")
    (problem,) = declared(demo_dir, "[it i]", "i")
    assert problem.startswith("9:16: unknown type 'it' in 'it i'")


def test_a_user_pointer_reads_only_strings(demo_dir: Path) -> None:
    (problem,) = declared(demo_dir, ALL, "name.len")
    assert "points to user memory; only strings (decode: str)" in problem


def test_is_enabled_probes_need_a_pid(tmp_path: Path) -> None:
    """bcc raises a probe's semaphore in one process: without `pid:` the spec is refused."""
    _need(shutil.which("gcc") is not None, "needs gcc (scripts/setup.sh installs it)")
    subprocess.run(["gcc", "-O2", "-o", str(tmp_path / "sem"), str(SEM_C)], check=True)
    assert verdict(tmp_path, "./sem:demo:sem") == [
        "6:15: demo:sem is an is-enabled probe (it has a semaphore, at 0x4030): bcc raises it "
        "in one process only; add `pid:` (a number or an integer option)"
    ]
    path = tmp_path / "spec.yaml"
    text = SPEC.format(target="./sem:demo:sem", field="arg1")
    path.write_text(text.replace("usdt: ./sem:demo:sem", "usdt: ./sem:demo:sem\n        pid: 1"))
    assert pipeline.verdict(str(path)) == ([], [])


def test_docs_example_is_the_live_spec() -> None:
    """docs/spec.md's USDT example is a part of tests/specs/live/usdt_demo.yaml, which the
    kernel test runs: every key it shows is there with the same value."""
    root = DEMO_C.parents[3]
    text = (root / "docs" / "spec.md").read_text()
    section = text[text.index("### USDT probes") :]
    block = section[section.index("```\n") + 4 : section.index("\n```", section.index("```\n") + 4)]
    shown = yaml.safe_load(block)
    spec = yaml.safe_load((root / "tests" / "specs" / "live" / "usdt_demo.yaml").read_text())

    def part_of(whole: Any, part: Any) -> bool:
        if isinstance(part, dict):
            return isinstance(whole, dict) and all(
                k in whole and part_of(whole[k], v) for k, v in part.items()
            )
        if isinstance(part, list):
            return (
                isinstance(whole, list)
                and len(whole) == len(part)
                and all(map(part_of, whole, part))
            )
        return bool(whole == part)

    assert shown["probes"][0]["attach"][0]["usdt"] == "./demo:demo:tick"
    assert part_of(spec, shown)


class _Functions:
    """Just the BTF question gap() asks: is this kernel function there."""

    def __init__(self, *names: str) -> None:
        self.names = names

    def function(self, name: str) -> object | None:
        return (name, (), 0) if name in self.names else None


def test_gap_a_kernel_without_uprobes() -> None:
    """The kernel matrix: a USDT probe is a uprobe, so a kernel without uprobe_register in
    its BTF (no CONFIG_UPROBES) cannot attach it; the binary itself is this machine's."""
    kind = KINDS["usdt"]
    assert kind.gap(_Functions("vfs_read"), ["/bin/x:a:b"])[0] == (  # type: ignore[arg-type]
        "no uprobes in this kernel (uprobe_register is not in its BTF)"
    )
    reason, notes = kind.gap(_Functions("uprobe_register"), ["/bin/x:a:b"])  # type: ignore[arg-type]
    assert reason is None and notes == [
        "the binary is checked on this machine; another may have another one"
    ]


def test_bpf_function_names_leave_the_path_out() -> None:
    assert KINDS["usdt"].fn_part("/tmp/x-1.2/demo:demo:tick") == "demo_tick"
