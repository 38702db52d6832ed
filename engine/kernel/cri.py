"""Containers from a CRI runtime: what the kubelet itself asks, over the runtime's socket.

The container runtime interface (Kubernetes' `runtime.v1.RuntimeService`, gRPC on a unix socket)
is served by containerd's CRI plugin and by CRI-O alike, so one client reads the kubelet's
containers on any Kubernetes node: `ListContainers` (running ones: id, the kubelet's container
name, its labels: `io.kubernetes.pod.name`, ...), then once per container `ContainerStatus`
with `verbose` for its image name and its first process (the `pid` of the JSON in the answer's
`info` map, in both runtimes), whose cgroup is read from /proc. Messages are encoded by field
number (engine.kernel.protowire); the numbers are those of the CRI API's api.proto.

The sockets: CONTAINER_RUNTIME_ENDPOINT when set (crictl reads the same variable), else those
of crictl's defaults that exist (containerd's, CRI-O's, cri-dockerd's).
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from typing import Any

import grpc

from engine.kernel import protowire as pw

ENDPOINTS = ("/run/containerd/containerd.sock", "/run/crio/crio.sock", "/var/run/cri-dockerd.sock")
SERVICE = "/runtime.v1.RuntimeService/"
TIMEOUT = 10.0  # s: one call; a runtime slower than this fails the listing (and is reported)
RUNNING = 1  # ContainerState.CONTAINER_RUNNING


class CriError(Exception):
    """A runtime that answered with an error, or not at all, as one line."""


@dataclass(frozen=True)
class Listed:
    """A running container as ListContainers and ContainerStatus describe it."""

    id: str
    name: str  # ContainerMetadata.name: the container's name in its pod
    image: str
    pid: int
    labels: dict[str, str]


def endpoints(env: dict[str, str] | None = None) -> list[str]:
    """The CRI sockets to ask: CONTAINER_RUNTIME_ENDPOINT's (`unix:///path` or a path; several
    comma-separated), else the default sockets that exist on this node."""
    given = (env if env is not None else os.environ).get("CONTAINER_RUNTIME_ENDPOINT", "")
    if given:
        return [e.strip().removeprefix("unix://") for e in given.split(",") if e.strip()]
    return [p for p in ENDPOINTS if _is_socket(p)]


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


class Client:
    """One runtime's RuntimeService. A container's status is asked once (its pid and image do
    not change while it runs: a restarted container has a new id)."""

    def __init__(self, socket: str) -> None:
        self.socket = socket
        self.channel = grpc.insecure_channel(f"unix:{socket}")
        self.status: dict[str, tuple[int, str]] = {}  # id -> (pid, image)

    def call(self, method: str, request: bytes) -> bytes:
        stub: Any = self.channel.unary_unary(SERVICE + method)
        try:
            return bytes(stub(request, timeout=TIMEOUT))
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            details = exc.details() if hasattr(exc, "details") else str(exc)
            raise CriError(f"{method}: {getattr(code, 'name', code)}: {details}") from None

    def containers(self) -> list[Listed]:
        """The running containers; [] where the socket serves no CRI (containerd with its CRI
        plugin disabled answers UNIMPLEMENTED)."""
        running = pw.message((1, pw.message((2, pw.message((1, RUNNING))))))
        try:
            answer = pw.fields(self.call("ListContainers", running))
        except CriError as exc:
            if ": UNIMPLEMENTED:" in str(exc):
                return []
            raise
        found, alive = [], set()
        for raw in answer.get(1, ()):
            c = pw.fields(raw) if isinstance(raw, bytes) else {}
            cid = pw.text(c, 1)
            if pw.number(c, 6) != RUNNING or not cid:
                continue
            alive.add(cid)
            if cid not in self.status:
                self.status[cid] = self.pid_and_image(cid)
            pid, image = self.status[cid]
            name = pw.text(pw.sub(c, 3), 1)
            found.append(Listed(cid, name, image, pid, pw.string_map(c, 8)))
        for gone in set(self.status) - alive:
            del self.status[gone]
        return found

    def pid_and_image(self, cid: str) -> tuple[int, str]:
        """ContainerStatus(verbose): the image's name (status.image.image) and the pid in the
        JSON of info["info"] (containerd's and CRI-O's verbose status both carry it)."""
        answer = pw.fields(self.call("ContainerStatus", pw.message((1, cid), (2, True))))
        image = pw.text(pw.sub(pw.sub(answer, 1), 8), 1)
        try:
            info = json.loads(pw.string_map(answer, 2).get("info") or "{}")
        except ValueError:
            info = {}
        pid = info.get("pid") if isinstance(info, dict) else None
        return (pid if isinstance(pid, int) else 0), image

    def close(self) -> None:
        self.channel.close()


_CLIENTS: dict[str, Client] = {}


def client(socket: str) -> Client:
    """The process's one client per socket (gRPC keeps its connection and reconnects)."""
    if socket not in _CLIENTS:
        _CLIENTS[socket] = Client(socket)
    return _CLIENTS[socket]
