"""engine.verbs.explain against the committed 6.18 BTF fixture (explain --btf FILE).

Offsets and sizes are not written out: each table is compared with bpftool's decode of the
same file (tests/bpftool_ref.py), so the tests say what explain must print for any BTF. A
file never brings tracefs in: the live kernel's answers are tests/kernel/test_plan_live.py's.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from bpftool_ref import Reference, reference
from btf_fixture import BTF

from engine import cli
from engine.verbs.explain import run_explain


@pytest.fixture(scope="module")
def ref() -> Reference:
    return reference(BTF)


def explain(
    target: str, capsys: pytest.CaptureFixture[str], expand: bool = False, btf: str = BTF
) -> tuple[int, list[str], str]:
    out = io.StringIO()
    code = run_explain(target, btf, expand, out)
    return code, out.getvalue().splitlines(), capsys.readouterr().err


def rows(lines: list[str]) -> list[str]:
    """Each line with its runs of spaces squeezed, so tests don't depend on column widths."""
    return [" ".join(line.split()) for line in lines]


def test_function_signature_arguments_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = explain("tcp_v4_connect", capsys)
    assert (code, err) == (0, "")
    assert (
        lines[0] == "tcp_v4_connect(struct sock *sk, struct sockaddr *uaddr, int addr_len) -> int"
    )
    table = rows(lines)
    assert "# ARG TYPE SIZE" in table
    assert "0 sk struct sock * 8" in table
    assert "1 uaddr struct sockaddr * 8" in table
    assert "2 addr_len int 4" in table
    assert "kprobe: tcp_v4_connect binds sk, uaddr, addr_len" in table
    assert (
        "kretprobe: tcp_v4_connect binds sk, uaddr, addr_len (saved at entry) and ret (int)"
        in table
    )
    assert "sk is a struct sock *: read sk.MEMBER (engine explain struct sock)" in table


def cells(lines: list[str], header: str) -> list[list[str]]:
    """The rows of the table under `header` (its first cell), split at runs of 2+ spaces."""
    rest = [ln for ln in lines]
    start = next(i for i, ln in enumerate(rest) if ln.split()[:1] == [header])
    out = []
    for line in rest[start + 1 :]:
        if not line.strip():
            break
        out.append(re.split(r"\s{2,}", line.strip()))
    return out


@pytest.mark.parametrize("name", ["tcp_v4_connect", "icmp_echo", "do_sys_openat2"])
def test_function_arguments_match_bpftool(
    name: str, ref: Reference, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, _ = explain(name, capsys)
    assert code == 0
    got = [(int(c[0]), c[1], int(c[3])) for c in cells(lines, "#")]
    assert got == [(i, n, size) for i, (n, size) in enumerate(ref.params(name))]


@pytest.mark.parametrize(
    ("target", "record"),
    [
        ("sock/inet_sock_set_state", "trace_event_raw_inet_sock_set_state"),
        ("sched/sched_process_exec", "trace_event_raw_sched_process_exec"),
        ("sched/sched_switch", "trace_event_raw_sched_switch"),
        ("skb/kfree_skb", "trace_event_raw_kfree_skb"),
    ],
)
def test_tracepoint_fields_match_bpftool(
    target: str, record: str, ref: Reference, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, err = explain(target, capsys)
    assert (code, err) == (0, "")
    size = ref.named("STRUCT", record)["size"]
    assert lines[0] == f"tracepoint {target}: struct {record} ({size} bytes)"
    got = [(int(c[0]), int(c[1]), c[2]) for c in cells(lines, "OFFSET")]
    assert got == ref.record_fields(record)


@pytest.mark.parametrize("struct", ["sock_common", "sock", "sk_buff", "iphdr", "icmphdr"])
def test_struct_members_match_bpftool(
    struct: str, ref: Reference, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, err = explain(f"struct {struct}", capsys)
    assert (code, err) == (0, "")
    assert lines[0] == f"struct {struct} ({ref.named('STRUCT', struct)['size']} bytes)"
    got = [(int(c[0]), c[1], c[2]) for c in cells(lines, "OFFSET")]
    assert got == ref.flat_members("STRUCT", struct)


def test_tracepoint_fields_with_offsets(ref: Reference, capsys: pytest.CaptureFixture[str]) -> None:
    """What each kind of field says in the IN A SPEC column."""
    code, lines, err = explain("sock/inet_sock_set_state", capsys)
    assert (code, err) == (0, "")
    at = {name: off for off, _, name in ref.record_fields("trace_event_raw_inet_sock_set_state")}
    table = rows(lines)
    assert "OFFSET SIZE FIELD TYPE IN A SPEC" in table
    assert (
        f"{at['skaddr']} 8 skaddr const void * args.skaddr (cast: args.skaddr as STRUCT)" in table
    )
    assert f"{at['oldstate']} 4 oldstate int args.oldstate" in table
    assert f"{at['dport']} 2 dport __u16 args.dport" in table
    assert f"{at['saddr']} 4 saddr __u8[4] args.saddr (an address? decode: inet)" in table
    assert (
        f"{at['daddr_v6']} 16 daddr_v6 __u8[16] args.daddr_v6 (an address? decode: inet)" in table
    )
    assert not any(r.split()[2:3] == ["ent"] for r in table)  # the common header is not a field


def test_tracepoint_data_loc_string(ref: Reference, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = explain("sched/sched_process_exec", capsys)
    assert code == 0
    at = {name: off for off, _, name in ref.record_fields("trace_event_raw_sched_process_exec")}
    table = rows(lines)
    assert (
        f"{at['filename']} 4 filename __data_loc char[] args.filename "
        "(a string; the u32 holds length << 16 | offset)" in table
    )
    assert f"{at['pid']} 4 pid pid_t args.pid" in table
    assert f"{at['old_pid']} 4 old_pid pid_t args.old_pid" in table


def test_tracepoint_enum_field(ref: Reference, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = explain("skb/kfree_skb", capsys)
    assert code == 0
    at = {name: off for off, _, name in ref.record_fields("trace_event_raw_kfree_skb")}
    line = f"{at['reason']} 4 reason enum skb_drop_reason args.reason (printed by name)"
    assert line in rows(lines)


def test_struct_members_flattened_through_anonymous_unions(
    ref: Reference, capsys: pytest.CaptureFixture[str]
) -> None:
    """The TYPE and NOTE columns: the path through anonymous members, bitfields."""
    code, lines, err = explain("struct sock_common", capsys)
    assert (code, err) == (0, "")
    at = {name: (off, size) for off, size, name in ref.flat_members("STRUCT", "sock_common")}

    def row(name: str, rest: str) -> str:
        return f"{at[name][0]} {at[name][1]} {name} {rest}"

    table = rows(lines)
    assert "OFFSET SIZE MEMBER TYPE NOTE" in table
    assert row("skc_daddr", "__be32 anon union > anon struct") in table
    assert row("skc_dport", "__be16 anon union > anon struct") in table
    assert row("skc_family", "short unsigned int") in table
    assert row("skc_reuse", "unsigned char") in table and at["skc_reuse"][1] == "bits 0:4"
    assert row("skc_reuseport", "unsigned char") in table
    assert row("skc_v6_daddr", "struct in6_addr") in table
    assert not any("skc_v6_daddr.in6_u" in r for r in table)


def test_struct_expand_one_level(ref: Reference, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = explain("struct sock_common", capsys, expand=True)
    assert code == 0
    at = {name: off for off, _, name in ref.flat_members("STRUCT", "sock_common")}
    table = rows(lines)
    assert f"{at['skc_v6_daddr']} 16 skc_v6_daddr.in6_u union {{...}}" in table
    assert f"{at['skc_net']} 8 skc_net.net struct net *" in table
    assert not any("in6_u.u6_addr8" in r for r in table)  # one level only


def test_bare_struct_name_and_union(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = explain("in6_addr", capsys)
    assert (code, lines[0]) == (0, "struct in6_addr (16 bytes)")
    code, lines, _ = explain("union  bpf_attr", capsys)  # spaces collapse, as the CLI joins words
    assert code == 0 and lines[0].startswith("union bpf_attr (")


def test_enum_constant_of_an_anonymous_enum(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = explain("TCP_SYN_SENT", capsys)
    assert code == 0
    assert lines[0].startswith("enum (anonymous) (4 bytes, ")
    values = reference(BTF).enum_values("TCP_SYN_SENT")
    assert lines[0] == f"enum (anonymous) (4 bytes, {len(values)} values)"
    got = {c[1]: int(c[0]) for c in cells(lines, "VALUE")}
    assert got == values
    table = rows(lines)
    assert f"{values['TCP_SYN_SENT']} TCP_SYN_SENT <-" in table
    assert any("decode: {enum: TCP_SYN_SENT}" in r for r in table)


def test_enum_keyword_with_a_constant_names_its_enum(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = explain("enum TCP_CLOSE", capsys)  # as in `decode: {enum: TCP_CLOSE}`
    assert code == 0
    assert lines[0].startswith("enum (anonymous) (4 bytes, ")
    assert "7 TCP_CLOSE <-" in rows(lines)


def test_char_array_field_is_a_string(ref: Reference, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = explain("sched/sched_switch", capsys)
    assert code == 0
    at = {name: off for off, _, name in ref.record_fields("trace_event_raw_sched_switch")}
    assert f"{at['prev_comm']} 16 prev_comm char[16] args.prev_comm (a string)" in rows(lines)


def test_named_enum(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = explain("enum skb_drop_reason", capsys)
    assert code == 0
    assert lines[0].startswith("enum skb_drop_reason (4 bytes, ")
    table = rows(lines)
    assert "3 SKB_DROP_REASON_NO_SOCKET" in table
    assert any("decode: {enum: skb_drop_reason}" in r for r in table)


def test_raw_tracepoint(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = explain("raw:kfree_skb", capsys)
    assert code == 0
    assert lines[0].startswith("raw tracepoint kfree_skb(struct sk_buff *skb, void *location")
    assert any(r.startswith("raw_tracepoint: kfree_skb binds skb, location") for r in rows(lines))


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            "tcp_v4_conect",
            "no kernel function, struct, union, enum or typedef 'tcp_v4_conect' in "
            f"{BTF}; did you mean 'tcp_v4_connect'?",
        ),
        ("struct sock_comon", f"no struct sock_comon in {BTF}; did you mean 'sock_common'?"),
        (
            "TCP_ESTABLISHD",
            f"no enum constant 'TCP_ESTABLISHD' in {BTF}; did you mean 'TCP_ESTABLISHED'?",
        ),
        (
            "raw:kfree_skbb",
            f"no raw tracepoint 'kfree_skbb' in {BTF}; did you mean 'kfree_skb'?",
        ),
        ("enum TCP_CLOS", f"no enum TCP_CLOS in {BTF}; did you mean 'TCP_CLOSE'?"),
        (
            "struct a b",
            "cannot explain 'struct a b'; expected FUNCTION, CATEGORY/EVENT, raw:EVENT, "
            "BINARY:FUNCTION or BINARY:PROVIDER:NAME (BINARY a path, a library name or lib:NAME), "
            "perf:[EVENT], struct NAME, union NAME or enum NAME",
        ),
    ],
)
def test_unknown_names_one_line_and_exit_1(
    target: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, err = explain(target, capsys)
    assert (code, lines, err) == (1, [], f"engine: error: {message}\n")


def test_unknown_tracepoint_did_you_mean(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = explain("sock/inet_sock_set_stat", capsys)
    assert (code, lines) == (1, [])
    assert err.count("\n") == 1 and err.startswith("engine: error: no tracepoint ")
    assert "did you mean '" in err and "inet_sock_set_state'?" in err


def test_bad_btf_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "vmlinux"
    bad.write_bytes(b"not btf at all, just text")
    code, lines, err = explain("tcp_v4_connect", capsys, btf=str(bad))
    assert (code, lines) == (2, [])  # a bad --btf is a usage error
    assert err == f"engine: error: --btf: {bad}: not BTF (bad magic 6e6f)\n"
    code, _, err = explain("tcp_v4_connect", capsys, btf=str(tmp_path / "absent"))
    assert code == 2 and err.count("\n") == 1 and "cannot read BTF" in err


def test_explicit_btf_file(capsys: pytest.CaptureFixture[str], synthetic_btf: str) -> None:
    """The synthetic kernel's sock_common is not the fixture's: explain reads the file given."""
    import btfwriter as W

    code, lines, _ = explain("struct sock_common", capsys, btf=synthetic_btf)
    assert (code, lines[0]) == (0, f"struct sock_common ({W.SOCK_COMMON_SIZE} bytes)")
    got = {r.split()[2]: int(r.split()[0]) for r in rows(lines)[2:] if r[:1].isdigit()}
    assert {k: got[k] for k in W.SOCK_COMMON} == W.SOCK_COMMON


def test_cli_verb(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["explain", "--btf", BTF, "struct", "sock_common"]) == 0
    assert capsys.readouterr().out.startswith("struct sock_common (136 bytes)\n")
    assert cli.main(["explain", "--btf", BTF, "no_such_function_anywhere_xyz"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
