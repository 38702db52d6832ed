"""--container and --pod kept current while a run goes on: each listing of the node's
containers (engine.kernel.containers.Watch, in its own thread) puts the cgroup directory of a
newly started container the selectors pick into a free slot of the kernel's cgroup array, and
frees the slot of one whose directory is gone. The kernel checks the array per event
(`engine_in_cgroups`), so a container is traced from the listing after it starts."""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Callable, Sequence

from engine.kernel import cgroups as cg
from engine.kernel import containers as ct


class ContainerScope:
    """The slots of the cgroup array: those filled before attach (--cgroup's, and the
    containers picked then), then room for containers started later. A slot whose directory
    is gone is freed (a --cgroup directory removed traces nothing any more either)."""

    def __init__(
        self,
        table: Any,  # bcc's CgroupArray: slot -> directory (bcc opens it and stores its fd)
        slots: int,
        filled: Sequence[str],
        selectors: Sequence[ct.Selector],
        say: Callable[[str], None],
    ) -> None:
        self.table = table
        self.paths: list[str | None] = list(filled) + [None] * (slots - len(filled))
        self.selectors = tuple(selectors)
        self.say = say
        self.lock = threading.Lock()  # the watch's thread and the caller both update
        self.full = 0  # containers not traced for want of a slot (reported once each)
        self.missed: set[str] = set()

    def update(self, found: list[ct.Container]) -> None:
        """One listing: new matching containers in, vanished directories out."""
        with self.lock:
            self._update(found)

    def _update(self, found: list[ct.Container]) -> None:
        for i in range(len(self.paths)):
            path = self.paths[i]
            if path is not None and not os.path.isdir(path):
                self.paths[i] = None
                with contextlib.suppress(KeyError, OSError):
                    del self.table[i]
        for c in found:
            if any(s.matches(c) for s in self.selectors):
                self.add(c)

    def add(self, c: ct.Container) -> None:
        try:
            path = cg.resolve(c.cgroup).path
        except cg.CgroupError:
            return  # gone between the listing and now
        if path in self.paths:
            return
        free = next((i for i in range(len(self.paths)) if self.paths[i] is None), -1)
        if free < 0:
            if c.id not in self.missed:
                self.missed.add(c.id)
                self.full += 1
                self.say(
                    f"container {c.name} ({c.short_id}) not traced: all {len(self.paths)} "
                    "cgroup slots are in use"
                )
            return
        try:
            self.table[free] = path
        except OSError:
            return
        self.paths[free] = path
        pod = f", pod {c.pod}" if c.pod else ""
        self.say(f"tracing container {c.name} ({c.short_id}{pod}) from now on")


def keep_current(
    watch: ct.Watch,
    table: Any,
    slots: int,
    filled: Sequence[str],
    selectors: Sequence[ct.Selector],
    say: Callable[[str], None],
) -> ContainerScope:
    """A session's scope, updated at each of the watch's listings from now on (and with its
    last one now: a container started between the flags' check and the attach)."""
    scope = ContainerScope(table, slots, filled, selectors, say)
    watch.on_list.append(scope.update)
    scope.update(watch.last)
    return scope
