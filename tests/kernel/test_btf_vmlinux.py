"""engine.kernel.btf against this kernel's /sys/kernel/btf/vmlinux, bpftool's raw dump and tracefs.

bpftool (libbpf) is the reference decoder: every type we decode must equal its raw dump.
tracefs is the reference for tracepoint records: every event's BTF record candidates must
agree with the kernel's format file on the fields they agree on among themselves.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

import pytest

from engine.kernel import tracefs
from engine.kernel.btf import VMLINUX, Btf, BtfType, Kind

pytestmark = pytest.mark.kernel

SAMPLE = [
    ("sock", Kind.STRUCT),
    ("sock_common", Kind.STRUCT),
    ("sk_buff", Kind.STRUCT),
    ("icmphdr", Kind.STRUCT),
    ("iphdr", Kind.STRUCT),
    ("in6_addr", Kind.STRUCT),
    ("skb_drop_reason", Kind.ENUM),
    ("tcp_v4_connect", Kind.FUNC),
    ("icmp_echo", Kind.FUNC),
    ("btf_trace_inet_sock_set_state", Kind.TYPEDEF),
    ("trace_event_raw_inet_sock_set_state", Kind.STRUCT),
]
# Categories whose events have no trace_event_raw_* record in BTF: syscalls are synthesized
# per system call, ftrace's are the tracer's own entries.
NO_BTF_RECORD = {"syscalls", "ftrace"}
# Events whose BTF record is known to disagree with tracefs on this kernel: none so far.
KNOWN_MISMATCHES: set[str] = set()
LINKAGE = {"static": 0, "global": 1, "extern": 2}


@pytest.fixture(scope="module")
def btf() -> Btf:
    if not os.path.exists(VMLINUX):
        pytest.skip(f"{VMLINUX} is absent: kernel built without CONFIG_DEBUG_INFO_BTF")
    return Btf.load()


@pytest.fixture(scope="module")
def raw() -> dict[int, dict[str, Any]]:
    """bpftool's JSON raw dump, by type id."""
    if not os.path.exists(VMLINUX):
        pytest.skip(f"{VMLINUX} is absent: kernel built without CONFIG_DEBUG_INFO_BTF")
    bpftool = shutil.which("bpftool") or next(
        (p for p in ("/usr/sbin/bpftool", "/sbin/bpftool") if os.access(p, os.X_OK)), None
    )
    if bpftool is None:
        pytest.skip("bpftool is not installed (apt install bpftool): no reference to compare")
    out = subprocess.run(
        [bpftool, "-j", "btf", "dump", "file", VMLINUX, "format", "raw"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {t["id"]: t for t in json.loads(out)["types"]}


def as_bpftool(btf: Btf, t: BtfType) -> dict[str, Any]:
    """Our decoded type in the shape of bpftool's JSON, leaving out what we do not model
    (ARRAY index_type_id, INT bits_offset which is always 0)."""
    d: dict[str, Any] = {"id": t.id, "kind": t.kind.name, "name": t.name or "(anon)"}
    k = t.kind
    if k == Kind.INT:
        enc = "SIGNED" if t.signed else "CHAR" if t.is_char else "BOOL" if t.is_bool else "(none)"
        d.update(size=t.size, nr_bits=t.bits, encoding=enc)
    elif k in (Kind.PTR, Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG):
        d.update(type_id=t.type_id)
    elif k == Kind.ARRAY:
        d.update(type_id=t.type_id, nr_elems=t.nelems)
    elif k in (Kind.STRUCT, Kind.UNION):
        members = []
        for m in t.members:
            md = {"name": m.name or "(anon)", "type_id": m.type_id, "bits_offset": m.bit_offset}
            if m.bitfield_size:
                md["bitfield_size"] = m.bitfield_size
            members.append(md)
        d.update(size=t.size, vlen=len(t.members), members=members)
    elif k in (Kind.ENUM, Kind.ENUM64):
        values = [{"name": e.name, "val": e.value} for e in t.enumerators]
        encoding = "SIGNED" if t.signed else "UNSIGNED"
        d.update(encoding=encoding, size=t.size, vlen=len(values), values=values)
    elif k == Kind.FWD:
        d.update(fwd_kind="union" if t.kind_flag else "struct")
    elif k == Kind.FUNC:
        d.update(type_id=t.type_id, linkage=t.linkage)
    elif k == Kind.FUNC_PROTO:
        params = [{"name": p.name or "(anon)", "type_id": p.type_id} for p in t.params]
        d.update(ret_type_id=t.type_id, vlen=len(params), params=params)
    elif k == Kind.VAR:
        d.update(type_id=t.type_id, linkage=t.linkage)
    elif k == Kind.DATASEC:
        sec = [
            {"type_id": m.type_id, "offset": m.bit_offset // 8, "size": btf.sizeof(m.type_id)}
            for m in t.members
        ]
        d.update(size=t.size, vlen=len(sec), vars=sec)
    elif k == Kind.FLOAT:
        d.update(size=t.size)
    elif k == Kind.DECL_TAG:
        d.update(type_id=t.type_id, component_idx=t.component_idx)
    return d


def reference(r: dict[str, Any]) -> dict[str, Any]:
    """bpftool's JSON, normalized to what as_bpftool() produces."""
    d = dict(r)
    d.pop("index_type_id", None)
    if d["kind"] == "INT":
        assert d.pop("bits_offset") == 0
    if d["kind"] in ("FUNC", "VAR"):
        d["linkage"] = LINKAGE[d["linkage"]]
    if d["kind"] == "ENUM" and d["encoding"] == "UNSIGNED":
        # bpftool 7.1's JSON sign-extends unsigned 32-bit values (its text dump does not):
        # SKB_DROP_REASON_SUBSYS_MASK is 0xffff0000, not 0xffffffffffff0000.
        d["values"] = [{**v, "val": v["val"] & 0xFFFFFFFF} for v in d["values"]]
    return d


def referenced(t: BtfType) -> list[int]:
    return [t.type_id, *(m.type_id for m in t.members), *(p.type_id for p in t.params)]


def test_sample_types_equal_bpftool(btf: Btf, raw: dict[int, dict[str, Any]]) -> None:
    tcp = btf.enum_constant("TCP_SYN_SENT")
    assert tcp is not None and tcp[0].name == "" and tcp[1] == 2
    sample = [tcp[0]]
    for name, kind in SAMPLE:
        t = btf.find(name, kind)
        assert t is not None, name
        first = min(i for i, r in raw.items() if r["name"] == name and r["kind"] == kind.name)
        assert t.id == first, f"{name}: first {kind.name} by id"
        sample.append(t)
    ids = {t.id for t in sample} | {i for t in sample for i in referenced(t) if i}
    ids |= {i for j in list(ids) for i in referenced(btf.type(j)) if i}  # and one level more
    for tid in sorted(ids):
        assert as_bpftool(btf, btf.type(tid)) == reference(raw[tid]), f"type id {tid}"


def test_every_type_equals_bpftool(btf: Btf, raw: dict[int, dict[str, Any]]) -> None:
    assert len(btf) == len(raw) + 1  # ids 1..n plus void
    fresh = Btf.load()  # decode in id order without the cache warmed by other tests
    for tid in range(1, len(fresh)):
        ours = as_bpftool(fresh, fresh.type(tid))
        assert ours == reference(raw[tid]), f"type id {tid}"


def test_names_a_spec_needs(btf: Btf) -> None:
    sock = btf.find("sock", Kind.STRUCT)
    assert sock is not None
    common = btf.member(sock.id, "__sk_common")
    assert common is not None and common.bit_offset == 0
    dport = btf.member(common.type_id, "skc_dport")
    assert dport is not None and dport.bit_offset == 12 * 8  # stable x86_64 layout
    assert [m.name for m in dport.members][-1] == "skc_dport" and len(dport.members) > 1
    assert btf.type_str(dport.type_id) == "__be16" and btf.sizeof(dport.type_id) == 2
    family = btf.member(common.type_id, "skc_family")
    assert family is not None and btf.type_str(family.type_id) == "short unsigned int"
    v6 = btf.member(common.type_id, "skc_v6_daddr")
    assert v6 is not None and btf.type_str(v6.type_id) == "struct in6_addr"
    assert "skc_dport" in btf.member_names(common.type_id)
    ip = btf.find("iphdr", Kind.STRUCT)
    assert ip is not None
    ihl, version = btf.member(ip.id, "ihl"), btf.member(ip.id, "version")
    assert ihl is not None and (ihl.bit_offset, ihl.bitfield_size) == (0, 4)
    assert version is not None and (version.bit_offset, version.bitfield_size) == (4, 4)
    icmp = btf.find("icmphdr", Kind.STRUCT)
    assert icmp is not None
    un = btf.member(icmp.id, "un")
    assert un is not None and un.bit_offset == 32
    echo = btf.member(un.type_id, "echo")
    assert echo is not None
    seq = btf.member(echo.type_id, "sequence")
    assert seq is not None and un.bit_offset + echo.bit_offset + seq.bit_offset == 48
    assert btf.enum_constant("IPPROTO_TCP") is not None
    assert btf.enum_constant("IPPROTO_TCP")[1] == 6  # type: ignore[index]
    assert btf.enum_constant("TCP_CLOSE")[1] == 7  # type: ignore[index]
    fn = btf.function("tcp_v4_connect")
    assert fn is not None
    assert [(p.name, btf.type_str(p.type_id)) for p in fn[1]] == [
        ("sk", "struct sock *"),
        ("uaddr", "struct sockaddr *"),
        ("addr_len", "int"),
    ]
    assert btf.type_str(fn[2]) == "int"
    params = btf.raw_tracepoint("inet_sock_set_state")
    assert params is not None and [p.name for p in params] == ["sk", "oldstate", "newstate"]
    assert btf.type_str(params[0].type_id) == "const struct sock *"
    recs = btf.tracepoint_records("net_dev_queue")
    assert recs and recs[0].name == "trace_event_raw_net_dev_template"
    assert "sock" in btf.names(Kind.STRUCT) and "TCP_SYN_SENT" in btf.enum_names()


def btf_fields(btf: Btf, record: BtfType) -> dict[str, tuple[int, int]]:
    """A trace_event_raw_* record as tracefs names its fields: name -> (offset, size)."""
    fields = {}
    for m in record.members:
        if m.name == "ent":  # struct trace_entry: common_type, common_flags, ...
            for e in btf.strip(m.type_id).members:
                off = (m.bit_offset + e.bit_offset) // 8
                fields[f"common_{e.name}"] = (off, btf.sizeof(e.type_id))
        elif m.name != "__data":  # the flexible tail holding dynamic data
            name = m.name.removeprefix("__data_loc_").removeprefix("__rel_loc_")
            fields[name] = (m.bit_offset // 8, btf.sizeof(m.type_id))
    return fields


def test_tracepoint_records_agree_with_tracefs(btf: Btf) -> None:
    try:
        events = tracefs.all_events()
    except tracefs.TracefsError as e:
        pytest.skip(str(e))
    exact, partial, unmapped, mismatched = [], [], [], []
    fields_total = fields_agreed = 0
    for event in events:
        category, name = event.split("/")
        fmt = tracefs.read_format(category, name)
        records = btf.tracepoint_records(name)
        if not records:
            unmapped.append(event)
            continue
        candidates = [btf_fields(btf, r) for r in records]
        agreed = {
            k: v for k, v in candidates[0].items() if all(c.get(k) == v for c in candidates[1:])
        }
        real = {f.name: (f.offset, f.size) for f in fmt.fields}
        wrong = [k for k, v in agreed.items() if k in real and real[k] != v]
        own = [k for k in real if not k.startswith("common_")]
        fields_total += len(own)
        fields_agreed += sum(k in agreed for k in own)
        if wrong:
            mismatched.append(f"{event} ({records[0].name}: {', '.join(wrong[:3])})")
        elif set(real) <= set(agreed):
            exact.append(event)
        else:
            partial.append(event)
    mapped = len(events) - len(unmapped)
    unexpected = [e for e in unmapped if e.split("/")[0] not in NO_BTF_RECORD]
    print(
        f"\ntracefs events: {len(events)}; with BTF records: {mapped}; all fields agreed: "
        f"{len(exact)} ({len(exact) / max(mapped, 1):.1%}); some fields ambiguous among "
        f"candidate classes: {len(partial)} (event fields agreed overall: {fields_agreed}/"
        f"{fields_total} = {fields_agreed / max(fields_total, 1):.1%}); mismatching: "
        f"{len(mismatched)}; unmapped outside "
        f"{sorted(NO_BTF_RECORD)}: {len(unexpected)} {unexpected[:10]}"
    )
    assert [m for m in mismatched if m.split(" ")[0] not in KNOWN_MISMATCHES] == []
    assert len(unexpected) <= max(5, len(events) // 100)
    assert len(exact) >= 0.75 * mapped
