"""Time loading kernel BTF and resolving the names a typical spec needs.

    python -m bench.btf_bench [--btf FILE] [--runs N]

Each run loads the file afresh (no cache survives between runs) and resolves what
specs/tcpconnect.yaml-like specs ask for; the median of the runs is printed per step, in ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable

from engine.kernel.btf import VMLINUX, Btf, BtfError, Kind


def _sock_dport(btf: Btf) -> object:
    sock = btf.find("sock", Kind.STRUCT)
    assert sock is not None
    common = btf.member(sock.id, "__sk_common")
    assert common is not None
    return btf.member(common.type_id, "skc_dport")


def _tcp_syn_sent(btf: Btf) -> object:
    return btf.enum_constant("TCP_SYN_SENT")


def _tcp_v4_connect(btf: Btf) -> object:
    fn = btf.function("tcp_v4_connect")
    assert fn is not None
    return [(p.name, btf.type_str(p.type_id)) for p in fn[1]]


def _inet_sock_set_state(btf: Btf) -> object:
    return btf.tracepoint_records("inet_sock_set_state"), btf.raw_tracepoint("inet_sock_set_state")


def _net_dev_queue(btf: Btf) -> object:
    return btf.tracepoint_records("net_dev_queue")  # DEFINE_EVENT: builds the class index


STEPS: list[tuple[str, Callable[[Btf], object]]] = [
    ("member sock.__sk_common.skc_dport", _sock_dport),
    ("enum TCP_SYN_SENT", _tcp_syn_sent),
    ("func tcp_v4_connect params", _tcp_v4_connect),
    ("tracepoint inet_sock_set_state record", _inet_sock_set_state),
]
EXTRA: list[tuple[str, Callable[[Btf], object]]] = [
    ("(extra) DEFINE_EVENT net_dev_queue records", _net_dev_queue),
]


def run_once(path: str) -> dict[str, float]:
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    btf = Btf.load(path)
    times["Btf.load (read + index)"] = time.perf_counter() - t0
    for label, step in STEPS + EXTRA:
        t = time.perf_counter()
        if step(btf) is None:
            raise BtfError(f"{path}: {label}: not found")
        times[label] = time.perf_counter() - t
    core = ["Btf.load (read + index)"] + [label for label, _ in STEPS]
    times["load + resolve (total)"] = sum(times[k] for k in core)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.btf_bench", description=__doc__)
    parser.add_argument("--btf", default=VMLINUX, help=f"BTF file (default {VMLINUX})")
    parser.add_argument("--runs", type=int, default=9, help="runs; the median is printed")
    args = parser.parse_args(argv)
    try:
        runs = [run_once(args.btf) for _ in range(max(1, args.runs))]
    except BtfError as e:
        print(f"btf_bench: {e}", file=sys.stderr)
        return 1
    btf = Btf.load(args.btf)
    print(f"{args.btf}: {len(btf) - 1} types; median of {len(runs)} runs")
    for label in runs[0]:
        ms = statistics.median(r[label] for r in runs) * 1000
        print(f"  {label:<45} {ms:8.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
