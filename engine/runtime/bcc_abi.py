"""A fix for bcc's Python binding of `bpf_attach_uprobe`, applied once before any uprobe attach.

libbcc's C function takes seven arguments since the uprobe reference counter arrived
(`..., uint64_t offset, pid_t pid, uint32_t ref_ctr_offset`), but the Python binding of some
releases (Debian's python3-bpfcc 0.26 among them) still declares and passes six. The seventh
is then whatever the stack holds: the kernel takes it as the file offset of a USDT semaphore,
increments the two bytes there in every process that maps the binary, and refuses any other
uprobe at the same address with another offset ("ref_ctr_offset mismatch" in dmesg, EINVAL to
bpftrace). The wrapper passes 0, "no semaphore", as bcc means to; passing a seventh argument
to an older six-argument libbcc is harmless (x86-64 and arm64 pass it where nothing reads it).
"""

from __future__ import annotations

import ctypes as ct
from typing import Any

_FIXED = "_engine_ref_ctr_fixed"
ARGTYPES = [ct.c_int, ct.c_int, ct.c_char_p, ct.c_char_p, ct.c_ulonglong, ct.c_int, ct.c_uint32]


def fix_attach_uprobe(lib: Any) -> None:
    """Make `lib.bpf_attach_uprobe` (bcc.libbcc.lib) pass ref_ctr_offset 0 when bcc calls it
    with six arguments; a binding that already declares seven is left alone."""
    if getattr(lib, _FIXED, False):
        return
    c_function = lib.bpf_attach_uprobe
    if len(c_function.argtypes or ()) >= len(ARGTYPES):
        setattr(lib, _FIXED, True)
        return
    c_function.argtypes = ARGTYPES
    c_function.restype = ct.c_int

    def attach(
        progfd: int, kind: int, ev_name: bytes, path: bytes, addr: int, pid: int, ref: int = 0
    ) -> int:
        return int(c_function(progfd, kind, ev_name, path, addr, pid, ref))

    lib.bpf_attach_uprobe = attach
    setattr(lib, _FIXED, True)
