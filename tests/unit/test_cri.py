"""engine.kernel.cri against a CRI server in this process: a real gRPC server on a unix socket
(grpcio's generic handlers, raw bytes) answering ListContainers and ContainerStatus as
containerd and CRI-O do, so the races and malformed answers a node can produce are made on
purpose. The real runtime is tests/kernel/test_containers.py's containerd."""

from __future__ import annotations

import json
from concurrent import futures
from pathlib import Path
from typing import Any, Callable, Iterator

import grpc
import pytest

from engine.kernel import cri
from engine.kernel import protowire as pw


class Runtime:
    """What the fake runtime runs: id -> (name, pid, image, labels); `gone` ids are listed
    but answer NOT_FOUND to ContainerStatus (stopped in between); `garbage` answers
    ListContainers with bytes that are no message."""

    def __init__(self) -> None:
        self.running: dict[str, tuple[str, int, str, dict[str, str]]] = {}
        self.gone: set[str] = set()
        self.garbage = False
        self.calls: list[str] = []

    def list(self, request: bytes, context: Any) -> bytes:
        self.calls.append("ListContainers")
        assert pw.fields(request) == pw.fields(pw.message((1, pw.message((2, pw.message((1, 1)))))))
        if self.garbage:
            return b"\x0a\x05ab"
        return pw.message(
            *(
                (1, pw.message((1, cid), (3, pw.message((1, name))), (6, 1), (8, labels)))
                for cid, (name, _, _, labels) in self.running.items()
            )
        )

    def status(self, request: bytes, context: Any) -> bytes:
        cid = pw.text(pw.fields(request), 1)
        self.calls.append(f"ContainerStatus {cid}")
        if cid in self.gone or cid not in self.running:
            context.abort(grpc.StatusCode.NOT_FOUND, f"container {cid} not found")
        _, pid, image, _ = self.running[cid]
        info = {"info": json.dumps({"sandboxID": "s", "pid": pid})}
        return pw.message((1, pw.message((1, cid), (8, pw.message((1, image))))), (2, info))


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[tuple[Runtime, str]]:
    rt = Runtime()
    methods: dict[str, Callable[..., bytes]] = {
        "ListContainers": rt.list,
        "ContainerStatus": rt.status,
    }
    handler = grpc.method_handlers_generic_handler(
        "runtime.v1.RuntimeService",
        {name: grpc.unary_unary_rpc_method_handler(fn) for name, fn in methods.items()},
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    socket = str(tmp_path / "cri.sock")
    server.add_insecure_port(f"unix:{socket}")
    server.start()
    try:
        yield rt, socket
    finally:
        server.stop(None)


def test_containers_come_with_name_image_pid_and_labels(runtime: tuple[Runtime, str]) -> None:
    rt, socket = runtime
    rt.running["c1"] = (
        "app",
        4242,
        "docker.io/library/nginx:1",
        {"io.kubernetes.pod.name": "web-1"},
    )
    client = cri.Client(socket)
    assert client.containers() == [
        cri.Listed(
            "c1", "app", "docker.io/library/nginx:1", 4242, {"io.kubernetes.pod.name": "web-1"}
        )
    ]
    client.containers()
    assert rt.calls.count("ContainerStatus c1") == 1  # asked once per container
    del rt.running["c1"]
    assert client.containers() == [] and client.status == {}  # a stopped one is forgotten
    client.close()


def test_a_container_gone_between_the_list_and_its_status_is_left_out(
    runtime: tuple[Runtime, str],
) -> None:
    """Not a failure of the listing: the others are there, and the gone one is asked again
    next time (not cached)."""
    rt, socket = runtime
    rt.running["alive"] = ("a", 1, "img", {})
    rt.running["gone"] = ("g", 2, "img", {})
    rt.gone.add("gone")
    client = cri.Client(socket)
    assert [c.id for c in client.containers()] == ["alive"]
    assert "gone" not in client.status
    client.close()


def test_an_answer_that_is_no_message_is_a_cri_error(runtime: tuple[Runtime, str]) -> None:
    rt, socket = runtime
    rt.garbage = True
    with pytest.raises(cri.CriError, match=r"^ListContainers: the answer is no protobuf message"):
        cri.Client(socket).containers()


def test_a_socket_nobody_listens_on_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(cri.CriError, match=r"^ListContainers: UNAVAILABLE: "):
        cri.Client(str(tmp_path / "none.sock")).containers()


@pytest.mark.parametrize(
    ("endpoint", "path"),
    [
        ("unix:///run/crio/crio.sock", "/run/crio/crio.sock"),
        ("unix:/run/crio/crio.sock", "/run/crio/crio.sock"),
        ("/run/crio/crio.sock", "/run/crio/crio.sock"),
        (" unix:///x.sock ", "/x.sock"),
    ],
)
def test_endpoint_forms(endpoint: str, path: str) -> None:
    assert cri.unix_path(endpoint) == path
