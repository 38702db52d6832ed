"""Attach a loaded program to a uprobe through libbcc, with every argument the C takes.

bcc 0.26's Python `BPF.attach_uprobe`/`attach_uretprobe` call libbcc's
`bpf_attach_uprobe(progfd, type, ev_name, path, offset, pid, ref_ctr_offset)` with six
arguments (its ctypes prototype predates `ref_ctr_offset`), so the C reads whatever the seventh
register holds as the USDT semaphore's file offset: measured here, 0x6. The kernel then keeps
that offset with the uprobe (and increments the "semaphore" at byte 6 of the file's mapping in
every process), and refuses any other tool's uprobe at the same place with EINVAL
("ref_ctr_offset mismatch" in dmesg): bpftrace, or a second engine. This is bcc's own attach,
with the seventh argument passed as 0: a plain uprobe has no semaphore.
"""

from __future__ import annotations

import ctypes
import importlib
from typing import Any

UPROBE, URETPROBE = 0, 1  # libbcc's enum bpf_probe_attach_type: BPF_PROBE_ENTRY, BPF_PROBE_RETURN


def attach(bpf: Any, fn_name: str, retprobe: bool, name: str, pid: int = -1, **place: Any) -> None:
    """What `bpf.attach_uprobe(name=, sym=/addr=, sym_off=, fn_name=, pid=)` does (uretprobe with
    `retprobe`), with ref_ctr_offset 0. `place`: sym (and sym_off) or addr, as bcc takes them."""
    bcc = importlib.import_module("bcc")  # loaded already: `bpf` is one of its BPF objects
    path, addr = bcc.BPF._check_path_symbol(
        name.encode(), place.get("sym", "").encode(), place.get("addr"), pid,
        place.get("sym_off", 0),
    )  # fmt: skip
    fn = bpf.load_func(fn_name.encode(), bcc.BPF.KPROBE)
    ev_name = bpf._get_uprobe_evname(b"r" if retprobe else b"p", path, addr, pid)
    call = bcc.libbcc.lib["bpf_attach_uprobe"]  # a new pointer: bcc's own keeps its prototype
    call.restype = ctypes.c_int
    call.argtypes = [
        ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint64,
        ctypes.c_int, ctypes.c_uint32,
    ]  # fmt: skip
    fd = call(fn.fd, URETPROBE if retprobe else UPROBE, ev_name, path, addr, pid, 0)
    if fd < 0:
        kind = "uretprobe" if retprobe else "uprobe"
        raise OSError(f"cannot attach {fn_name} to {kind} {name}:{place}")
    bpf._add_uprobe_fd(ev_name, fd)
