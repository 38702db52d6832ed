"""Write BTF by hand, as Documentation/bpf/btf.rst lays it out, for tests.

`Blob` builds the bytes (a 24-byte header, the type records, the string section), so tests can
make exactly the types they need, in either byte order. `synthetic_kernel()` is a tiny kernel
whose `struct sock` and `sock_common` sit at other offsets than any real kernel's, and whose TCP
state constants have other values: whatever of it reaches the rendered C can only have come
from the BTF the engine was given (`--btf`).
"""

from __future__ import annotations

import struct

from engine.kernel.btf import Kind


class Blob:
    """Builds BTF: a 24-byte header, the type records, then the string section."""

    def __init__(self, order: str = "<") -> None:
        self.order = order
        self.strs = bytearray(b"\0")
        self.offsets: dict[str, int] = {}
        self.types = bytearray()
        self.count = 0

    def s(self, name: str) -> int:
        if not name:
            return 0
        if name not in self.offsets:
            self.offsets[name] = len(self.strs)
            self.strs += name.encode() + b"\0"
        return self.offsets[name]

    def add(
        self,
        kind: Kind,
        name: str = "",
        st: int = 0,
        items: list[int] | None = None,
        vlen: int = 0,
        kflag: bool = False,
    ) -> int:
        """One type record (name, info, size-or-type, then `items`); returns its type id."""
        info = (kflag << 31) | (int(kind) << 24) | vlen
        words = [self.s(name), info, st, *(items or [])]
        self.types += struct.pack(f"{self.order}{len(words)}I", *words)
        self.count += 1
        return self.count

    def int_(self, name: str, size: int, bits: int, enc: int = 0) -> int:
        """enc: 1 signed, 2 char, 4 bool."""
        return self.add(Kind.INT, name, size, [(enc << 24) | bits])

    def typedef(self, name: str, tid: int) -> int:
        return self.add(Kind.TYPEDEF, name, tid)

    def ptr(self, tid: int) -> int:
        return self.add(Kind.PTR, "", tid)

    def const(self, tid: int) -> int:
        return self.add(Kind.CONST, "", tid)

    def array(self, elem: int, index: int, n: int) -> int:
        return self.add(Kind.ARRAY, "", 0, [elem, index, n])

    def struct(
        self, name: str, size: int, members: list[tuple[str, int, int, int]], union: bool = False
    ) -> int:
        """members: (name, type id, bit offset, bitfield size); kind_flag set if any bitfield."""
        kflag = any(m[3] for m in members)
        items: list[int] = []
        for mname, tid, bit_off, bsz in members:
            items += [self.s(mname), tid, (bsz << 24 | bit_off) if kflag else bit_off]
        kind = Kind.UNION if union else Kind.STRUCT
        return self.add(kind, name, size, items, vlen=len(members), kflag=kflag)

    def enum(
        self, name: str, values: list[tuple[str, int]], signed: bool = False, size: int = 4
    ) -> int:
        items: list[int] = []
        for n, v in values:
            items += [self.s(n), v & 0xFFFFFFFF]
        return self.add(Kind.ENUM, name, size, items, vlen=len(values), kflag=signed)

    def enum64(self, name: str, values: list[tuple[str, int]], signed: bool = False) -> int:
        items: list[int] = []
        for n, v in values:
            v &= (1 << 64) - 1
            items += [self.s(n), v & 0xFFFFFFFF, v >> 32]
        return self.add(Kind.ENUM64, name, 8, items, vlen=len(values), kflag=signed)

    def proto(self, ret: int, params: list[tuple[str, int]]) -> int:
        items: list[int] = []
        for n, t in params:
            items += [self.s(n), t]
        return self.add(Kind.FUNC_PROTO, "", ret, items, vlen=len(params))

    def func(self, name: str, ret: int, params: list[tuple[str, int]]) -> int:
        """A global FUNC with its FUNC_PROTO, as vmlinux BTF has for kernel functions."""
        return self.add(Kind.FUNC, name, self.proto(ret, params), vlen=1)

    def bytes(self) -> bytes:
        header = struct.pack(
            f"{self.order}HBBIIIII",
            0xEB9F,
            1,
            0,
            24,
            0,
            len(self.types),
            len(self.types),
            len(self.strs),
        )
        return header + bytes(self.types) + bytes(self.strs)


# --- the synthetic kernel ------------------------------------------------------------------------

SOCK_COMMON_AT = 24  # where struct sock holds __sk_common (0 in every real kernel)
# Byte offsets inside the synthetic struct sock_common; real kernels (6.x) have
# skc_daddr 0, skc_rcv_saddr 4, skc_dport 12, skc_family 16, skc_v6_daddr 56, skc_v6_rcv_saddr 72.
SOCK_COMMON = {
    "skc_family": 0,
    "skc_dport": 2,  # inside an anonymous union > anonymous struct, as in real kernels
    "skc_daddr": 8,
    "skc_rcv_saddr": 12,
    "skc_v6_daddr": 24,
    "skc_v6_rcv_saddr": 40,
}
SOCK_COMMON_SIZE = 56
SOCK_SIZE = 96
# struct sock offsets of the same members: what a spec's `sk.__sk_common.X` reads.
SOCK = {name: SOCK_COMMON_AT + off for name, off in SOCK_COMMON.items()}
# trace_event_raw_inet_sock_set_state; real 6.x: skaddr 8, oldstate 16, newstate 20, protocol 30.
INET_SOCK_SET_STATE = {"protocol": 10, "oldstate": 48, "newstate": 52, "skaddr": 40}
INET_SOCK_SET_STATE_SIZE = 56
# Enum values; real kernels: TCP_ESTABLISHED 1, TCP_SYN_SENT 2, TCP_CLOSE 7, IPPROTO_TCP 6.
TCP_STATES = {"TCP_ESTABLISHED": 11, "TCP_SYN_SENT": 12, "TCP_CLOSE": 17}
IPPROTO = {"IPPROTO_IP": 0, "IPPROTO_ICMP": 1, "IPPROTO_TCP": 6, "IPPROTO_UDP": 17}
FUNCTIONS = ("tcp_v4_connect", "tcp_v6_connect")
# The path of the `mntns_id` builtin, task->nsproxy->mnt_ns->ns.inum, at offsets no real
# kernel has (6.18: nsproxy 1840, mnt_ns 24, ns 24 (ns.inum 24 in all), inum 0 in ns_common).
MNTNS = {"nsproxy": 200, "mnt_ns": 16, "ns": 8, "inum": 20}


def synthetic_kernel(order: str = "<") -> bytes:
    """Just enough of a kernel for specs/tcpconnect.yaml (both alternatives), nothing else:
    no sk_buff, no icmp_echo, no sched tracepoints; a task_struct with only the members
    the `mntns_id` builtin reads (MNTNS)."""
    b = Blob(order)
    i32 = b.int_("int", 4, 32, enc=1)
    u32 = b.int_("unsigned int", 4, 32)
    u16 = b.int_("short unsigned int", 2, 16)
    u8 = b.int_("unsigned char", 1, 8)
    b.int_("char", 1, 8, enc=2 | 1)
    __u8, __u16, __u32 = b.typedef("__u8", u8), b.typedef("__u16", u16), b.typedef("__u32", u32)
    be16, be32 = b.typedef("__be16", __u16), b.typedef("__be32", __u32)
    void_ptr = b.ptr(0)
    const_void_ptr = b.ptr(b.const(0))
    u8_16 = b.array(__u8, i32, 16)
    be32_4 = b.array(be32, i32, 4)
    in6_u = b.struct("", 16, [("u6_addr8", u8_16, 0, 0), ("u6_addr32", be32_4, 0, 0)], union=True)
    in6 = b.struct("in6_addr", 16, [("in6_u", in6_u, 0, 0)])
    ports = b.struct("", 4, [("skc_dport", be16, 0, 0), ("skc_num", __u16, 16, 0)])
    portpair = b.struct("", 4, [("skc_portpair", __u32, 0, 0), ("", ports, 0, 0)], union=True)
    bits = {k: 8 * v for k, v in SOCK_COMMON.items()}
    sock_common = b.struct(
        "sock_common",
        SOCK_COMMON_SIZE,
        [
            ("skc_family", u16, bits["skc_family"], 0),
            ("", portpair, bits["skc_dport"], 0),
            ("skc_daddr", be32, bits["skc_daddr"], 0),
            ("skc_rcv_saddr", be32, bits["skc_rcv_saddr"], 0),
            ("skc_v6_daddr", in6, bits["skc_v6_daddr"], 0),
            ("skc_v6_rcv_saddr", in6, bits["skc_v6_rcv_saddr"], 0),
        ],
    )
    sock = b.struct(
        "sock",
        SOCK_SIZE,
        [("sk_lock", u32, 0, 0), ("__sk_common", sock_common, 8 * SOCK_COMMON_AT, 0)],
    )
    sock_ptr = b.ptr(sock)
    sockaddr = b.struct("sockaddr", 16, [("sa_family", u16, 0, 0)])
    for name in FUNCTIONS:
        b.func(name, i32, [("sk", sock_ptr), ("uaddr", b.ptr(sockaddr)), ("addr_len", i32)])
    b.enum("", list(TCP_STATES.items()))
    b.enum("", list(IPPROTO.items()))
    entry = b.struct(
        "trace_entry",
        8,
        [("type", u16, 0, 0), ("flags", u8, 16, 0), ("preempt_count", u8, 24, 0),
         ("pid", i32, 32, 0)],
    )  # fmt: skip
    tp = INET_SOCK_SET_STATE
    b.struct(
        "trace_event_raw_inet_sock_set_state",
        INET_SOCK_SET_STATE_SIZE,
        [
            ("ent", entry, 0, 0),
            ("protocol", __u16, 8 * tp["protocol"], 0),
            ("skaddr", const_void_ptr, 8 * tp["skaddr"], 0),
            ("oldstate", i32, 8 * tp["oldstate"], 0),
            ("newstate", i32, 8 * tp["newstate"], 0),
        ],
    )
    ns_common = b.struct("ns_common", 32, [("inum", u32, 8 * MNTNS["inum"], 0)])
    mnt_namespace = b.struct("mnt_namespace", 64, [("ns", ns_common, 8 * MNTNS["ns"], 0)])
    nsproxy = b.struct("nsproxy", 64, [("mnt_ns", b.ptr(mnt_namespace), 8 * MNTNS["mnt_ns"], 0)])
    b.struct("task_struct", 512, [("nsproxy", b.ptr(nsproxy), 8 * MNTNS["nsproxy"], 0)])
    const_sock_ptr = b.ptr(b.const(sock))
    b.typedef(
        "btf_trace_inet_sock_set_state",
        b.ptr(b.proto(0, [("", void_ptr), ("", const_sock_ptr), ("", i32), ("", i32)])),
    )
    return b.bytes()
