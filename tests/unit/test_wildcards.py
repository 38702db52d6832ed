"""Wildcards in kernel function targets (`vfs_*`, `tcp_v?_connect`, `[a-c]*_read`) and the `func`
builtin, planned against the committed BTF fixture (a 6.18 kernel) and a synthetic one.

The expansion is engine.attach.base.expand (shared by every family); the kernel families expand
against BTF FUNC names when the spec is planned, so everything after the attach pass sees
concrete targets: one BPF function each, and `func` is that function's index in the plan's
table (Plan.func_names), printed as the name.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
from pathlib import Path

import btfwriter
import pytest
from btf_fixture import BTF

from engine import pipeline
from engine.attach import KINDS, binary
from engine.attach.base import MAX_MATCHES, TargetError, expand, is_pattern, pattern_hint
from engine.codegen import render
from engine.errors import NameIndex, SpecError
from engine.kernel import elf, tracefs
from engine.kernel.btf import Kind
from engine.plan.bind import bind
from engine.plan.layout import load_btf
from engine.runtime import decoders

NAMES = ["vfs_read", "vfs_readv", "vfs_write", "tcp_v4_connect", "tcp_v6_connect", "a_read"]


def test_expand_sorts_matches_and_understands_classes() -> None:
    assert expand("vfs_*", NAMES) == ("vfs_read", "vfs_readv", "vfs_write")
    assert expand("tcp_v?_connect", NAMES) == ("tcp_v4_connect", "tcp_v6_connect")
    assert expand("[a-c]*_read", NAMES) == ("a_read",)
    assert expand("tcp_v[!4]_connect", NAMES) == ("tcp_v6_connect",)
    assert expand("vfs_read", NAMES) == ("vfs_read",)  # no wildcard: the name itself
    assert expand("VFS_*", NAMES) == ()  # case matters, as in BTF
    assert expand("nothing*", NAMES) == ()
    assert expand("vfs_*", NAMES + NAMES) == ("vfs_read", "vfs_readv", "vfs_write")


def test_expand_refuses_more_than_the_limit() -> None:
    names = [f"f{i}" for i in range(MAX_MATCHES + 1)]
    assert len(expand("f*", names[:MAX_MATCHES])) == MAX_MATCHES
    with pytest.raises(TargetError, match=r"'f\*' matches 1001 functions; at most 1000"):
        expand("f*", names)


def test_pattern_predicates() -> None:
    assert [is_pattern(t) for t in ("vfs_*", "a?", "[ab]x", "vfs_read")] == [1, 1, 1, 0]
    assert pattern_hint("vfs_raed*") == "vfs_raed"
    assert pattern_hint("tcp_v[46]_conn?ct") == "tcp_v_connct"


def spec_text(attach: str, fields: str = "f: func", extra: str = "") -> str:
    """A one-probe spec (its kind's key on line 5, col 9), `count by f`; `extra`: more probes."""
    lines = fields.split("\n")
    return (
        "name: t\nprobes:\n  - name: p\n    attach:\n"
        f"      - {attach}\n    fields:\n"
        + "".join(f"      {line}\n" for line in lines)
        + extra
        + "output:\n  aggregations:\n    - {name: calls, count: true, by: [f]}\n"
    )


def plan_of(tmp_path: Path, text: str, btf: str = BTF):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    return pipeline.check(str(path), btf).plan


def errors_of(tmp_path: Path, text: str, btf: str = BTF) -> list[str]:
    with pytest.raises(SpecError) as err:
        plan_of(tmp_path, text, btf)
    return [f"{p.location.line}:{p.location.col}: {p.message}" for p in err.value.problems]


def fixture_funcs(pattern: str) -> list[str]:
    return sorted(fnmatch.filter(load_btf(BTF).names(Kind.FUNC), pattern))


def test_a_pattern_becomes_one_function_per_match(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, spec_text('kprobe: "vfs_read*"'))
    (alt,) = plan.probes[0].alternatives
    assert (
        alt.targets
        == ("vfs_read", "vfs_readlink", "vfs_readv")
        == tuple(fixture_funcs("vfs_read*"))
    )
    assert [(f.target, f.func) for f in alt.functions] == [
        ("vfs_read", 0), ("vfs_readlink", 1), ("vfs_readv", 2)
    ]  # fmt: skip
    assert plan.func_names == alt.targets
    (field,) = plan.fields
    assert (field.ctype, field.decoder) == ("u32", "func")
    assert field.enum_values == ((0, "vfs_read"), (1, "vfs_readlink"), (2, "vfs_readv"))
    assert field.width == len("vfs_readlink")


def test_a_list_mixes_patterns_and_names_without_repeats(tmp_path: Path) -> None:
    text = spec_text('kprobe: ["tcp_v?_connect", tcp_v4_connect, "vfs_readv"]')
    (alt,) = plan_of(tmp_path, text).probes[0].alternatives
    assert alt.targets == ("tcp_v4_connect", "tcp_v6_connect", "vfs_readv")


def test_only_the_arguments_every_match_shares_are_bound(tmp_path: Path) -> None:
    """tcp_v4_connect and tcp_v6_connect both take `sk` first; vfs_readv does not."""
    both = spec_text('kprobe: "tcp_v?_connect"', "f: func\nfam: sk.__sk_common.skc_family")
    assert plan_of(tmp_path, both).probes[0].alternatives[0].targets == (
        "tcp_v4_connect", "tcp_v6_connect"
    )  # fmt: skip
    mixed = both.replace('"tcp_v?_connect"', '["tcp_v?_connect", vfs_readv]')
    (error,) = errors_of(tmp_path, mixed)
    assert error.startswith("8:12: unknown name 'sk'"), error


def test_no_match_is_located_with_a_suggestion(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, spec_text('kprobe: [tcp_v4_connect, "vfs_raed*"]'))
    assert errors == [
        f"5:35: no kernel function matches 'vfs_raed*' in {BTF}; did you mean 'vfs_read'?"
    ]


def test_too_many_matches_are_refused(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, spec_text('kprobe: "*"'))
    n = len(load_btf(BTF).names(Kind.FUNC))
    assert errors == [
        f"5:18: '*' matches {n} functions; at most 1000 can be attached (narrow the pattern)"
    ]
    # each under the limit, together over it: said at the kind
    assert len(fixture_funcs("ext4_*")) + len(fixture_funcs("tcp_*")) > MAX_MATCHES
    errors = errors_of(tmp_path, spec_text('kprobe: ["ext4_*", "tcp_*"]'))
    n = len(set(fixture_funcs("ext4_*")) | set(fixture_funcs("tcp_*")))
    assert errors == [f"5:17: these patterns name {n} functions; at most 1000 can be attached"]


def test_a_bad_pattern_is_a_schema_error(tmp_path: Path) -> None:
    (error,) = errors_of(tmp_path, spec_text('kprobe: "vfs_[read"'))
    assert error.startswith("5:17: 'vfs_[read' is not a valid function:"), error
    with pytest.raises(TargetError, match="is not a kernel function name"):
        KINDS["kprobe"].parse_target("1x*/")


def test_every_kernel_function_kind_expands(tmp_path: Path) -> None:
    for kind in ("kprobe", "kretprobe", "fentry", "fexit"):
        (alt,) = plan_of(tmp_path, spec_text(f'{kind}: "vfs_read*"')).probes[0].alternatives
        mains = [f for f in alt.functions if f.role == "main"]
        assert [f.target for f in mains] == ["vfs_read", "vfs_readlink", "vfs_readv"], kind
        assert [f.func for f in mains] == [0, 1, 2], kind


def test_rendered_c_has_each_functions_own_constant(tmp_path: Path) -> None:
    """One BPF function per target; in each, `func` is a constant: its target's index."""
    text = spec_text(
        'kretprobe: "vfs_read*"',
        extra="  - name: q\n    attach:\n      - kprobe: [vfs_readv, vfs_write]\n"
        "    fields:\n      f: func\n",
    )
    text = text.replace("probes:\n", "probes:\n", 1)
    plan = plan_of(tmp_path, text.replace("output:", "output:", 1))
    assert plan.func_names == ("vfs_read", "vfs_readlink", "vfs_readv", "vfs_write")
    c = render.render_c(bind(plan))
    bodies = re.findall(r"\nint (p\d_\w+)\(struct pt_regs \*ctx\)\n\{\n(.*?)\n\}\n", c, re.S)
    consts = {
        name: re.findall(r"u32 v\d+ = (\d+);", body) for name, body in bodies if "entry" not in name
    }
    assert consts == {
        "p0_p_kretprobe_vfs_read": ["0"],
        "p0_p_kretprobe_vfs_readlink": ["1"],
        "p0_p_kretprobe_vfs_readv": ["2"],
        "p1_q_kprobe_vfs_readv": ["2"],  # the same function: the same key in `count by f`
        "p1_q_kprobe_vfs_write": ["3"],
    }
    decoder = render.render_decoder(plan)
    assert "(3, 'vfs_write')" in decoder


def test_func_decodes_to_the_name() -> None:
    info = decoders.FieldInfo(0, ((0, "vfs_read"), (1, "vfs_readv")))
    convert = decoders.converter("func", info, decoders.State())
    assert [convert(0), convert(1)] == ["vfs_read", "vfs_readv"]


def test_func_on_a_tracepoint_names_it(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, spec_text("tracepoint: sched/sched_process_exec"))
    assert plan.func_names == ("sched/sched_process_exec",)
    assert "u32 v1 = 0;" in render.render_c(bind(plan))


def test_validate_matrix_expands_on_each_kernel(tmp_path: Path) -> None:
    """The matrix judges a pattern by what it matches on that kernel's BTF."""
    synthetic = tmp_path / "synthetic.btf"
    synthetic.write_bytes(btfwriter.synthetic_kernel())
    kind = KINDS["fentry"]
    debian = load_btf(str(Path(BTF).parent / "linux-6.1.0-57-amd64.btf.xz"))
    assert kind.gap(debian, ["vfs_read*", "tcp_v?_connect"])[0] is None
    assert KINDS["kprobe"].gap(debian, ["vfs_read*"])[0] is None
    assert (
        kind.gap(debian, ["vfs_raed*"])[0]
        == "no function 'vfs_raed*' in BTF (absent or always inlined)"
    )
    gap, _ = kind.gap(load_btf(str(synthetic)), ["vfs_read*"])
    assert gap == "no function 'vfs_read*' in BTF (absent or always inlined)"


class LiveCtx:
    """Binding on a running kernel whose tracefs lists what can attach (no `__init` code)."""

    def __init__(self, live: frozenset[str] | None) -> None:
        self.btf = load_btf(BTF)
        self.live = live

    def function_names(self) -> NameIndex:
        return NameIndex(["vfs_caches_init", "vfs_read", "vfs_readv", "vfs_write"])

    def traceable_functions(self) -> frozenset[str] | None:
        return self.live


def test_on_the_live_kernel_a_pattern_skips_what_cannot_attach() -> None:
    """BTF lists __init functions (freed after boot: a kprobe on vfs_caches_init fails); the
    running kernel's available_filter_functions does not, and bcc and bpftrace expand over it."""
    kind = KINDS["kprobe"]
    live = frozenset({"vfs_read", "vfs_readv", "vfs_write", "other"})
    assert kind.expand_target(LiveCtx(live), "vfs_*") == ("vfs_read", "vfs_readv", "vfs_write")
    assert kind.expand_target(LiveCtx(None), "vfs_*")[0] == "vfs_caches_init"  # offline: BTF
    assert kind.expand_target(LiveCtx(live), "vfs_read") == ("vfs_read",)  # a name: as written


def test_traceable_functions_reads_tracefs(tmp_path: Path) -> None:
    (tmp_path / "events").mkdir()
    (tmp_path / "available_filter_functions").write_text("vfs_read\nfoo [mod]\n\n")
    assert tracefs.traceable_functions(str(tmp_path)) == {"vfs_read", "foo"}
    assert tracefs.traceable_functions(str(tmp_path / "none")) is None


def test_two_fentry_probes_on_one_match_are_located_at_the_pattern(tmp_path: Path) -> None:
    """bcc names an fentry program after its function: two probes cannot both take vfs_readv.
    The second is said at the pattern that matched it (not at an entry it does not have)."""
    extra = '  - name: q\n    attach:\n      - fentry: [vfs_write, "vfs_readv*"]\n'
    extra += "    fields:\n      f: func\n"
    errors = errors_of(tmp_path, spec_text('fentry: "vfs_read*"', extra=extra))
    assert errors == [
        "10:30: probe 'p' already has a fentry on 'vfs_readv'; bcc names the program after the "
        "function, so a spec can attach one fentry to it"
    ]


ALIASED = r"""
__attribute__((noinline)) int work_a(int x) { return x + 1; }
__attribute__((noinline)) int work_b(int x) { return x + 2; }
int __work_b_alias(int x) __attribute__((alias("work_b")));
int other(int x) { return x - 1; }
int main(void) { return work_a(1) + work_b(2) + other(3); }
"""


@pytest.fixture(scope="module")
def user_prog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A program with work_a, work_b (and an alias of it at the same address), other."""
    folder = tmp_path_factory.mktemp("uprog")
    (folder / "prog.c").write_text(ALIASED)
    subprocess.run(["gcc", "-O1", "-o", str(folder / "prog"), str(folder / "prog.c")], check=True)
    return folder


def test_a_symbol_pattern_expands_against_the_elf_symbols(user_prog: Path) -> None:
    target = binary.parse("./prog:*work_*")
    assert (target.binary, target.symbol) == ("./prog", "*work_*")
    found = binary.locate_all(target, str(user_prog))
    # __work_b_alias is work_b's address: attached once, under the plainer name
    assert [loc.target.symbol for loc in found] == ["work_a", "work_b"]
    assert [loc.text for loc in found] == [f"{user_prog}/prog:work_a", f"{user_prog}/prog:work_b"]
    with pytest.raises(
        elf.ElfSymbolError, match=r"no function matches 'wrok_\*' in .*prog; did you mean 'work_"
    ):
        binary.locate_all(binary.parse("./prog:wrok_*"), str(user_prog))
    with pytest.raises(binary.BinaryError, match="is not a symbol"):
        binary.parse("./prog:work_*+4")  # an offset into every match is not a thing


def test_a_uprobe_pattern_plans_one_function_per_symbol(user_prog: Path) -> None:
    spec = user_prog / "u.yaml"
    spec.write_text(spec_text('uretprobe: "./prog:work_?"'))
    plan = pipeline.check(str(spec), BTF).plan
    (alt,) = plan.probes[0].alternatives
    assert plan.func_names == ("work_a", "work_b")
    mains = [f for f in alt.functions if f.role == "main"]
    assert [(f.name, f.target, f.func) for f in mains] == [
        ("p0_p_uretprobe_prog_work_a", f"{user_prog}/prog:work_a", 0),
        ("p0_p_uretprobe_prog_work_b", f"{user_prog}/prog:work_b", 1),
    ]
    spec.write_text(spec_text('uprobe: "./prog:work_*"').replace("work_*", "[!w]*"))
    names = pipeline.check(str(spec), BTF).plan.func_names
    assert "other" in names and "main" in names and "work_a" not in names


def test_a_uprobe_list_mixes_patterns_and_names(user_prog: Path) -> None:
    """A pattern's match named again is attached once; one function named twice (by two
    spellings of its binary) is an error, as before patterns."""
    spec = user_prog / "u.yaml"
    spec.write_text(spec_text('uprobe: ["./prog:work_*", "./prog:work_a", "./prog:other"]'))
    plan = pipeline.check(str(spec), BTF).plan
    assert plan.func_names == ("work_a", "work_b", "other")
    spec.write_text(spec_text(f'uprobe: ["./prog:work_a", "{user_prog}/prog:work_a"]'))
    (error,) = errors_of(user_prog, spec.read_text())
    assert "/prog:work_a' is './prog:work_a' (same address 0x" in error, error
    assert error.endswith("in prog: it would count each call twice"), error


def test_a_symbol_pattern_over_the_limit_is_refused(tmp_path: Path) -> None:
    """libc has some 3000 functions: `libc:*` is refused, located at the target."""
    (error,) = errors_of(tmp_path, spec_text('uprobe: "libc:*"'))
    assert re.match(r"5:18: '\*' matches \d+ functions; at most 1000 can be attached", error), error
