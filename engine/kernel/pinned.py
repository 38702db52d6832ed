"""A BPF map pinned in bpffs by another tool (bcc's docs/special_filtering.md: `bpftool map
create /sys/fs/bpf/NAME type hash key 8 value 8 entries 128 name NAME`), checked before a
`pinned_map` option reaches the generated C.

The map is opened by path with bpf(BPF_OBJ_GET) and described by its /proc/self/fdinfo
entry (map_type, key_size, ...), so a wrong path, a pinned program, or a map of the wrong type
or key size is one clear sentence instead of a compile or verifier error, or worse a lookup
that reads the wrong bytes (a 4-byte key would compare half of our 8-byte one).
"""

from __future__ import annotations

import ctypes
import os
import re
from dataclasses import dataclass

from engine.kernel.capabilities import _Fail, _nr, _syscall

BPF_OBJ_GET = 7
MAP_TYPES = {1: "hash", 9: "lru_hash"}  # BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LRU_HASH: lookups by key
OTHER_TYPES = {2: "array", 3: "prog_array", 4: "perf_event_array", 5: "percpu_hash",
               6: "percpu_array", 10: "lru_percpu_hash", 12: "array_of_maps",
               13: "hash_of_maps", 27: "ringbuf"}  # fmt: skip
KEY_SIZE = 8  # a u64, as bcc's --cgroupmap and --mntnsmap maps are keyed
# The path is written into the C (bcc's BPF_TABLE_PINNED takes it as a string literal):
# only characters that need no escaping there, and no `:` (bcc splits its section name on it).
SAFE_PATH = re.compile(r"/[A-Za-z0-9._@+/-]{1,4000}")
CREATE = "bpftool map create PATH type hash key 8 value 8 entries N name NAME"


class PinnedError(Exception):
    """What is wrong with a pinned map path, as one sentence."""


@dataclass(frozen=True)
class MapInfo:
    path: str  # resolved (symbolic links followed)
    map_type: int
    key_size: int
    value_size: int
    max_entries: int


class _ObjGetAttr(ctypes.Structure):
    """union bpf_attr, BPF_OBJ_GET part."""

    _fields_ = [("pathname", ctypes.c_uint64), ("bpf_fd", ctypes.c_uint32),
                ("file_flags", ctypes.c_uint32)]  # fmt: skip


def _fdinfo(fd: int) -> dict[str, str]:
    with open(f"/proc/self/fdinfo/{fd}", encoding="ascii", errors="replace") as f:
        return dict((k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in f) if k)


def map_info(path: str) -> MapInfo:
    """Open the object pinned at `path` and describe it; PinnedError if it is not a map."""
    real = os.path.realpath(path)
    if not SAFE_PATH.fullmatch(real):
        raise PinnedError(
            f"'{path}' must be an absolute path of letters, digits and . _ - + @ / only"
        )
    if not os.path.exists(real):
        raise PinnedError(f"'{path}': no such file (pin a map there first: {CREATE})")
    name = ctypes.create_string_buffer(real.encode())
    attr = _ObjGetAttr(pathname=ctypes.addressof(name))
    try:
        fd = _syscall("bpf(BPF_OBJ_GET)", _nr(0), BPF_OBJ_GET, ctypes.pointer(attr),
                      ctypes.sizeof(attr))  # fmt: skip
    except _Fail as exc:
        raise PinnedError(f"'{path}' is not a BPF object pinned in bpffs ({exc})") from None
    try:
        info = _fdinfo(fd)
    finally:
        os.close(fd)
    if "map_type" not in info:
        what = "a BPF program" if "prog_type" in info else "not a BPF map"
        raise PinnedError(f"'{path}' is {what}; expected a hash map ({CREATE})")
    return MapInfo(
        real, int(info["map_type"]), int(info["key_size"]), int(info["value_size"]),
        int(info["max_entries"]),
    )  # fmt: skip


def key_set(path: str) -> str:
    """The resolved path of a pinned hash map keyed by u64 (what `x in $option` looks x up
    in), or PinnedError saying what it is instead."""
    m = map_info(path)
    if m.map_type not in MAP_TYPES:
        kind = OTHER_TYPES.get(m.map_type, "other")
        raise PinnedError(
            f"'{path}' is a map of type {m.map_type} ({kind}), not a hash map "
            f"(BPF_MAP_TYPE_HASH or LRU_HASH; {CREATE})"
        )
    if m.key_size != KEY_SIZE:
        raise PinnedError(
            f"'{path}' has {m.key_size}-byte keys; the ids it holds are u64, 8-byte keys ({CREATE})"
        )
    return m.path
