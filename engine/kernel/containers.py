"""Containers on this node, from the container runtime's own state: which cgroup v2 directory
each runs in, its name, image and labels (the kubelet's `io.kubernetes.pod.name`,
`io.kubernetes.pod.namespace`, `io.kubernetes.container.name`).

`--container NAME|ID`, `--pod NAMESPACE/NAME` and `--selector KEY=VALUE,...` (labels, as
`kubectl -l`) pick containers from this list; the
`container`, `pod`... decoders name a cgroup id by it. A `Watch` lists again in a thread of
its own every second, so the event path never waits for the runtime, and a container started
after the run began is found within a second.

Sources, each one function returning Containers, registered in SOURCES: podman (`podman ps
--format json`: what `podman inspect` reads from its database), cri (the kubelet's own view:
the CRI gRPC service of containerd or CRI-O on their sockets, engine.kernel.cri) and containerd
(`ctr` on its socket, every namespace: containers no kubelet made too). A container two sources
list (containerd's through CRI and ctr) is taken once, from the first. A source that fails
raises SourceError: the others still answer, and the failure is reported, not read as "no
containers".
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable

from engine.errors import did_you_mean
from engine.kernel import cgroups as cg
from engine.kernel import cri

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


class SourceError(Exception):
    """A runtime that failed to list its containers (why, in one line); `found`: what the
    source listed before it failed (from the runtimes that did answer)."""

    def __init__(self, why: str, found: list[Container] | None = None) -> None:
        super().__init__(why)
        self.found = found or []


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
    """Running podman containers (none when podman is not installed)."""
    podman = shutil.which("podman")
    if podman is None and run is None:
        return []
    out = (run or _output)([podman or "podman", "ps", "--format", "json", "--no-trunc"])
    try:
        rows = json.loads(out or "[]")
    except ValueError:
        raise SourceError(f"`podman ps` printed no JSON: {out[:80]!r}") from None
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
    """A runtime client's output; SourceError when it fails (with its first line of stderr)."""
    words = [a for a in argv[1:] if re.fullmatch("[a-z]+", a)][:3]  # `ctr task list`
    what = " ".join([os.path.basename(argv[0]), *words])
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=LIST_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise SourceError(f"`{what}` took over {LIST_TIMEOUT:.0f} s") from None
    except OSError as exc:
        raise SourceError(f"`{what}`: {exc.strerror or exc}") from None
    if done.returncode != 0:
        said = next((ln.strip() for ln in done.stderr.splitlines() if ln.strip()), "")
        raise SourceError(f"`{what}` exited {done.returncode}: {said[:200]}")
    return done.stdout


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
                try:
                    _INFO[key] = _info(call([*base, "--namespace", namespace, "c", "info", cid]))
                except SourceError:
                    continue  # removed since the task list: not a failure of the listing
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


def cri_containers() -> list[Container]:
    """The kubelet's containers from every CRI socket (engine.kernel.cri), named by their
    name in the pod; a socket that fails is reported after the others are listed."""
    found, failed = [], []
    for socket in cri.endpoints():
        try:
            listed = cri.client(socket).containers()
        except cri.CriError as exc:
            failed.append(f"{socket}: {exc}")
            continue
        for c in listed:
            where = task_cgroup(c.pid) if c.pid else ""
            if where:
                found.append(Container(c.id, c.name or c.id, c.image, where, c.labels))
    if failed:
        raise SourceError("; ".join(failed), found)
    return found


SOURCES: dict[str, Callable[[], list[Container]]] = {
    "podman": podman_containers,
    "cri": cri_containers,
    "containerd": containerd_containers,
}


@dataclass
class Listing:
    """One listing of the node: the running containers (each once) and the sources that
    failed, by name, with why."""

    containers: list[Container] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def failures(self) -> str:
        """What failed, as `SOURCE: why; ...` ("" when nothing did)."""
        return "; ".join(f"{name}: {why}" for name, why in self.failed.items())


def running() -> Listing:
    """Every running container every source knows. A source that fails leaves the others:
    it is named in `failed` (with what it still listed) rather than read as knowing none."""
    listing = Listing()
    seen: set[str] = set()
    for name, source in SOURCES.items():
        try:
            found = source()
        except SourceError as exc:
            listing.failed[name] = str(exc)
            found = exc.found
        except Exception as exc:  # a runtime's surprise must not end the listing
            listing.failed[name] = f"{type(exc).__name__}: {exc}"
            continue
        for c in found:
            if c.id not in seen:
                seen.add(c.id)
                listing.containers.append(c)
    return listing


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


# what a selector that picked nothing says there is: (some, none)
THERE = {
    "--container": ("running containers", "no containers are running"),
    "--pod": ("running pods", "no pods are running"),
    "--selector": ("labels of running containers", "no running container has labels"),
}


def select(selectors: Iterable[Selector], listing: Listing) -> list[Container]:
    """The containers the selectors pick; ContainerError for one that picks none, with what
    there is (and a did-you-mean), since an empty run would look like a quiet workload, and
    which runtimes failed to list (their containers may be the ones meant; the Watch that
    listed said why on stderr)."""
    found = listing.containers
    chosen: dict[str, Container] = {}
    for s in selectors:
        hits = [c for c in found if s.matches(c)]
        if not hits:
            there = s.candidates(found)
            some, none = THERE[s.flag]
            listed = ", ".join(there[:10]) + (" ..." if len(there) > 10 else "")
            now = f"{some}: {listed}" if there else none
            if listing.failed:  # why: said on stderr as it failed (Watch)
                now += f"; failed to list: {', '.join(listing.failed)}"
            hint = did_you_mean(s.value, there) if there else ""
            raise ContainerError(f"{s.flag} {s.value}: matches nothing ({now}){hint}")
        chosen.update((c.id, c) for c in hits)
    return list(chosen.values())


class Watch:
    """The node's containers, listed again every `every` seconds in a daemon thread: the
    decoders and the --container/--pod scope read its last list and never wait for the
    runtime. Containers seen once are remembered, so an id that vanished still names the
    container it was. `on_list` runs in the thread after each listing. A runtime that starts
    failing is said (`say`, stderr) once, with why, and said again when all answer again."""

    def __init__(
        self,
        every: float = 1.0,
        source: Callable[[], Listing] = running,
        cgroup2: list[str] | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.every = every
        self.source = source
        self.say = say or _stderr
        self.mounts = cg.mounts() if cgroup2 is None else cgroup2
        self.by_cgroup: dict[str, Container] = {}
        self.listing = Listing()  # the latest listing, with what failed
        self.said = ""  # the failure last said ("" while every runtime answers)
        self.on_list: list[Callable[[list[Container]], None]] = []
        self.lists = 0
        # listings where a source failed or the listing raised (the thread goes on), by
        # source ("listing" for a raise); the last failure's text
        self.failed: dict[str, int] = {}
        self.failure = ""
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.stopped = False

    @property
    def last(self) -> list[Container]:
        """The containers of the latest listing."""
        return self.listing.containers

    @property
    def failures(self) -> int:
        return sum(self.failed.values())

    def list_now(self) -> Listing:
        listing = self.source()
        for name in listing.failed:
            self.failed[name] = self.failed.get(name, 0) + 1
        text = listing.failures()
        if text:
            self.failure = text
        if text != self.said:
            self.say(
                f"engine: listing containers failed: {text}"
                if text
                else "engine: listing containers: every runtime answers again"
            )
        self.said = text
        self.listing = listing
        found = listing.containers
        self.by_cgroup.update((c.cgroup, c) for c in found)
        self.lists += 1
        for callback in self.on_list:
            callback(found)
        return listing

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
                self.failed["listing"] = self.failed.get("listing", 0) + 1
                self.failure = f"{type(exc).__name__}: {exc}"

    def container(self, path: str) -> Container | None:
        """The container whose cgroup directory is `path` or above it."""
        while path and path != "/":
            found = self.by_cgroup.get(path)
            if found is not None:
                return found
            path = os.path.dirname(path)
        return None


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class _Shared:
    watch: Watch | None = None


def current() -> Watch | None:
    """The process's Watch if one runs (engine serve reports its failures)."""
    watch = _Shared.watch
    return watch if watch is not None and not watch.stopped else None


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
