"""User-space probes through the planner: what a uprobe/uretprobe spec binds, what it
generates, and the refusals (each one line at the place written, with what would be right).

Targets are real files: libc as ldconfig lists it, /bin/bash, and files the test writes."""

from __future__ import annotations

import pathlib

import pytest

from engine.attach import KINDS
from engine.codegen.render import render_c
from engine.kernel import elf
from engine.plan import model as M
from engine.plan import planner
from engine.plan.bind import bind
from engine.plan.passes import attach as attach_pass
from engine.spec.loader import load_document
from engine.verbs.validate import validate_path
from tests.plan_context import FIXTURE as BTF

LIBC = elf.resolve_library("libc")
SPEC = """\
name: u
options:
  pid: {flag: -p/--pid, type: u32}
  who: {type: str}
state:
  start: {key: u32, value: u64}
probes:
  - name: lookup
    attach:
      - uprobe: [libc:getaddrinfo, libc:gethostbyname]
        args: [const char *node]
        pid: $pid
    store:
      start: {key: tid, value: ktime_ns}
  - name: done
    attach:
      - uretprobe: [libc:getaddrinfo, libc:gethostbyname]
        args: [const char *node]
        ret: int
    let:
      t0: take(start, tid)
    fields:
      host: {value: node, decode: str}
      r: ret
      lat: ktime_ns - t0
output:
  columns: [host, r, lat]
"""


def problems(tmp_path: pathlib.Path, text: str) -> list[str]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    return [
        f"{p.location.line}:{p.location.col}: {p.message}" for p in validate_path(str(spec), BTF)
    ]


def plan(tmp_path: pathlib.Path, text: str = SPEC) -> M.Plan:
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    return planner.plan(load_document(str(spec)), BTF)


def test_a_uprobe_spec_plans_with_resolved_paths_and_the_pid_option(tmp_path: pathlib.Path) -> None:
    p = plan(tmp_path)
    lookup, done = (pr.alternatives[0] for pr in p.probes)
    assert lookup.targets == (f"{LIBC}:getaddrinfo", f"{LIBC}:gethostbyname")
    assert [(f.kind, f.role, f.pid_option) for f in lookup.functions] == [
        ("uprobe", "main", "pid")
    ] * 2
    assert [f.name for f in lookup.functions] == [
        "p0_lookup_uprobe_libc_so_6_getaddrinfo", "p0_lookup_uprobe_libc_so_6_gethostbyname",
    ]  # fmt: skip
    # the uretprobe's argument is saved at entry by a uprobe on the same function
    assert [(f.kind, f.role) for f in done.functions] == [
        ("uprobe", "entry"), ("uretprobe", "main"), ("uprobe", "entry"), ("uretprobe", "main"),
    ]  # fmt: skip
    assert done.stash == (("a0", 0),)
    fields = {f.name: f for f in p.fields}
    assert fields["r"].ctype == "s32" and fields["host"].decoder == "str"


def test_the_c_reads_user_memory_with_the_user_helpers(tmp_path: pathlib.Path) -> None:
    c = render_c(bind(plan(tmp_path), options={"pid": 7}))
    assert "bpf_probe_read_user_str(&ev.f_host" in c
    assert "bpf_probe_read_kernel" not in c
    assert "PT_REGS_PARM1(ctx)" in c and "PT_REGS_RC(ctx)" in c


def test_pid_is_bound_from_the_option(tmp_path: pathlib.Path) -> None:
    p = plan(tmp_path)
    given = bind(p, options={"pid": 1234}).probes[0].alternative.functions
    absent = bind(p, options={}).probes[0].alternative.functions
    assert {f.pid for f in given} == {1234} and {f.pid for f in absent} == {-1}
    literal = plan(tmp_path, SPEC.replace("pid: $pid", "pid: 99"))
    assert {f.pid for f in bind(literal, options={}).probes[0].alternative.functions} == {99}


def test_a_program_beside_the_spec_is_found_relative_to_it(tmp_path: pathlib.Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "sh").symlink_to("/bin/bash")
    text = SPEC.replace("[libc:getaddrinfo, libc:gethostbyname]", "./bin/sh:readline", 1)
    p = plan(tmp_path, text)
    assert p.probes[0].alternatives[0].targets == (f"{tmp_path}/bin/sh:readline",)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("uprobe: [libc:getaddrinfo, libc:gethostbyname]", "uprobe: ./nosuch:main",
         "10:17: no such file: {tmp}/nosuch"),
        ("uprobe: [libc:getaddrinfo, libc:gethostbyname]", "uprobe: /etc/hostname:main",
         "10:17: not an ELF file: /etc/hostname"),
        ("uprobe: [libc:getaddrinfo, libc:gethostbyname]",
         "uprobe: [libc:getaddrinfo, libc:gethostbynam]",
         "10:36: no function 'gethostbynam' in {libc}; did you mean 'gethostbyname'?"),
        ("uprobe: [libc:getaddrinfo, libc:gethostbyname]", "uprobe: libnosuch:f",
         "10:17: no library 'libnosuch' in `ldconfig -p`"),
        ("uprobe: [libc:getaddrinfo, libc:gethostbyname]", "uprobe: usr/bin/x:f",
         "10:17: 'usr/bin/x': a relative path starts with ./ or ../"),
        ("uretprobe: [libc:getaddrinfo, libc:gethostbyname]", "uretprobe: libc:getaddrinfo+4",
         "17:20: 'libc:getaddrinfo+4': a uretprobe fires when the function returns"),
        ("args: [const char *node]\n        pid: $pid",
         "args: [const strcut addrinfo *node]\n        pid: $pid",
         "11:16: unknown type 'strcut addrinfo'"),
        ("        ret: int", "        ret: struct addrinfo",
         "19:14: 'struct addrinfo': a struct passed by value is not in one register"),
        ("pid: $pid", "pid: $pdi", "12:14: unknown option '$pdi'; did you mean 'pid'?"),
        ("pid: $pid", "pid: $who", "12:14: `pid: $who` needs an integer option; it is str"),
        ("host: {value: node, decode: str}", "host: {value: node.ai_flags}",
         "23:26: a struct behind a user pointer cannot be read: 'ai_flags': a 'char *' here "
         "points to user memory"),
        ("host: {value: node, decode: str}", "host: {value: node as sock}",
         "23:21: a struct behind a user pointer cannot be read: a 'char *' here points to user "
         "memory"),
        ("      - uprobe: [libc:getaddrinfo, libc:gethostbyname]", "      - kprobe: vfs_read",
         "11:9: `args` is for uprobe, uretprobe, usdt alternatives, not kprobe"),
        ("        pid: $pid\n    store", "        pid: $pid\n        ret: int\n    store",
         "13:9: `ret` is for uretprobe alternatives, not uprobe"),
        ("uprobe: [libc:getaddrinfo, libc:gethostbyname]",
         "uprobe: [libc:getaddrinfo, c:getaddrinfo]",
         "10:36: 'c:getaddrinfo' is 'libc:getaddrinfo' (same address"),
        ("        ret: int", "        ret: int\n        pid: 0",
         "20:14: pid must be at least 1, got 0"),
    ],
)  # fmt: skip
def test_refusals(tmp_path: pathlib.Path, old: str, new: str, message: str) -> None:
    assert old in SPEC
    got = problems(tmp_path, SPEC.replace(old, new, 1))
    expected = message.format(tmp=tmp_path, libc=LIBC)
    assert len(got) == 1 and got[0].startswith(expected), got


class _Btf:
    """Just enough BTF for gap(): which kernel functions exist."""

    def __init__(self, *functions: str) -> None:
        self.functions = set(functions)

    def function(self, name: str) -> object | None:
        return (name,) if name in self.functions else None


def test_gap_is_the_kernel_uprobe_support() -> None:
    for kind in (KINDS["uprobe"], KINDS["uretprobe"]):
        reason, notes = kind.gap(_Btf(), [f"{LIBC}:getpid"])  # type: ignore[arg-type]
        assert reason == "no uprobes in this kernel (uprobe_register is not in its BTF)"
        reason, notes = kind.gap(_Btf("uprobe_register"), [f"{LIBC}:getpid"])  # type: ignore[arg-type]
        assert reason is None and notes == [
            "the binary is checked on this machine; another may have another one"
        ]


COUNT_SPEC = """\
name: t
probes:
  - name: p
    attach:
      - uprobe: {targets}
    fields:
      f: func
output:
  aggregations:
    - {{name: calls, count: true, by: [f]}}
"""


def counted(tmp_path: pathlib.Path, targets: str) -> M.Plan:
    return plan(tmp_path, COUNT_SPEC.format(targets=targets))


def test_an_alias_named_after_its_function_is_refused(tmp_path: pathlib.Path) -> None:
    """`__nanosleep` is `nanosleep` (one address): two programs would count each call twice.
    A versioned name is the plain one too."""
    address = elf.load(LIBC).functions["nanosleep"].address
    text = COUNT_SPEC.format(targets='[libc:nanosleep, libc:__nanosleep, "libc:*nanosleep"]')
    assert problems(tmp_path, text) == [
        f"5:34: '__nanosleep' is 'nanosleep' (same address {address:#x}) in libc.so.6: "
        "it would count each call twice"
    ]
    text = COUNT_SPEC.format(targets="[libc:getaddrinfo, libc:getaddrinfo@GLIBC_2.2.5]")
    (got,) = problems(tmp_path, text)
    assert got.startswith("5:36: 'getaddrinfo@GLIBC_2.2.5' is 'getaddrinfo' (same address"), got


def test_a_patterns_match_of_an_earlier_alias_is_dropped(tmp_path: pathlib.Path) -> None:
    """The pattern `__nanosleep*` matches nanosleep's alias: attached once, under the name
    written first."""
    p = counted(tmp_path, '[libc:nanosleep, "libc:__nanosleep*"]')
    assert p.probes[0].alternatives[0].targets == (f"{LIBC}:nanosleep",)
    assert p.func_names == ("nanosleep",)


def test_a_versioned_symbol_is_attached_by_its_plain_name() -> None:
    """bcc 0.26 cannot find `getaddrinfo@@GLIBC_2.2.5` ("could not determine address")."""
    kwargs = KINDS["uprobe"].bcc_kwargs("fn", f"{LIBC}:getaddrinfo@@GLIBC_2.2.5")
    assert kwargs == {"name": LIBC, "fn_name": "fn", "sym": "getaddrinfo"}
    assert KINDS["uprobe"].bcc_kwargs("fn", f"{LIBC}:getaddrinfo@GLIBC_2.2.5+4")["sym_off"] == 4


@pytest.fixture
def copies(tmp_path: pathlib.Path) -> pathlib.Path:
    """libc copied twice beside the spec: ./a/libc.so.6 (libc's file name) and ./a/libx.so."""
    (tmp_path / "a").mkdir()
    for name in ("libc.so.6", "libx.so"):
        (tmp_path / "a" / name).write_bytes(pathlib.Path(LIBC).read_bytes())
    return tmp_path


def test_one_file_name_in_two_directories_is_two_binaries(copies: pathlib.Path) -> None:
    """Identity is the resolved path: the copy's getpid is its own function, with its own
    BPF function name and its own `func` name (the whole target: the file names agree)."""
    copy = f"{copies}/a/libc.so.6"
    p = counted(copies, f"[{LIBC}:getpid, ./a/libc.so.6:getpid]")
    alt = p.probes[0].alternatives[0]
    assert alt.targets == (f"{LIBC}:getpid", f"{copy}:getpid")
    first, second = (f.name for f in alt.functions)
    assert first == "p0_p_uprobe_libc_so_6_getpid"
    assert second.startswith(first + "_") and len(second) == len(first) + 9
    assert p.func_names == (f"{LIBC}:getpid", f"{copy}:getpid")
    assert [f.func for f in alt.functions] == [0, 1]
    p = counted(copies, f"[{LIBC}:getpid, ./a/libc.so.6:getp*]")
    assert f"{copy}:getpid" in p.probes[0].alternatives[0].targets


def test_func_names_the_binary_when_a_symbol_is_in_two(copies: pathlib.Path) -> None:
    """getpid of libc and of libx.so: `func` tells them apart (one index each); a symbol
    only one binary has keeps its bare name."""
    p = counted(copies, f"[{LIBC}:getpid, ./a/libx.so:getpid, ./a/libx.so:getppid]")
    assert p.func_names == ("libc.so.6:getpid", "libx.so:getpid", "getppid")
    assert [f.func for f in p.probes[0].alternatives[0].functions] == [0, 1, 2]
    c = render_c(bind(p, options={}))
    assert "u32 v1 = 0;" in c and "u32 v1 = 1;" in c and "u32 v1 = 2;" in c


def test_a_kernel_function_keeps_its_bare_name_beside_a_user_one() -> None:
    labels = attach_pass.func_labels([("kprobe", "vfs_read"), ("uprobe", "/x/prog:vfs_read")])
    assert labels == {
        ("kprobe", "vfs_read"): "vfs_read",
        ("uprobe", "/x/prog:vfs_read"): "prog:vfs_read",
    }
