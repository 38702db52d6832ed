"""Run one of bcc's Python tools with libbcc's bpf_attach_uprobe given its 7th argument.

Debian's bcc 0.26 Python declares `bpf_attach_uprobe` with 6 arguments while the C function
takes 7 (the last is the USDT semaphore's `ref_ctr_offset`), so the kernel gets stack
garbage there; it then refuses any other uprobe on the same instruction whose offset differs
("ref_ctr_offset mismatch" in dmesg, EINVAL). The engine passes 0
(engine.attach.uprobe.fix_bcc_binding); an oracle run beside it on the same functions must
too, or whichever attaches second fails. The tool itself runs unchanged:
`python3 bcc_uprobe_fix.py /usr/sbin/TOOL-bpfcc ARGS...`.
"""

import ctypes
import runpy
import sys

from bcc import libbcc  # /usr/bin/python3's bcc (python3-bpfcc)

_attach = libbcc.lib.bpf_attach_uprobe
if len(_attach.argtypes) == 6:
    _attach.argtypes = [*_attach.argtypes, ctypes.c_uint32]
    libbcc.lib.bpf_attach_uprobe = lambda *a: _attach(*a, 0) if len(a) == 6 else _attach(*a)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
