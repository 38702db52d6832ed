"""cgroup v2 directories: where the hierarchy is mounted, and what `--cgroup PATH` names.

A path is taken as written when it is a directory inside a cgroup2 mount, or else relative to
the mount, as /proc/PID/cgroup prints it (`0::/libpod_parent/libpod-abc`: `--cgroup
/libpod_parent/libpod-abc`). The kernel then checks each event's task against the directory
and everything below it (bpf_current_task_under_cgroup), so a child cgroup made after the run
started, a container's for instance, is in scope too.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Callable

from engine.errors import did_you_mean

MOUNTINFO = "/proc/self/mountinfo"
MAX_CGROUPS = 64  # --cgroup paths in one run: each is a slot the kernel checks per event


class CgroupError(Exception):
    """What is wrong with a cgroup path, as one sentence."""


@dataclass(frozen=True)
class Cgroup:
    path: str  # the directory (symbolic links followed)
    mount: str  # the cgroup2 mount it is in
    id: int  # its cgroup id: the directory's inode number, as bpf_get_current_cgroup_id()

    @property
    def name(self) -> str:
        """As /proc/PID/cgroup says it: the path below the mount, from `/`."""
        return "/" + os.path.relpath(self.path, self.mount).removeprefix(".")


def mounts(mountinfo: str = MOUNTINFO) -> list[str]:
    """Where cgroup2 is mounted (the unified hierarchy), in mountinfo's order."""
    found = []
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    found.append(_unescape(left.split(" ")[4]))
    except OSError:
        return []
    return found


def _unescape(path: str) -> str:
    """mountinfo writes a space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        path = path.replace(code, char)
    return path


def resolve(text: str, cgroup2: list[str] | None = None) -> Cgroup:
    """The cgroup v2 directory `text` names, or CgroupError saying why none, with the
    directories beside the one that is missing when a name was probably mistyped."""
    cgroup2 = mounts() if cgroup2 is None else cgroup2
    if not cgroup2:
        raise CgroupError("no cgroup v2 hierarchy is mounted (mount -t cgroup2 none DIR)")
    candidates = [text] if os.path.isabs(text) else []
    candidates += [os.path.join(m, text.lstrip("/")) for m in cgroup2]
    for path in candidates:
        real = os.path.realpath(path)
        mount = next((m for m in cgroup2 if _inside(real, os.path.realpath(m))), None)
        if mount is not None and os.path.isdir(real):
            return Cgroup(real, os.path.realpath(mount), os.stat(real).st_ino)
    where = " or ".join(cgroup2)
    raise CgroupError(f"'{text}' is no cgroup v2 directory (cgroup2 is mounted at {where})"
                      f"{_nearby(candidates[-1])}")  # fmt: skip


def _inside(path: str, mount: str) -> bool:
    return path == mount or path.startswith(mount.rstrip("/") + "/")


def _nearby(path: str) -> str:
    """`; did you mean ...` among the directories beside a missing one."""
    parent, name = os.path.split(os.path.normpath(path))
    try:
        names = [e.name for e in os.scandir(parent) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return ""
    return did_you_mean(name, names)


class CgroupNames:
    """cgroup id -> its path below the cgroup2 mount (`/system.slice/ssh.service`), for the
    `cgroup` decoder. One walk of the hierarchy maps every directory's inode (its cgroup id)
    to its path; an id not in the map walks it again, at most once every `every` seconds, so a
    cgroup made since (a container started later) is found and a storm of unknown ids costs
    one walk. An id never found (the cgroup was removed before it was seen, or is in no
    mounted hierarchy) prints as `cgroup:ID`; a task in the root cgroup as `/`."""

    def __init__(
        self,
        cgroup2: list[str] | None = None,
        every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mounts = mounts() if cgroup2 is None else cgroup2
        self.every = every
        self.clock = clock
        self.paths: dict[int, str] = {}
        self.walked = -float("inf")
        self.walks = 0

    def name(self, cid: int) -> str:
        found = self.paths.get(cid)
        if found is None and self.clock() - self.walked >= self.every:
            self.walk()
            found = self.paths.get(cid)
        return found if found is not None else f"cgroup:{cid}"

    def walk(self) -> None:
        self.walked = self.clock()
        self.walks += 1
        for mount in self.mounts:
            for top, _dirs, _ in os.walk(mount, onerror=lambda _: None):
                with contextlib.suppress(OSError):
                    ino = os.stat(top).st_ino
                    self.paths.setdefault(ino, "/" + os.path.relpath(top, mount).removeprefix("."))
