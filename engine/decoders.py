"""The decoders a field may name, and what each accepts: shared by the planner and the runtime.

The planner checks a spec's `decode:` against this table and sizes the column from it; the
runtime (`engine.runtime.decoders`) keys its conversion functions by the same names. It sits
below both, so the planner does not import the runtime to know the names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DecoderInfo:
    """How a decoded value prints, and what raw value it accepts."""

    width: int  # natural column width; 0: the field's own size (strings)
    cached: bool = False  # pure in its bytes: rows caches text by raw value
    decimal: bool = False  # prints a number with decimals (tables: %.3f)
    spelled: bool = True  # a spec may name it (int, enum... are chosen by type too)
    size: int = 0  # the raw value must be this many bytes (0: any)
    accepts: str = ""  # what it needs, for the message when `size` does not match


ADDRESS = "a kernel address (8 bytes)"
NANOSECONDS = "nanoseconds (a u64 such as ktime_ns)"
CGROUP_ID = "a cgroup id (the cgroup_id builtin)"

DECODERS: dict[str, DecoderInfo] = {
    "int": DecoderInfo(6, spelled=False),
    "str": DecoderInfo(0, cached=True),
    "inet": DecoderInfo(16, cached=True),
    "ip_version": DecoderInfo(2),
    "enum": DecoderInfo(12),
    "errno": DecoderInfo(12),
    "bool": DecoderInfo(6),
    "hex": DecoderInfo(18),
    "elapsed": DecoderInfo(9, decimal=True, size=8, accepts=NANOSECONDS),
    # nanoseconds shown in a larger unit, with decimals (bcc's LAT(ms), AGE(s))
    "ms": DecoderInfo(8, decimal=True, size=8, accepts=NANOSECONDS),
    "secs": DecoderInfo(8, decimal=True, size=8, accepts=NANOSECONDS),
    "devt": DecoderInfo(9, cached=True),
    "ksym": DecoderInfo(24, size=8, accepts=ADDRESS),
    "syscall": DecoderInfo(16),
    # a cgroup v2 id as its path below the cgroup2 mount (engine.kernel.cgroups.CgroupNames)
    "cgroup": DecoderInfo(24, cached=True, size=8, accepts=CGROUP_ID),
    # a cgroup id as the container or pod it belongs to (engine.kernel.containers.Watch):
    # not cached, as a container started a moment ago is named once the runtime lists it
    "container": DecoderInfo(16, size=8, accepts=CGROUP_ID),
    "container_id": DecoderInfo(12, size=8, accepts=CGROUP_ID),
    "image": DecoderInfo(24, size=8, accepts=CGROUP_ID),
    "pod": DecoderInfo(24, size=8, accepts=CGROUP_ID),
    "pod_namespace": DecoderInfo(12, size=8, accepts=CGROUP_ID),
    "pod_name": DecoderInfo(16, size=8, accepts=CGROUP_ID),
    "pod_container": DecoderInfo(12, size=8, accepts=CGROUP_ID),
    # the `func` builtin: the index of the target that fired, printed as its name (the plan's
    # table, Plan.func_names, carried like an enum's values)
    "func": DecoderInfo(0, cached=True, spelled=False),
    # the stack builtins: a stack id (ustack: and the tgid) printed as frames (one per line)
    # spelled for a stack id kept in state (offcputime: taken at the switch out)
    "kstack": DecoderInfo(24, cached=True, size=8, accepts="a stack id (the kstack builtin)"),
    "ustack": DecoderInfo(24, cached=True, size=8, accepts="a stack id (the ustack builtin)"),
}
STACK_DECODERS = ("kstack", "ustack")
CONTAINER_DECODERS = (
    "container",
    "container_id",
    "image",
    "pod",
    "pod_namespace",
    "pod_name",
    "pod_container",
)
# Spelled in specs but applied while reading (a byte swap in the kernel), then printed as int.
BYTE_ORDER = ("be16", "be32", "be64")
