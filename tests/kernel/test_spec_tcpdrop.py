"""`specs/tcpdrop.yaml` (skb/kfree_skb: TCP drops with the reason by name, the packet's
addresses and ports from its headers, and the kernel stack) against a bpftrace script reading
the same tracepoint, on drops the test causes: SYNs to closed loopback ports, over IPv4 and
IPv6, each dropped by the receiving side for having no socket (NO_SOCKET). Every drop of the
test's ports agrees exactly: family, ports, reason, and the kernel stack frame for frame
(bpftrace's `+offset` dropped)."""

from __future__ import annotations

import re
import socket

import pytest
from conftest import STOP_TIMEOUT
from oracle import Bpftrace, dump_probe

from engine.kernel.btf import Btf

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/tcpdrop.yaml"
TRIES = 2  # connects per family
ETHERTYPE = {socket.AF_INET: 0x800, socket.AF_INET6: 0x86DD}
HOSTS = {socket.AF_INET: "127.0.0.1", socket.AF_INET6: "::1"}


def closed_port(family: int) -> int:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((HOSTS[family], 0))
        port: int = s.getsockname()[1]
    return port


def refused(family: int, port: int) -> None:
    for _ in range(TRIES):
        with socket.socket(family, socket.SOCK_STREAM) as c, pytest.raises(ConnectionRefusedError):
            c.connect((HOSTS[family], port))


def script(ports: list[int]) -> str:
    wanted = " || ".join(f"$dport == {p}" for p in ports)
    return (
        "tracepoint:skb:kfree_skb /args->reason > 1 && "
        "(args->protocol == 0x800 || args->protocol == 0x86dd)/ {\n"
        "  $skb = (struct sk_buff *)args->skbaddr;\n"
        "  $th = (struct tcphdr *)($skb->head + $skb->transport_header);\n"
        "  $dport = (($th->dest & 0xff) << 8) | ($th->dest >> 8);\n"
        "  $sport = (($th->source & 0xff) << 8) | ($th->source >> 8);\n"
        f"  if ({wanted}) {{\n"
        "    @[args->protocol, $sport, $dport, args->reason, kstack] = count();\n"
        "  }\n"
        "}\n" + dump_probe("@")
    )


def parse(lines: list[str]) -> dict[tuple, int]:
    text = "\n".join(lines)
    found = {}
    for m in re.finditer(r"@\[(\d+), (\d+), (\d+), (\d+), \n(.*?)\n\]: (\d+)", text, re.S):
        frames = tuple(f.strip().rsplit("+", 1)[0] for f in m.group(5).splitlines() if f.strip())
        key = (int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4)), frames)
        found[key] = int(m.group(6))
    return found


def test_drops_agree_with_bpftrace(engine) -> None:
    ports = {family: closed_port(family) for family in HOSTS}
    ours = engine(SPEC, "-o", "json")
    oracle = Bpftrace(script(list(ports.values())))
    for family, port in ports.items():
        refused(family, port)
    theirs = parse(oracle.dump())
    result = ours.stop(timeout=STOP_TIMEOUT)
    assert result.code == 0, result.stderr
    names = {e.value: e.name for e in Btf.load().find("skb_drop_reason").enumerators}
    mine: dict[tuple, int] = {}
    for r in result.json_rows():
        if r["dport"] in ports.values():
            proto = 0x800 if r["ip"] == 4 else 0x86DD
            key = (proto, r["sport"], r["dport"], r["reason"], tuple(r["kstack"]))
            mine[key] = mine.get(key, 0) + 1
    theirs_named = {(p, s, d, names[reason], k): n for (p, s, d, reason, k), n in theirs.items()}
    assert mine == theirs_named
    assert sum(mine.values()) == TRIES * len(ports)
    for (proto, _, dport, reason, stack), _n in mine.items():
        family = socket.AF_INET if proto == 0x800 else socket.AF_INET6
        assert (dport, reason) == (ports[family], "SKB_DROP_REASON_NO_SOCKET")
        assert ("tcp_v4_rcv" if proto == 0x800 else "tcp_v6_rcv") in stack
    rows = [r for r in result.json_rows() if r["dport"] in ports.values()]
    assert {r["saddr"] for r in rows} == {r["daddr"] for r in rows} == {"127.0.0.1", "::1"}


def test_ipv4_only(engine) -> None:
    ports = {family: closed_port(family) for family in HOSTS}
    ours = engine(SPEC, "-4", "-o", "json")
    for family, port in ports.items():
        refused(family, port)
    result = ours.stop(timeout=STOP_TIMEOUT)
    rows = [r for r in result.json_rows() if r["dport"] in ports.values()]
    assert [r["dport"] for r in rows] == [ports[socket.AF_INET]] * TRIES
    assert {r["ip"] for r in rows} == {4}
