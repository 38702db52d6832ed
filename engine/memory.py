"""Where a read's memory lives, so each read picks its helper.

Kernel functions and tracepoints read kernel memory (`bpf_probe_read_kernel`); user-space probes
read the traced process's memory (`bpf_probe_read_user`). A read carries its space from the attach
family that binds the value, and a value read from one space is never read with the other's
helper (a user pointer read as kernel memory reads garbage or zeros without any error).
"""

from __future__ import annotations

from enum import Enum


class AddressSpace(Enum):
    KERNEL = "kernel"
    USER = "user"

    @property
    def read_helper(self) -> str:
        """The BPF helper that copies bytes from this space."""
        return f"bpf_probe_read_{self.value}"

    @property
    def read_str_helper(self) -> str:
        """The BPF helper that copies a NUL-terminated string from this space."""
        return f"bpf_probe_read_{self.value}_str"
