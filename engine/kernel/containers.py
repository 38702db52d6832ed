"""Containers on this node, from the container runtime's own state: which cgroup v2 directory
each runs in, its name, image and labels (the kubelet's `io.kubernetes.pod.name`,
`io.kubernetes.pod.namespace`, `io.kubernetes.container.name`).

`--container NAME|ID`, `--pod NAMESPACE/NAME` and `--selector KEY=VALUE,...` (labels, as
`kubectl -l`) pick containers from this list; the
`container`, `pod`... decoders name a cgroup id by it. A `Watch` lists again in a thread of
its own every second, so the event path never waits for the runtime, and a container started
after the run began is found within a second.

Sources, each one function returning Containers, registered in SOURCES: podman (`podman ps
--format json`: what `podman inspect` reads from its database) and containerd (`ctr` on its
socket: the runtime of most Kubernetes nodes, where the kubelet's containers and their labels
are in the `k8s.io` namespace). CRI-O would answer the same questions over its CRI socket
(`crictl ps -o json`, `crictl inspect`); that source is not written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable

from engine.errors import did_you_mean
from engine.kernel import cgroups as cg

POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_CONTAINER = "io.kubernetes.container.name"
HOST = "host"  # what the decoders print for a task in no container
SPARE_SLOTS = 16  # cgroup array slots kept for containers that start after the run began
LIST_TIMEOUT = 30.0  # s: a runtime slower than this to list is taken as having none
# a container's own cgroup directory: runc/podman (cgroupfs, systemd), docker, containerd, CRI-O
CONTAINER_DIR = re.compile(r"(?:libpod-|docker-|cri-containerd-|crio-)?([0-9a-f]{64})(?:\.scope)?")


class ContainerError(Exception):
    """What is wrong with a --container or --pod, as one sentence."""


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    image: str
    cgroup: str  # its cgroup v2 directory below the mount, as /proc/PID/cgroup prints it
    labels: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def pod(self) -> str:
        """NAMESPACE/NAME from the kubelet's labels; "" for a container in no pod."""
        name, namespace = self.labels.get(POD_NAME), self.labels.get(POD_NAMESPACE)
        return f"{namespace or 'default'}/{name}" if name else ""


def task_cgroup(pid: int, proc: str = "/proc") -> str:
    """The cgroup v2 directory of a process, as /proc/PID/cgroup's `0::` line says it."""
    try:
        with open(f"{proc}/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].rstrip("\n")
    except OSError:
        pass
    return ""


def podman_containers(run: Callable[[list[str]], str] | None = None) -> list[Container]:
    """Running podman containers (none when podman is not installed or fails)."""
    podman = shutil.which("podman")
    if podman is None and run is None:
        return []
    out = (run or _output)([podman or "podman", "ps", "--format", "json", "--no-trunc"])
    try:
        rows = json.loads(out or "[]")
    except ValueError:
        return []
    found = []
    for row in rows if isinstance(rows, list) else ():
        pid = row.get("Pid") or 0
        names = row.get("Names") or [""]
        where = task_cgroup(pid) if pid else ""
        if where:
            found.append(
                Container(
                    id=row.get("Id", ""),
                    name=names[0],
                    image=row.get("Image", ""),
                    cgroup=where,
                    labels=dict(row.get("Labels") or {}),
                )
            )
    return found


def _output(argv: list[str]) -> str:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=LIST_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


def containerd_containers(run: Callable[[list[str]], str] | None = None) -> list[Container]:
    """Running containerd tasks in every namespace (the kubelet's are in `k8s.io`), through
    containerd's own client `ctr` on the socket it reads from CONTAINERD_ADDRESS (default
    /run/containerd/containerd.sock). A container's labels and image are read once (`ctr
    containers info`: they never change); its cgroup from its task's first process. Its name
    is the kubelet's container name, or its id where the id is not a 64-digit one (`ctr
    run` names it)."""
    ctr = shutil.which("ctr")
    address = os.environ.get("CONTAINERD_ADDRESS") or CONTAINERD_SOCKET
    if run is None and (ctr is None or not os.path.exists(address)):
        return []
    call = run or _output
    base = [ctr or "ctr", "--address", address]
    found = []
    for namespace in call([*base, "namespaces", "list", "-q"]).split():
        for cid, pid in _tasks(call([*base, "--namespace", namespace, "task", "list"])):
            key = (address, namespace, cid)
            if key not in _INFO:
                _INFO[key] = _info(call([*base, "--namespace", namespace, "c", "info", cid]))
            labels, image = _INFO[key]
            where = task_cgroup(pid)
            if where:
                name = cid if not CONTAINER_DIR.fullmatch(cid) else labels.get(POD_CONTAINER, cid)
                found.append(Container(cid, name, image, where, labels))
    return found


CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
_INFO: dict[tuple[str, str, str], tuple[dict[str, str], str]] = {}  # labels, image by id


def _tasks(table: str) -> list[tuple[str, int]]:
    """`ctr task list`'s running tasks: TASK PID STATUS rows after a header."""
    out = []
    for line in table.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "RUNNING" and parts[1].isdigit():
            out.append((parts[0], int(parts[1])))
    return out


def _info(text: str) -> tuple[dict[str, str], str]:
    try:
        info = json.loads(text or "{}")
    except ValueError:
        return {}, ""
    labels = info.get("Labels") if isinstance(info, dict) else None
    image = info.get("Image", "") if isinstance(info, dict) else ""
    return dict(labels or {}), str(image or "")


SOURCES: dict[str, Callable[[], list[Container]]] = {
    "podman": podman_containers,
    "containerd": containerd_containers,
}


def running() -> list[Container]:
    """Every running container every source knows; a source that fails (a runtime's output
    in a shape not foreseen) counts as knowing none, so the others still answer."""
    found = []
    for source in SOURCES.values():
        try:
            found += source()
        except Exception:  # a runtime's surprise must not end the listing
            continue
    return found


@dataclass(frozen=True)
class Selector:
    """One --container, --pod or --selector: which containers a run traces."""

    flag: str  # "--container", "--pod" or "--selector"
    value: str

    def matches(self, c: Container) -> bool:
        if self.flag == "--pod":
            return c.pod == self.value
        if self.flag == "--selector":
            return all(c.labels.get(k) == v for k, v in label_pairs(self.value))
        return c.name == self.value or (len(self.value) >= 3 and c.id.startswith(self.value))

    def candidates(self, found: Iterable[Container]) -> list[str]:
        if self.flag == "--pod":
            return sorted({c.pod for c in found if c.pod})
        if self.flag == "--selector":
            return sorted({f"{k}={v}" for c in found for k, v in c.labels.items()})
        return sorted({c.name for c in found})


def label_pairs(text: str) -> list[tuple[str, str]]:
    """`KEY=VALUE[,KEY=VALUE...]` as pairs (a container must carry all of them)."""
    return [(k, v) for k, _, v in (item.partition("=") for item in text.split(","))]


def select(selectors: Iterable[Selector], found: list[Container]) -> list[Container]:
    """The containers the selectors pick; ContainerError for one that picks none, with what
    there is (and a did-you-mean), since an empty run would look like a quiet workload."""
    chosen: dict[str, Container] = {}
    for s in selectors:
        hits = [c for c in found if s.matches(c)]
        if not hits:
            there = s.candidates(found)
            kinds = {"--pod": "pods", "--selector": "labels"}.get(s.flag, "containers")
            listed = ", ".join(there[:10]) + (" ..." if len(there) > 10 else "")
            now = f"running {kinds}: {listed}" if there else f"no {kinds} are running"
            hint = did_you_mean(s.value, there) if there else ""
            raise ContainerError(f"{s.flag} {s.value}: matches nothing ({now}){hint}")
        chosen.update((c.id, c) for c in hits)
    return list(chosen.values())


class Watch:
    """The node's containers, listed again every `every` seconds in a daemon thread: the
    decoders and the --container/--pod scope read its last list and never wait for the
    runtime. Containers seen once are remembered, so an id that vanished still names the
    container it was. `on_list` runs in the thread after each listing."""

    def __init__(
        self,
        every: float = 1.0,
        source: Callable[[], list[Container]] = running,
        cgroup2: list[str] | None = None,
    ) -> None:
        self.every = every
        self.source = source
        self.mounts = cg.mounts() if cgroup2 is None else cgroup2
        self.by_cgroup: dict[str, Container] = {}
        self.last: list[Container] = []  # the latest listing
        self.on_list: list[Callable[[list[Container]], None]] = []
        self.lists = 0
        self.failures = 0  # listings that raised (the thread goes on); the last one's text
        self.failure = ""
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.stopped = False

    def list_now(self) -> list[Container]:
        found = self.source()
        self.by_cgroup.update((c.cgroup, c) for c in found)
        self.last = found
        self.lists += 1
        for callback in self.on_list:
            callback(found)
        return found

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="containers", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self.stopped = True
        self._wake.set()

    def ask(self) -> None:
        """List again soon (an unknown container cgroup was seen)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self.stopped:
            self._wake.wait(self.every)
            self._wake.clear()
            if self.stopped:
                break
            try:
                self.list_now()
            except Exception as exc:  # the thread must outlive one bad listing
                self.failures += 1
                self.failure = f"{type(exc).__name__}: {exc}"

    def container(self, path: str) -> Container | None:
        """The container whose cgroup directory is `path` or above it."""
        while path and path != "/":
            found = self.by_cgroup.get(path)
            if found is not None:
                return found
            path = os.path.dirname(path)
        return None


class _Shared:
    watch: Watch | None = None


def shared() -> Watch:
    """The process's one Watch, listed once and started on first use: one listing a second
    however many specs (engine serve) or columns ask. A stopped one is replaced."""
    if _Shared.watch is None or _Shared.watch.stopped:
        watch = Watch()
        watch.list_now()
        watch.start()
        _Shared.watch = watch
    return _Shared.watch


def container_id_in(path: str) -> str:
    """The container id a cgroup path names by the runtimes' conventions, else ""."""
    for part in reversed(path.split("/")):
        m = CONTAINER_DIR.fullmatch(part)
        if m:
            return m.group(1)
    return ""
