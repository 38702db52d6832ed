#!/usr/bin/env python3
"""Active TCP connects, written by hand with bcc the way users write it today.

TRACEPOINT_PROBE(sock, inet_sock_set_state) filtered to TCP CLOSE -> SYN_SENT, one
perf_submit per connect, a Python callback that prints one line (flushed, as bcc's own
tools do with printb). --wakeup N sets the perf buffer's wakeup_events, so the reader is
woken every N events instead of every event (the issue's "woken every 32 events" variant),
and then reads the remainder every 100 ms (perf_buffer_consume) so no event waits longer.
"""

import argparse
import socket
import sys

from bcc import BPF

PROGRAM = r"""
#include <uapi/linux/ptrace.h>
#include <net/sock.h>
#include <bcc/proto.h>

struct event_t {
    u32 pid;
    u16 family;
    u16 dport;
    u8 saddr[16];
    u8 daddr[16];
    char comm[TASK_COMM_LEN];
};
BPF_PERF_OUTPUT(events);

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol != IPPROTO_TCP)
        return 0;
    if (args->oldstate != TCP_CLOSE || args->newstate != TCP_SYN_SENT)
        return 0;
    struct event_t ev = {};
    ev.pid = bpf_get_current_pid_tgid() >> 32;
    ev.family = args->family;
    ev.dport = args->dport;
    if (args->family == AF_INET) {
        __builtin_memcpy(ev.saddr, args->saddr, 4);
        __builtin_memcpy(ev.daddr, args->daddr, 4);
    } else {
        __builtin_memcpy(ev.saddr, args->saddr_v6, 16);
        __builtin_memcpy(ev.daddr, args->daddr_v6, 16);
    }
    bpf_get_current_comm(&ev.comm, sizeof(ev.comm));
    events.perf_submit(args, &ev, sizeof(ev));
    return 0;
}
"""

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--wakeup", type=int, default=1, help="perf buffer wakeup_events")
args = parser.parse_args()

b = BPF(text=PROGRAM)
print("%-6s %-12s %-2s %-16s %-16s %s" % ("PID", "COMM", "IP", "SADDR", "DADDR", "DPORT"))  # noqa: UP031


def print_event(cpu, data, size):
    ev = b["events"].event(data)
    if ev.family == socket.AF_INET:
        ip = 4
        saddr = socket.inet_ntop(socket.AF_INET, bytes(ev.saddr[:4]))
        daddr = socket.inet_ntop(socket.AF_INET, bytes(ev.daddr[:4]))
    else:
        ip = 6
        saddr = socket.inet_ntop(socket.AF_INET6, bytes(ev.saddr))
        daddr = socket.inet_ntop(socket.AF_INET6, bytes(ev.daddr))
    comm = ev.comm.decode("utf-8", "replace")
    line = "%-6d %-12.12s %-2d %-16s %-16s %d" % (ev.pid, comm, ip, saddr, daddr, ev.dport)  # noqa: UP031
    print(line, flush=True)


def lost(count):
    print("lost %d events" % count, file=sys.stderr, flush=True)  # noqa: UP031


b["events"].open_perf_buffer(print_event, page_cnt=64, lost_cb=lost, wakeup_events=args.wakeup)
try:
    if args.wakeup > 1:  # batched wake-ups: read the remainder at least every 100 ms
        while True:
            b.perf_buffer_poll(100)
            b.perf_buffer_consume()
    else:
        while True:
            b.perf_buffer_poll()
except KeyboardInterrupt:
    if args.wakeup > 1:
        b.perf_buffer_consume()
