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
        return [unix_path(e) for e in given.split(",") if e.strip()]
    return [p for p in ENDPOINTS if _is_socket(p)]


def unix_path(endpoint: str) -> str:
    """`unix:///run/x.sock`, `unix:/run/x.sock` or `/run/x.sock`: the socket's path."""
    path = endpoint.strip().removeprefix("unix:")
    return "/" + path.lstrip("/") if path.startswith("//") else path


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
        # reconnect within 2 s of a restarted runtime (gRPC's default backoff grows to 120 s)
        options = [("grpc.max_reconnect_backoff_ms", 2000)]
        self.channel = grpc.insecure_channel(f"unix:{socket}", options=options)
        self.status: dict[str, tuple[int, str]] = {}  # id -> (pid, image)

    def call(self, method: str, *request: pw.Field) -> dict[int, list[pw.Value]]:
        """One RPC: the request's fields in, the answer's out; CriError for a gRPC status
        other than OK or an answer that is no protobuf message."""
        stub: Any = self.channel.unary_unary(SERVICE + method)
        try:
            return pw.fields(bytes(stub(pw.message(*request), timeout=TIMEOUT)))
        except grpc.RpcError as exc:
            code = getattr(exc.code(), "name", exc.code()) if hasattr(exc, "code") else "?"
            details = (exc.details() if hasattr(exc, "details") else None) or str(exc)
            raise CriError(f"{method}: {code}: {details}") from None
        except pw.WireError as exc:
            raise CriError(f"{method}: the answer is no protobuf message: {exc}") from None

    def containers(self) -> list[Listed]:
        """The running containers; [] where the socket serves no CRI (containerd with its CRI
        plugin disabled answers UNIMPLEMENTED). One that stopped between the list and its
        status is left out (NOT_FOUND), not a failure of the listing."""
        try:
            answer = self.call("ListContainers", (1, pw.message((2, pw.message((1, RUNNING))))))
        except CriError as exc:
            if ": UNIMPLEMENTED:" in str(exc):
                return []
            raise
        known, status = self.status, {}  # a new dict: another thread may list at once
        found = []
        for c in _messages(answer, 1, "ListContainers"):
            cid = pw.text(c, 1)
            if pw.number(c, 6) != RUNNING or not cid:
                continue
            if cid in known:
                status[cid] = known[cid]
            else:
                try:
                    status[cid] = self.pid_and_image(cid)
                except CriError as exc:
                    if ": NOT_FOUND:" in str(exc):
                        continue  # gone since the list
                    raise
            pid, image = status[cid]
            try:
                name, labels = pw.text(pw.sub(c, 3), 1), pw.string_map(c, 8)
            except pw.WireError as exc:
                raise CriError(f"ListContainers: container {cid}: {exc}") from None
            found.append(Listed(cid, name, image, pid, labels))
        self.status = status  # ids no longer running are forgotten
        return found

    def pid_and_image(self, cid: str) -> tuple[int, str]:
        """ContainerStatus(verbose): the image's name (status.image.image) and the pid in the
        JSON of info["info"] (containerd's and CRI-O's verbose status both carry it)."""
        answer = self.call("ContainerStatus", (1, cid), (2, True))
        try:
            image = pw.text(pw.sub(pw.sub(answer, 1), 8), 1)
            info = json.loads(pw.string_map(answer, 2).get("info") or "{}")
        except pw.WireError as exc:
            raise CriError(f"ContainerStatus: {cid}: {exc}") from None
        except ValueError:  # info that is no JSON: no pid
            info = {}
        pid = info.get("pid") if isinstance(info, dict) else None
        return (pid if isinstance(pid, int) else 0), image

    def close(self) -> None:
        self.channel.close()


def _messages(
    msg: dict[int, list[pw.Value]], field: int, method: str
) -> list[dict[int, list[pw.Value]]]:
    """A repeated message field, each decoded; CriError for one that is no message."""
    try:
        return [pw.fields(raw) for raw in msg.get(field, ()) if isinstance(raw, bytes)]
    except pw.WireError as exc:
        raise CriError(f"{method}: the answer is no protobuf message: {exc}") from None


_CLIENTS: dict[str, Client] = {}


def client(socket: str) -> Client:
    """The process's one client per socket (gRPC keeps its connection and reconnects)."""
    if socket not in _CLIENTS:
        _CLIENTS[socket] = Client(socket)
    return _CLIENTS[socket]
