"""engine.kernel.btf against a small BTF blob built by hand, byte by byte, as in btf.rst
(tests/btfwriter.py, the writer the other tests share)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from btfwriter import Blob

from engine.kernel.btf import Btf, BtfError, Kind, Member, Param


def build(order: str = "<") -> tuple[Blob, dict[str, int]]:
    """One of every kind, plus the shapes specs need: sock, iphdr, tracepoints."""
    b, ids = Blob(order), {}
    ids["int"] = b.int_("int", 4, 32, enc=1)
    ids["uchar"] = b.int_("unsigned char", 1, 8)
    ids["char"] = b.int_("char", 1, 8, enc=2 | 1)
    ids["bool"] = b.int_("_Bool", 1, 8, enc=4)
    ids["u16"] = b.int_("short unsigned int", 2, 16)
    ids["__u8"] = b.add(Kind.TYPEDEF, "__u8", ids["uchar"])
    ids["u8"] = b.add(Kind.TYPEDEF, "u8", ids["__u8"])  # typedef chain
    ids["const_u8"] = b.add(Kind.CONST, "", ids["u8"])
    ids["__be16"] = b.add(Kind.TYPEDEF, "__be16", ids["u16"])
    ids["void_ptr"] = b.add(Kind.PTR, "", 0)
    ids["const_void"] = b.add(Kind.CONST, "", 0)
    ids["const_void_ptr"] = b.add(Kind.PTR, "", ids["const_void"])
    ids["u8_16"] = b.add(Kind.ARRAY, "", 0, [ids["__u8"], ids["int"], 16])
    ids["iphdr"] = b.struct(
        "iphdr",
        20,
        [
            ("ihl", ids["__u8"], 0, 4),
            ("version", ids["__u8"], 4, 4),
            ("tos", ids["__u8"], 8, 0),
            ("tot_len", ids["__be16"], 16, 0),
        ],
    )
    ids["ports"] = b.struct(
        "", 4, [("skc_dport", ids["__be16"], 0, 0), ("skc_num", ids["u16"], 16, 0)]
    )
    ids["portpair_u"] = b.struct(
        "", 4, [("skc_portpair", ids["int"], 0, 0), ("", ids["ports"], 0, 0)], union=True
    )
    ids["sock_common"] = b.struct(
        "sock_common",
        24,
        [
            ("skc_daddr", ids["int"], 0, 0),
            ("", ids["portpair_u"], 96, 0),
            ("skc_v6_daddr", ids["u8_16"], 128, 0),
            ("skc_family", ids["u16"], 256, 0),
        ],
    )
    ids["sock"] = b.struct(
        "sock", 40, [("__sk_common", ids["sock_common"], 0, 0), ("sk_rcvbuf", ids["int"], 256, 0)]
    )
    ids["sock_t"] = b.add(Kind.TYPEDEF, "sock_t", ids["sock"])
    ids["const_sock"] = b.add(Kind.CONST, "", ids["sock"])
    ids["sock_ptr"] = b.add(Kind.PTR, "", ids["sock"])
    ids["const_sock_ptr"] = b.add(Kind.PTR, "", ids["const_sock"])
    ids["tcp_states"] = b.enum("", [("TCP_ESTABLISHED", 1), ("TCP_SYN_SENT", 2)])
    ids["signed_enum"] = b.enum("rpm_status", [("RPM_INVALID", -1), ("RPM_ACTIVE", 0)], True)
    ids["big"] = b.enum64("big", [("HUGE", (1 << 63) + 5), ("SMALL", 3)])
    ids["neg64"] = b.enum64("", [("NEG64", -2), ("MIN64", -(1 << 63))], signed=True)
    ids["connect_proto"] = b.proto(ids["int"], [("sk", ids["sock_ptr"]), ("addr_len", ids["int"])])
    ids["tcp_v4_connect"] = b.add(Kind.FUNC, "tcp_v4_connect", ids["connect_proto"], vlen=1)
    ids["variadic"] = b.proto(0, [("fmt", ids["const_void_ptr"]), ("", 0)])
    ids["fn_ptr"] = b.add(Kind.PTR, "", ids["connect_proto"])
    ids["arr_ptr"] = b.add(Kind.PTR, "", ids["u8_16"])
    ids["ptr_arr"] = b.add(Kind.ARRAY, "", 0, [ids["sock_ptr"], ids["int"], 4])
    ids["char_ptr"] = b.add(Kind.PTR, "", ids["char"])
    ids["char_ptr_const"] = b.add(Kind.CONST, "", ids["char_ptr"])
    ids["fwd_union"] = b.add(Kind.FWD, "fwd_u", kflag=True)
    ids["fwd_struct"] = b.add(Kind.FWD, "fwd_s")
    ids["volatile_int"] = b.add(Kind.VOLATILE, "", ids["int"])
    ids["restrict_ptr"] = b.add(Kind.RESTRICT, "", ids["sock_ptr"])
    ids["var"] = b.add(Kind.VAR, "my_var", ids["int"], [1])
    ids["datasec"] = b.add(Kind.DATASEC, ".data", 8, [ids["var"], 4, 4], vlen=1)
    ids["double"] = b.add(Kind.FLOAT, "double", 8)
    ids["decl_tag"] = b.add(Kind.DECL_TAG, "bpf_kfunc", ids["tcp_v4_connect"], [0xFFFFFFFF])
    ids["decl_tag_arg"] = b.add(Kind.DECL_TAG, "nonnull", ids["tcp_v4_connect"], [1])
    ids["type_tag"] = b.add(Kind.TYPE_TAG, "user", ids["int"])
    ids["user_ptr"] = b.add(Kind.PTR, "", ids["type_tag"])
    # A second FUNC "sock" would be odd; a FWD of the same name as a struct is common.
    ids["sock_fwd"] = b.add(Kind.FWD, "sock")
    # Tracepoints: inet_sock_set_state is its own class (TRACE_EVENT).
    ids["trace_entry"] = b.struct(
        "trace_entry",
        8,
        [
            ("type", ids["u16"], 0, 0),
            ("flags", ids["uchar"], 16, 0),
            ("preempt_count", ids["uchar"], 24, 0),
            ("pid", ids["int"], 32, 0),
        ],
    )
    ids["raw_issk"] = b.struct(
        "trace_event_raw_inet_sock_set_state",
        24,
        [
            ("ent", ids["trace_entry"], 0, 0),
            ("skaddr", ids["const_void_ptr"], 64, 0),
            ("oldstate", ids["int"], 128, 0),
            ("newstate", ids["int"], 160, 0),
        ],
    )
    const_int = b.add(Kind.CONST, "", ids["int"])
    tp_proto = b.proto(
        0, [("", ids["void_ptr"]), ("", ids["const_sock_ptr"]), ("", const_int), ("", const_int)]
    )
    b.add(Kind.TYPEDEF, "btf_trace_inet_sock_set_state", b.add(Kind.PTR, "", tp_proto))
    iter_proto = b.proto(
        ids["int"],
        [
            ("__data", ids["void_ptr"]),
            ("sk", ids["const_sock_ptr"]),
            ("oldstate", const_int),
            ("newstate", const_int),
        ],
    )
    b.add(Kind.FUNC, "__traceiter_inet_sock_set_state", iter_proto)
    # net_dev_queue is DEFINE_EVENT(net_dev_template, ...); other_event has the same arguments
    # and is an event itself, so it ranks after the template.
    skb_proto = b.proto(0, [("__data", ids["void_ptr"]), ("skb", ids["sock_ptr"])])
    for cls, size in (("net_dev_template", 16), ("other_event", 12)):
        ids[cls] = b.struct(
            f"trace_event_raw_{cls}",
            size,
            [
                ("ent", ids["trace_entry"], 0, 0),
                ("skbaddr", ids["void_ptr"], 64, 0),
            ],
        )
        b.add(Kind.FUNC, f"__bpf_trace_{cls}", skb_proto)
    b.add(Kind.FUNC, "trace_event_raw_event_net_dev_template", skb_proto)
    b.add(Kind.TYPEDEF, "btf_trace_other_event", b.add(Kind.PTR, "", skb_proto))
    b.add(
        Kind.FUNC,
        "__traceiter_net_dev_queue",
        b.proto(ids["int"], [("__data", ids["void_ptr"]), ("skb", ids["sock_ptr"])]),
    )
    # xfs style: the event spells an argument with another typedef of the same type.
    ids["fsblock"] = b.add(Kind.TYPEDEF, "xfs_fsblock_t", ids["int"])
    b.struct(
        "trace_event_raw_fsmap_class",
        16,
        [("ent", ids["trace_entry"], 0, 0), ("bno", ids["fsblock"], 64, 0)],
    )
    b.add(
        Kind.FUNC,
        "__bpf_trace_fsmap_class",
        b.proto(0, [("__data", ids["void_ptr"]), ("bno", ids["fsblock"])]),
    )
    b.add(
        Kind.FUNC,
        "__traceiter_fsmap_low",
        b.proto(ids["int"], [("__data", ids["void_ptr"]), ("bno", ids["int"])]),
    )
    return b, ids


@pytest.fixture(scope="module")
def blob() -> tuple[Btf, dict[str, int]]:
    b, ids = build()
    return Btf.from_bytes(b.bytes(), "test.btf"), ids


def test_len_and_void(blob: tuple[Btf, dict[str, int]]) -> None:
    btf, _ = blob
    assert len(btf) == build()[0].count + 1  # ids 0 (void) .. count
    assert btf.type(0).kind == Kind.VOID and btf.type(0).name == ""
    assert btf.type_str(0) == "void" and btf.sizeof(0) == 0
    with pytest.raises(BtfError, match=r"^test\.btf: no BTF type id 99999$"):
        btf.type(99999)


def test_int_encodings(blob: tuple[Btf, dict[str, int]]) -> None:
    btf, ids = blob
    i = btf.type(ids["int"])
    assert (i.kind, i.name, i.size, i.bits, i.signed, i.is_char, i.is_bool) == (
        Kind.INT,
        "int",
        4,
        32,
        True,
        False,
        False,
    )
    assert btf.type(ids["uchar"]).signed is False
    assert btf.type(ids["char"]).is_char and btf.type(ids["char"]).signed
    assert btf.type(ids["bool"]).is_bool


def test_typedef_chain_and_modifiers(blob: tuple[Btf, dict[str, int]]) -> None:
    btf, ids = blob
    assert btf.type(ids["u8"]).type_id == ids["__u8"]
    assert btf.strip(ids["const_u8"]).id == ids["uchar"]
    assert btf.sizeof(ids["const_u8"]) == 1
    assert btf.type_str(ids["const_u8"]) == "const u8"
    assert btf.type_str(ids["volatile_int"]) == "volatile int"
    assert btf.type(ids["restrict_ptr"]).kind == Kind.RESTRICT
    assert btf.type_str(ids["restrict_ptr"]) == "struct sock *restrict"
    assert btf.type(ids["type_tag"]).kind == Kind.TYPE_TAG
    assert btf.type(ids["type_tag"]).name == "user"
    assert btf.strip(ids["type_tag"]).id == ids["int"]
    assert btf.type_str(ids["user_ptr"]) == "int *"


def test_pointers_and_arrays(blob: tuple[Btf, dict[str, int]]) -> None:
    btf, ids = blob
    assert btf.type_str(ids["void_ptr"]) == "void *"
    assert btf.type_str(ids["const_void_ptr"]) == "const void *"
    assert btf.type_str(ids["sock_ptr"]) == "struct sock *"
    assert btf.type_str(ids["const_sock_ptr"]) == "const struct sock *"
    assert btf.type_str(ids["char_ptr_const"]) == "char *const"
    arr = btf.type(ids["u8_16"])
    assert (arr.kind, arr.type_id, arr.nelems) == (Kind.ARRAY, ids["__u8"], 16)
    assert btf.type_str(ids["u8_16"]) == "__u8[16]"
    assert btf.sizeof(ids["u8_16"]) == 16
    assert btf.type_str(ids["arr_ptr"]) == "__u8 (*)[16]"
    assert btf.type_str(ids["ptr_arr"]) == "struct sock *[4]"
    assert btf.sizeof(ids["ptr_arr"]) == 32 and btf.sizeof(ids["sock_ptr"]) == 8


def test_struct_bitfields(blob: tuple[Btf, dict[str, int]]) -> None:
    btf, ids = blob
    ip = btf.find("iphdr", Kind.STRUCT)
    assert ip is not None and ip.id == ids["iphdr"] and ip.size == 20 and ip.kind_flag
    assert ip.members[:3] == (
        Member("ihl", ids["__u8"], 0, 4),
        Member("version", ids["__u8"], 4, 4),
        Member("tos", ids["__u8"], 8, 0),
    )
    version = btf.member(ip.id, "version")
    assert version is not None and (version.bit_offset, version.bitfield_size) == (4, 4)
    assert btf.type_str(ids["iphdr"]) == "struct iphdr"


def test_anonymous_members(blob: tuple[Btf, dict[str, int]]) -> None:
    btf, ids = blob
    sc = btf.type(ids["sock_common"])
    assert not sc.kind_flag and sc.members[1] == Member("", ids["portpair_u"], 96, 0)
    assert btf.type(ids["portpair_u"]).kind == Kind.UNION
    assert btf.type_str(ids["portpair_u"]) == "union {...}"
    dport = btf.member(ids["sock_common"], "skc_dport")
    assert dport is not None
    assert [m.name for m in dport.members] == ["", "", "skc_dport"]
    assert (dport.bit_offset, dport.type_id, dport.bitfield_size) == (96, ids["__be16"], 0)
    num = btf.member(ids["sock_common"], "skc_num")
    assert num is not None and num.bit_offset == 112
    # through a typedef and a const of the struct
    assert btf.member(ids["sock_t"], "sk_rcvbuf") is not None
    assert btf.member(ids["const_sock"], "__sk_common") is not None
    assert btf.member(ids["sock"], "skc_dport") is None  # not anonymous: needs __sk_common.
    assert btf.member(ids["int"], "x") is None
    assert btf.member_names(ids["sock_common"]) == [
        "skc_daddr",
        "skc_portpair",
        "skc_dport",
        "skc_num",
        "skc_v6_daddr",
        "skc_family",
    ]
    assert btf.member_names(ids["int"]) == []


def test_enums(blob: tuple[Btf, dict[str, int]]) -> None:
    btf, ids = blob
    anon = btf.type(ids["tcp_states"])
    assert anon.name == "" and not anon.signed and anon.size == 4
    hit = btf.enum_constant("TCP_SYN_SENT")
    assert hit is not None and hit[0].id == ids["tcp_states"] and hit[1] == 2
    assert btf.enum_constant("RPM_INVALID") == (btf.type(ids["signed_enum"]), -1)
    assert btf.type(ids["signed_enum"]).signed
    big = btf.type(ids["big"])
    assert big.kind == Kind.ENUM64 and big.size == 8 and not big.signed
    assert [e.value for e in big.enumerators] == [(1 << 63) + 5, 3]
    assert btf.enum_constant("HUGE") == (big, (1 << 63) + 5)
    assert btf.enum_constant("NEG64") == (btf.type(ids["neg64"]), -2)
    assert btf.enum_constant("MIN64") == (btf.type(ids["neg64"]), -(1 << 63))
    assert btf.enum_constant("int") is None  # a type name, not an enumerator
    assert btf.enum_constant("TCP_") is None
    assert btf.enum_names() == sorted(
        [
            "TCP_ESTABLISHED",
            "TCP_SYN_SENT",
            "RPM_INVALID",
            "RPM_ACTIVE",
            "HUGE",
            "SMALL",
            "NEG64",
            "MIN64",
        ]
    )
    assert btf.type_str(ids["signed_enum"]) == "enum rpm_status"
    assert btf.type_str(ids["tcp_states"]) == "enum {...}"


def test_functions(blob: tuple[Btf, dict[str, int]]) -> None:
    btf, ids = blob
    fn = btf.function("tcp_v4_connect")
    assert fn is not None
    func, params, ret = fn
    assert func.id == ids["tcp_v4_connect"] and func.type_id == ids["connect_proto"]
    assert func.linkage == 1
    assert params == (Param("sk", ids["sock_ptr"]), Param("addr_len", ids["int"]))
    assert ret == ids["int"]
    assert btf.type_str(ids["tcp_v4_connect"]) == "int tcp_v4_connect(struct sock *, int)"
    assert btf.type_str(ids["fn_ptr"]) == "int (*)(struct sock *, int)"
    assert btf.type_str(ids["variadic"]) == "void (const void *, ...)"
    assert btf.sizeof(ids["connect_proto"]) == 0
    assert btf.function("nope") is None
    assert btf.function("sock") is None  # names of other kinds are not functions


def test_other_kinds(blob: tuple[Btf, dict[str, int]]) -> None:
    btf, ids = blob
    assert btf.type(ids["fwd_union"]).kind_flag and btf.type_str(ids["fwd_union"]) == "union fwd_u"
    assert btf.type_str(ids["fwd_struct"]) == "struct fwd_s"
    var = btf.type(ids["var"])
    assert (var.kind, var.name, var.type_id, var.linkage) == (Kind.VAR, "my_var", ids["int"], 1)
    assert btf.sizeof(ids["var"]) == 4
    sec = btf.type(ids["datasec"])
    assert (sec.kind, sec.name, sec.size) == (Kind.DATASEC, ".data", 8)
    assert sec.members == (Member("my_var", ids["var"], 32, 0),)
    assert btf.type(ids["double"]).size == 8 and btf.type_str(ids["double"]) == "double"
    tag = btf.type(ids["decl_tag"])
    assert (tag.kind, tag.name, tag.type_id, tag.component_idx) == (
        Kind.DECL_TAG,
        "bpf_kfunc",
        ids["tcp_v4_connect"],
        -1,
    )
    assert btf.type(ids["decl_tag_arg"]).component_idx == 1


def test_find_and_names(blob: tuple[Btf, dict[str, int]]) -> None:
    btf, ids = blob
    both = btf.find_all("sock")
    assert [t.id for t in both] == [ids["sock"], ids["sock_fwd"]]
    assert btf.find("sock").id == ids["sock"]  # type: ignore[union-attr]
    fwd = btf.find("sock", Kind.FWD, Kind.UNION)
    assert fwd is not None and fwd.id == ids["sock_fwd"]
    assert btf.find("sock", Kind.ENUM) is None
    assert btf.find("soc") is None and btf.find("") is None and btf.find_all("ock") == []
    assert btf.find("tcp_v4_connect", Kind.FUNC) is not None
    assert btf.names(Kind.TYPEDEF) == sorted(
        [
            "__u8",
            "u8",
            "__be16",
            "sock_t",
            "btf_trace_inet_sock_set_state",
            "btf_trace_other_event",
            "xfs_fsblock_t",
        ]
    )
    assert "iphdr" in btf.names() and "" not in btf.names()
    assert btf.names(Kind.ENUM64) == ["big"]


def test_raw_tracepoint(blob: tuple[Btf, dict[str, int]]) -> None:
    btf, _ = blob
    params = btf.raw_tracepoint("inet_sock_set_state")
    assert params is not None
    assert [p.name for p in params] == ["sk", "oldstate", "newstate"]
    assert btf.type_str(params[0].type_id) == "const struct sock *"
    assert btf.type_str(params[1].type_id) == "const int"
    assert btf.raw_tracepoint("nope") is None


def test_tracepoint_records(blob: tuple[Btf, dict[str, int]]) -> None:
    btf, ids = blob
    assert [t.id for t in btf.tracepoint_records("inet_sock_set_state")] == [ids["raw_issk"]]
    # DEFINE_EVENT: both classes with the same argument types, the template first.
    recs = btf.tracepoint_records("net_dev_queue")
    assert [t.name for t in recs] == [
        "trace_event_raw_net_dev_template",
        "trace_event_raw_other_event",
    ]
    assert [t.name for t in btf.tracepoint_records("fsmap_low")] == ["trace_event_raw_fsmap_class"]
    assert btf.tracepoint_records("nope") == []


def test_big_endian_blob_decodes_the_same() -> None:
    little, big = Btf.from_bytes(build("<")[0].bytes()), Btf.from_bytes(build(">")[0].bytes())
    assert len(little) == len(big)
    for tid in range(len(little)):
        assert little.type(tid) == big.type(tid)
    assert big.enum_constant("HUGE") == little.enum_constant("HUGE")
    assert big.tracepoint_records("net_dev_queue") == little.tracepoint_records("net_dev_queue")


def _header(blob: bytes) -> list[int]:
    return list(struct.unpack_from("<HBBIIIII", blob))


def _with_header(blob: bytes, **fields: int) -> bytes:
    names = ["magic", "version", "flags", "hdr_len", "type_off", "type_len", "str_off", "str_len"]
    values = _header(blob)
    for k, v in fields.items():
        values[names.index(k)] = v
    return struct.pack("<HBBIIIII", *values) + blob[24:]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b"", "empty file"),
        (lambda b: b[:10], "truncated BTF header"),
        (lambda b: b"\x7fELF" + b[4:], "bad magic"),
        (lambda b: _with_header(b, version=2), "unsupported BTF version 2"),
        (lambda b: b[:-5], "truncated BTF"),
        (lambda b: _with_header(b, type_len=_header(b)[5] - 4), "truncated type section"),
        (lambda b: _with_header(b, type_len=2), "misaligned"),
        (
            lambda b: _with_header(b, str_off=_header(b)[6] + 1, str_len=_header(b)[7] - 1),
            "does not start with an empty string",
        ),
    ],
)
def test_bad_input(mutate: object, message: str) -> None:
    data = mutate(build()[0].bytes())  # type: ignore[operator]
    with pytest.raises(BtfError) as err:
        Btf.from_bytes(data, "bad.btf")
    text = str(err.value)
    assert text.startswith("bad.btf: ") and message in text and "\n" not in text


@pytest.mark.parametrize("cut", [4, 8])
def test_type_section_cut_inside_the_last_record(cut: int) -> None:
    b = Blob()
    b.int_("int", 4, 32, 1)
    b.add(Kind.PTR, "", 1)  # three words: cut 4 bytes into its type, 8 into its info
    data = b.bytes()
    data = _with_header(data, type_len=_header(data)[5] - cut, str_off=_header(data)[6] - cut)
    data = data[: 24 + _header(data)[5]] + bytes(b.strs)
    with pytest.raises(BtfError, match=r"^y: bad BTF: truncated type section at type id 2$"):
        Btf.from_bytes(data, "y")


def test_unknown_kind_and_bad_string_offset() -> None:
    b = Blob()
    b.int_("int", 4, 32, 1)
    b.types += struct.pack("<III", 0, 25 << 24, 0)
    with pytest.raises(BtfError, match=r"^x\.btf: bad BTF: unknown kind 25 at type id 2$"):
        Btf.from_bytes(b.bytes(), "x.btf")
    b = Blob()
    b.types += struct.pack("<IIII", 9999, 1 << 24, 4, 32)
    btf = Btf.from_bytes(b.bytes(), "x.btf")
    with pytest.raises(BtfError, match=r"^x\.btf: bad BTF string offset 9999$"):
        btf.type(1)


def test_load_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(BtfError, match=rf"^{missing}: cannot read BTF: No such file"):
        Btf.load(str(missing))
    good = tmp_path / "ok.btf"
    good.write_bytes(build()[0].bytes())
    btf = Btf.load(str(good))
    assert btf.path == str(good) and btf.find("iphdr") is not None
    text = tmp_path / "text"
    text.write_text("hello world, not BTF at all")
    with pytest.raises(BtfError, match=rf"^{text}: not BTF"):
        Btf.load(str(text))


def test_type_cache_returns_same_object(blob: tuple[Btf, dict[str, int]]) -> None:
    btf, ids = blob
    assert btf.type(ids["sock"]) is btf.type(ids["sock"])
