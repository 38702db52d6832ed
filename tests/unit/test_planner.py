"""The planner against the committed 6.18 BTF fixture: offsets, stashes, bitfields, constants.

Every expected offset is looked up independently through engine.kernel.btf in the same file,
and the few numbers written out are the fixture's (it never changes). The running kernel's
tracefs is tests/kernel/test_plan_live.py's.
"""

from __future__ import annotations

import pathlib

import pytest
from btf_fixture import BTF

from engine.kernel.btf import Btf, Kind
from engine.plan import model as M
from engine.plan import planner
from engine.plan.bind import bind
from engine.plan.layout import load_btf
from engine.spec.loader import load_document

ROOT = pathlib.Path(__file__).resolve().parents[2]


def ev(name: str) -> str:
    """A field's event slot as generated C names it (fields are prefixed: `ev.f_pid`)."""
    slot = getattr(M, "slot_name", lambda n: n)
    return f"ev.{slot(name)}"


@pytest.fixture(scope="module")
def btf() -> Btf:
    return load_btf(BTF)


def plan_of(name: str) -> M.Plan:
    return planner.plan(load_document(str(ROOT / "specs" / f"{name}.yaml")), BTF)


@pytest.fixture(scope="module")
def tcp() -> M.Plan:
    return plan_of("tcpconnect")


@pytest.fixture(scope="module")
def icmp() -> M.Plan:
    return plan_of("icmp")


def offset(btf: Btf, struct: str, *path: str) -> int:
    """Byte offset of a member path, straight from BTF."""
    t = btf.find(struct, Kind.STRUCT)
    assert t is not None, struct
    total, tid = 0, t.id
    for name in path:
        hit = btf.member(tid, name)
        assert hit is not None, (struct, name)
        total, tid = total + hit.bit_offset // 8, hit.type_id
    return total


def field_steps(alt: M.Alternative, name: str) -> tuple[M.Step, ...]:
    return next(f.steps for f in alt.fields if f.name == name)


def all_steps(alt: M.Alternative) -> list[M.Step]:
    return list(planner.iter_steps(alt))


# --- tcpconnect ------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1])
def test_tcpconnect_offsets_match_btf(tcp: M.Plan, btf: Btf, index: int) -> None:
    alt = tcp.probes[0].alternatives[index]
    dport = [s for s in field_steps(alt, "dport") if isinstance(s, M.Load)]
    assert [s.offset for s in dport] == [offset(btf, "sock", "__sk_common", "skc_dport")]
    assert dport[0].size == 2
    family = [s for s in field_steps(alt, "ip") if isinstance(s, M.Load) and s.size == 2]
    assert [s.offset for s in family] == [offset(btf, "sock", "__sk_common", "skc_family")]
    daddr = next(s for s in field_steps(alt, "daddr") if isinstance(s, M.Inet))
    assert daddr.v6_offset == offset(btf, "sock", "__sk_common", "skc_v6_daddr")
    assert daddr.v4_offset == offset(btf, "sock", "__sk_common", "skc_daddr")
    assert daddr.family == M.Local(family[0].dest)  # the family read once, shared
    saddr = next(s for s in field_steps(alt, "saddr") if isinstance(s, M.Inet))
    assert saddr.v6_offset == offset(btf, "sock", "__sk_common", "skc_v6_rcv_saddr")
    assert saddr.v4_offset == offset(btf, "sock", "__sk_common", "skc_rcv_saddr")


def test_dport_store_swaps_16(tcp: M.Plan) -> None:
    for alt in tcp.probes[0].alternatives:
        store = next(s for s in field_steps(alt, "dport") if isinstance(s, M.Store))
        assert store.swap == 16
        ip = next(s for s in field_steps(alt, "ip") if isinstance(s, M.Store))
        assert ip.swap == 0


def test_kretprobe_stashes_only_sk(tcp: M.Plan, btf: Btf) -> None:
    alt = tcp.probes[0].alternatives[0]
    assert alt.kind == "kretprobe"
    assert alt.stash == (("a0", 0),)
    for target in ("tcp_v4_connect", "tcp_v6_connect"):
        fn = btf.function(target)
        assert fn is not None and fn[1][0].name == "sk"
    stashed = [s for s in all_steps(alt) if isinstance(s, M.Stashed)]
    assert [s.slot for s in stashed] == ["a0"]  # read back once, shared by every field
    assert [(f.kind, f.role) for f in alt.functions] == [
        ("kprobe", "entry"),
        ("kretprobe", "main"),
        ("kprobe", "entry"),
        ("kretprobe", "main"),
    ]
    assert [f.target for f in alt.functions] == ["tcp_v4_connect"] * 2 + ["tcp_v6_connect"] * 2


def test_kretprobe_where_reads_the_return_value(tcp: M.Plan) -> None:
    """Without --cgroupmap and --mntnsmap their terms drop out, and so do their reads."""
    from engine.plan.bind import bind

    alt = bind(tcp).probes[0].alternative
    assert alt.steps == (M.Arg("v1", "s32", -1),)  # tcp_v4_connect returns int
    assert alt.where == M.CCompare("==", M.CVar("v1", "s32"), M.CNum(0, "s32"))


def test_pinned_map_options_look_the_value_up_as_a_u64(tcp: M.Plan) -> None:
    """`cgroup_id in $cgroupmap and mntns_id in $mntnsmap`: the cgroup id and the mount
    namespace id (task->nsproxy->mnt_ns->ns.inum, a u32 at BTF offsets) looked up in the
    maps pinned at the given paths, as u64 keys."""
    from engine.plan.bind import bind

    alt = bind(tcp, options={"cgroupmap": "/sys/fs/bpf/cg", "mntnsmap": "/sys/fs/bpf/ns"})
    where = alt.probes[0].alternative.where
    assert isinstance(where, M.CBool)
    sets = [t.set for t in where.terms if isinstance(t, M.CInSet)]
    assert sets == [
        M.SetMap("set_cgroupmap", "u64", (), pinned="/sys/fs/bpf/cg"),
        M.SetMap("set_mntnsmap", "u64", (), pinned="/sys/fs/bpf/ns"),
    ]
    steps = alt.probes[0].alternative.steps
    assert M.Builtin("v2", "u64", "cgroup_id") in steps
    loads = [s for s in steps if isinstance(s, M.Load)]
    assert [(s.size, s.offset) for s in loads][-1] == (4, 24)  # ns.inum: mnt_namespace + 24


def test_tracepoint_loads_skaddr_at_its_offset(tcp: M.Plan, btf: Btf) -> None:
    alt = tcp.probes[0].alternatives[1]
    assert alt.kind == "tracepoint" and alt.stash == ()
    loads = [s for s in all_steps(alt) if isinstance(s, M.Load) and s.base == M.Local("ctx_addr")]
    skaddr = [s for s in loads if s.size == 8]
    assert [s.offset for s in skaddr] == [8]
    (record,) = btf.tracepoint_records("inet_sock_set_state")
    assert record.name == "trace_event_raw_inet_sock_set_state"
    assert {m.name: m.bit_offset // 8 for m in record.members}["skaddr"] == 8


def test_tracepoint_where_uses_btf_enum_constants(tcp: M.Plan, btf: Btf) -> None:
    alt = tcp.probes[0].alternatives[1]
    assert isinstance(alt.where, M.CBool) and alt.where.op == "&&"
    constants = [t.right for t in alt.where.terms if isinstance(t, M.CCompare)]
    want = [btf.enum_constant(n) for n in ("IPPROTO_TCP", "TCP_CLOSE", "TCP_SYN_SENT")]
    assert [c.value for c in constants if isinstance(c, M.CNum)] == [w[1] for w in want if w]
    assert [c.value for c in constants if isinstance(c, M.CNum)] == [6, 7, 2]


def test_tcpconnect_event_layout(tcp: M.Plan) -> None:
    assert tcp.event.size == 72
    names = ["time", "uid", "pid", "comm", "ip", "saddr", "daddr", "dport"]
    assert [s.name for s in tcp.event.slots] == [ev(n)[3:] for n in names]
    assert [f.name for f in tcp.fields] == names
    key = bind(tcp, count=True).aggregations[0].key  # -c: the count's key
    assert [s.name for s in key.slots] == [ev(n)[3:] for n in ("saddr", "daddr", "dport")]
    assert key.size == 38


def test_tcpconnect_options_and_filter(tcp: M.Plan) -> None:
    opts = {o.name: o for o in tcp.options}
    assert (opts["port"].ctype, opts["port"].is_list) == ("u16", True)
    assert (opts["pid"].short, opts["pid"].long) == ("-p", "--pid")
    assert tcp.probes[0].filter == M.CBool(
        "&&",
        (
            M.CCompare("==", M.CVar(ev("pid"), "u32"), M.COption("pid", "u32", False)),
            M.CCompare("==", M.CVar(ev("uid"), "u32"), M.COption("uid", "u32", False)),
            M.CIn(M.CVar(ev("dport"), "u16"), M.COption("port", "u16", True)),
        ),
    )
    for alt in tcp.probes[0].alternatives:
        assert alt.filter_fields == ("dport", "pid", "uid")


# --- icmp --------------------------------------------------------------------------------------


def test_icmp_tracepoint_reads_ip_version_bitfield(icmp: M.Plan, btf: Btf) -> None:
    alt = icmp.probes[0].alternatives[1]
    bits = [s for s in alt.steps if isinstance(s, M.LoadBits)]
    assert len(bits) == 1
    assert (bits[0].offset, bits[0].size, bits[0].shift, bits[0].mask) == (0, 1, 4, 15)
    iphdr = btf.find("iphdr", Kind.STRUCT)
    assert iphdr is not None
    version = btf.member(iphdr.id, "version")
    assert version is not None and version.bitfield_size == 4 and version.bit_offset == 4
    protocol = [s for s in alt.steps if isinstance(s, M.Load) and s.size == 1]
    assert offset(btf, "iphdr", "protocol") in [s.offset for s in protocol]


def test_icmp_headers_from_skb(icmp: M.Plan, btf: Btf) -> None:
    kprobe, tp = icmp.probes[0].alternatives
    assert kprobe.kind == "kprobe" and kprobe.steps == () and kprobe.where == M.CTrue()
    seq = field_steps(kprobe, "seq")
    assert seq[0] == M.Arg(seq[0].dest, "u64", 0)  # icmp_echo(skb): the first argument
    loads = [s for s in seq if isinstance(s, M.Load)]
    assert [s.offset for s in loads] == [
        offset(btf, "sk_buff", "head"),
        offset(btf, "sk_buff", "transport_header"),
        offset(btf, "icmphdr", "un", "echo", "sequence"),
    ]
    assert any(isinstance(s, M.Add) for s in seq)
    network = [s for s in tp.steps if isinstance(s, M.Load)]
    assert offset(btf, "sk_buff", "network_header") in [s.offset for s in network]
    assert tp.functions[0].target == "net:net_dev_queue"


def test_icmp_layout(icmp: M.Plan) -> None:
    assert icmp.event.size == 40
    assert icmp.counted is None
    assert [c.field for c in icmp.columns] == ["time", "tgid", "pid", "comm", "seq"]
    assert icmp.columns[0].option == "timestamp"


# --- semantic problems: findings about their wording and count ----------------------------------

TWO_ALTERNATIVES = """\
name: tcpconnect
options:
  pid: {flag: -p/--pid, type: u32}
probes:
  - name: connect
    attach:
      - kretprobe: [tcp_v4_connect, tcp_v6_connect]
        where: ret == 0
      - tracepoint: sock/inet_sock_set_state
        where: args.oldstate == TCP_CLOSE and args.newstate == TCP_SYN_SENT
        let:
          sk: args.skaddr as sock
    fields:
      pid: tgid
      dport: {value: sk.__sk_common.skc_dport, decode: be16}
    filter: pid == $pid
output:
  columns: [pid, dport]
"""


def problems(tmp_path: pathlib.Path, text: str) -> list[str]:
    from engine.verbs.validate import validate_path

    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    return [
        f"{p.location.line}:{p.location.col}: {p.message}" for p in validate_path(str(spec), BTF)
    ]


def test_two_alternatives_spec_is_valid(tmp_path: pathlib.Path) -> None:
    assert problems(tmp_path, TWO_ALTERNATIVES) == []


def test_a_field_mistake_is_reported_once(tmp_path: pathlib.Path) -> None:
    text = TWO_ALTERNATIVES.replace("decode: be16}", "decode: be32}")
    assert len(problems(tmp_path, text)) == 1


def test_every_engine_flag_is_reserved() -> None:
    from engine import cli

    for verb in ("run", "render"):
        parser = cli.spec_parser(verb, None)
        flags = {s for action in parser._actions for s in action.option_strings}
        assert flags <= planner.ENGINE_FLAGS, (verb, sorted(flags - planner.ENGINE_FLAGS))


def test_enum_typo_in_where_suggests_the_constant(tmp_path: pathlib.Path) -> None:
    text = TWO_ALTERNATIVES.replace("TCP_SYN_SENT", "TCP_SYN_SNET")
    (got,) = problems(tmp_path, text)
    assert got.endswith("; did you mean 'TCP_SYN_SENT'?")


def test_transposed_member_suggests_the_transposition(tmp_path: pathlib.Path) -> None:
    text = TWO_ALTERNATIVES.replace("skc_dport", "skc_dprot")
    got = problems(tmp_path, text)
    assert got[0].endswith("has no member 'skc_dprot'; did you mean 'skc_dport'?")


def test_unknown_tracepoint_suggests_category_and_event(tmp_path: pathlib.Path) -> None:
    text = TWO_ALTERNATIVES.replace("sock/inet_sock_set_state", "sock/inet_sock_set_stat")
    (got,) = problems(tmp_path, text)
    assert got.endswith("; did you mean 'sock/inet_sock_set_state'?")


def test_unknown_option_suggests_with_dollar(tmp_path: pathlib.Path) -> None:
    text = TWO_ALTERNATIVES.replace("pid == $pid", "pid == $pdi")
    (got,) = problems(tmp_path, text)
    assert got.endswith("did you mean '$pid'?")
