"""engine.verbs.explain against this machine's kernel BTF (/sys/kernel/btf/vmlinux).

Offsets asserted here are this kernel's (6.18) and stable across recent kernels for these
types. Without root, tracefs is unreadable and explain answers from BTF alone; the output is
the same for these targets.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from engine import cli
from engine.kernel import tracefs
from engine.kernel.btf import VMLINUX
from engine.verbs.explain import run_explain

pytestmark = pytest.mark.skipif(not os.path.exists(VMLINUX), reason=f"no kernel BTF at {VMLINUX}")


def explain(
    target: str, capsys: pytest.CaptureFixture[str], expand: bool = False, btf: str | None = None
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


def test_tracepoint_fields_with_offsets(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = explain("sock/inet_sock_set_state", capsys)
    assert (code, err) == (0, "")
    assert lines[0] == (
        "tracepoint sock/inet_sock_set_state: struct trace_event_raw_inet_sock_set_state (72 bytes)"
    )
    table = rows(lines)
    assert "OFFSET SIZE FIELD TYPE IN A SPEC" in table
    assert "8 8 skaddr const void * args.skaddr (cast: args.skaddr as STRUCT)" in table
    assert "16 4 oldstate int args.oldstate" in table
    assert "26 2 dport __u16 args.dport" in table
    assert "32 4 saddr __u8[4] args.saddr (an address? decode: inet)" in table
    assert "56 16 daddr_v6 __u8[16] args.daddr_v6 (an address? decode: inet)" in table
    assert not any(r.split()[2:3] == ["ent"] for r in table)  # the common header is not a field


def test_tracepoint_data_loc_string(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = explain("sched/sched_process_exec", capsys)
    assert code == 0
    table = rows(lines)
    assert (
        "8 4 filename __data_loc char[] args.filename "
        "(a string; the u32 holds length << 16 | offset)" in table
    )
    assert "12 4 pid pid_t args.pid" in table
    assert "16 4 old_pid pid_t args.old_pid" in table


def test_tracepoint_enum_field(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = explain("skb/kfree_skb", capsys)
    assert code == 0
    assert "36 4 reason enum skb_drop_reason args.reason (printed by name)" in rows(lines)


def test_struct_members_flattened_through_anonymous_unions(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, lines, err = explain("struct sock_common", capsys)
    assert (code, err) == (0, "")
    assert lines[0] == "struct sock_common (136 bytes)"
    table = rows(lines)
    assert "OFFSET SIZE MEMBER TYPE NOTE" in table
    assert "0 4 skc_daddr __be32 anon union > anon struct" in table
    assert "12 2 skc_dport __be16 anon union > anon struct" in table
    assert "16 2 skc_family short unsigned int" in table
    assert "19 bits 0:4 skc_reuse unsigned char" in table
    assert "19 bits 4:5 skc_reuseport unsigned char" in table
    assert "56 16 skc_v6_daddr struct in6_addr" in table
    assert not any("skc_v6_daddr.in6_u" in r for r in table)


def test_struct_expand_one_level(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = explain("struct sock_common", capsys, expand=True)
    assert code == 0
    table = rows(lines)
    assert "56 16 skc_v6_daddr.in6_u union {...}" in table
    assert "48 8 skc_net.net struct net *" in table
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
    table = rows(lines)
    assert "1 TCP_ESTABLISHED" in table
    assert "2 TCP_SYN_SENT <-" in table
    assert "7 TCP_CLOSE" in table
    assert any("decode: {enum: TCP_SYN_SENT}" in r for r in table)


def test_enum_keyword_with_a_constant_names_its_enum(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = explain("enum TCP_CLOSE", capsys)  # as in `decode: {enum: TCP_CLOSE}`
    assert code == 0
    assert lines[0].startswith("enum (anonymous) (4 bytes, ")
    assert "7 TCP_CLOSE <-" in rows(lines)


def test_char_array_field_is_a_string(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = explain("sched/sched_wakeup", capsys)
    assert code == 0
    assert "8 16 comm char[16] args.comm (a string)" in rows(lines)


def test_tracepoint_without_btf_record(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        tracefs.events_dir()
    except tracefs.TracefsError as exc:
        pytest.skip(f"tracefs unreadable: {exc}")
    code, lines, err = explain("syscalls/sys_enter_openat", capsys)
    assert (code, lines) == (1, [])
    assert err == (
        "engine: error: syscalls/sys_enter_openat is in tracefs, but "
        f"{VMLINUX} has no trace_event_raw_* record of it: specs cannot read it\n"
    )


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
            f"{VMLINUX}; did you mean 'tcp_v4_connect'?",
        ),
        ("struct sock_comon", f"no struct sock_comon in {VMLINUX}; did you mean 'sock_common'?"),
        (
            "TCP_ESTABLISHD",
            f"no enum constant 'TCP_ESTABLISHD' in {VMLINUX}; did you mean 'TCP_ESTABLISHED'?",
        ),
        (
            "raw:kfree_skbb",
            f"no raw tracepoint 'kfree_skbb' in {VMLINUX}; did you mean 'kfree_skb'?",
        ),
        ("enum TCP_CLOS", f"no enum TCP_CLOS in {VMLINUX}; did you mean 'TCP_CLOSE'?"),
        (
            "struct a b",
            "cannot explain 'struct a b'; expected FUNCTION, CATEGORY/EVENT, raw:EVENT, "
            "struct NAME, union NAME or enum NAME",
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


def test_explicit_btf_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = explain("struct sock_common", capsys, btf=VMLINUX)
    assert (code, lines[0]) == (0, "struct sock_common (136 bytes)")


def test_cli_verb(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["explain", "struct", "sock_common"]) == 0
    assert capsys.readouterr().out.startswith("struct sock_common (136 bytes)\n")
    assert cli.main(["explain", "no_such_function_anywhere_xyz"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
