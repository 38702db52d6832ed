"""Real containers: `--container`, `--pod` and the container decoders.

Podman runs them here as a kubelet's runtime would, with runc and `--cgroup-manager cgroupfs`
(each container's cgroup v2 directory is /libpod_parent/libpod-ID), from an image imported from
a root file system of busybox-static (no registry is reachable), with the kubelet's labels
(io.kubernetes.pod.name, .pod.namespace, .container.name). Networking is `none`: each
container has its own loopback, and a connect to a closed port there still sends its SYN,
which is what tcpconnect traces. Every source connects to its own port, and the engine is
filtered to those ports, so other traffic on the machine cannot count.

Two containers (pods shop/web-1 and shop/db-0) and the host connect; `specs/tcpconnect.yaml
--container A` prints exactly A's connects, `--pod shop/web-1` exactly the pod's, including a
container of the pod started after the engine (waited for by the engine's "tracing container"
line); the decoders name each row's container, image and pod, and the host's as `host`.
`engine serve` counts connects by pod, namespace and container name, read back through a
real Prometheus.

containerd, the runtime of most Kubernetes nodes, runs here too: a private daemon per test (its
own socket, root and state in the test's directory), the same image imported from `podman
save`. Through `ctr` (CONTAINERD_ADDRESS tells the engine, as it tells `ctr`): a container in
namespace `k8s.io` with a 64-digit id and the kubelet's labels; through its CRI plugin
(CONTAINER_RUNTIME_ENDPOINT, as crictl reads it): a pod run with the very calls the kubelet
makes (RunPodSandbox, CreateContainer, StartContainer: `Kubelet` below). `--pod` picks each
beside a podman one, and rows are named from what the runtime lists. A CRI socket nobody
listens on is reported as a failed listing; a containerd without CRI is no failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from collections import Counter
from typing import Callable, Iterator

import grpc
import procs
import pytest

from engine.kernel import cri
from engine.kernel import protowire as pw
from engine.kernel.containers import POD_CONTAINER, POD_NAME, POD_NAMESPACE

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/tcpconnect.yaml"
NAMES = "tests/specs/live/container_connects.yaml"
IMAGE = "localhost/engine-test-busybox:1"
PAUSE = "localhost/engine-test-pause:1"
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
TIMEOUT = 180  # s: a podman call on a loaded machine (image import, container start)
BASE = 41000 + os.getpid() % 1000 * 10  # this run's ports: BASE .. BASE+9
PORTS = {"a": BASE, "b": BASE + 1, "host": BASE + 2, "late": BASE + 3}
CONNECTS = {"a": 3, "b": 4, "host": 2, "late": 5}


def podman(*args: str, check: bool = True) -> str:
    done = subprocess.run(
        [*PODMAN, *args], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    if check and done.returncode != 0:
        pytest.fail(f"podman {' '.join(args)}: exit {done.returncode}: {done.stderr}")
    return done.stdout


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The busybox image, imported once (kept: importing it again is idempotent)."""
    if shutil.which("podman") is None or shutil.which("runc") is None:
        pytest.fail("podman and runc are missing: scripts/setup.sh installs them")
    if subprocess.run([*PODMAN, "image", "exists", IMAGE], check=False).returncode == 0:
        return IMAGE
    busybox = shutil.which("busybox") or pytest.fail("busybox-static is missing (setup.sh)")
    root = tmp_path_factory.mktemp("rootfs")
    tar = root / "rootfs.tar"
    with tarfile.open(tar, "w") as t:
        t.add(busybox, "bin/busybox")
        for applet in ("sh", "nc", "sleep"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            t.addfile(link)
    podman("import", str(tar), IMAGE)
    return IMAGE


@pytest.fixture
def containers(image: str) -> Iterator[Callable[..., str]]:
    """Start a container (name, pod, container name in the pod); all removed at the end."""
    made: list[str] = []

    def start(key: str, pod: str, in_pod: str) -> str:
        name = f"engine-t{os.getpid()}-{key}"
        namespace, pod_name = pod.split("/")
        podman("rm", "-f", "-t", "0", name, check=False)
        made.append(name)
        podman(
            "run", "-d", "--name", name, "--network", "none",
            "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
            "--label", f"io.kubernetes.pod.name={pod_name}",
            "--label", f"io.kubernetes.pod.namespace={namespace}",
            "--label", f"io.kubernetes.container.name={in_pod}",
            image, "sleep", "600",
        )  # fmt: skip
        return name

    try:
        yield start
    finally:
        for name in made:
            podman("rm", "-f", "-t", "0", name, check=False)


def connect_in(name: str, key: str, port: int = 0, n: int = 0) -> None:
    """CONNECTS[key] connects (or n) from inside the container to PORTS[key] (or port), a
    closed port of its own loopback."""
    times = " ".join("x" * (n or CONNECTS[key]))
    loop = f"for i in {times}; do nc -w 1 127.0.0.1 {port or PORTS[key]}; done; true"
    podman("exec", name, "sh", "-c", loop)


def connect_on_host() -> None:
    code = (
        "import socket\n"
        f"for _ in range({CONNECTS['host']}):\n"
        "    s = socket.socket()\n"
        f"    try: s.connect(('127.0.0.1', {PORTS['host']}))\n"
        "    except OSError: pass\n"
        "    s.close()\n"
    )
    subprocess.run([sys.executable, "-I", "-c", code], check=True, timeout=TIMEOUT)


def port_flag() -> str:
    return ",".join(str(p) for p in PORTS.values())


def dports(rows: list[dict]) -> Counter[int]:
    return Counter(r["dport"] for r in rows if r["dport"] in PORTS.values())


def names_seen(e) -> Counter[tuple]:
    """A run of the NAMES spec stopped: its connects to our ports by (port, container, id,
    image, pod, container in the pod)."""
    result = e.stop()
    assert result.code == 0, result.stderr
    return Counter(
        (r["dport"], r["container"], r["container_id"], r["image"], r["pod"], r["pod_container"])
        for r in result.json_rows()
        if r["dport"] in PORTS.values()
    )


@pytest.mark.parametrize(
    ("flag", "value", "picked"),
    [
        ("--container", "a", "a"),  # "a": container a's name
        ("--container", "b-id", "b"),  # "b-id": 12 digits of container b's id
        ("--selector", "io.kubernetes.pod.namespace=shop,io.kubernetes.container.name=db", "b"),
    ],
    ids=["container name", "container id", "label selector"],
)
def test_scope_prints_exactly_the_picked_containers_connects(
    engine, containers, flag: str, value: str, picked: str
) -> None:
    made = {"a": containers("a", "shop/web-1", "app"), "b": containers("b", "shop/db-0", "db")}
    value = {"a": made["a"], "b-id": seen_id(made["b"])}.get(value, value)
    e = engine(SPEC, flag, value, "-P", port_flag(), "-o", "json")
    connect_in(made["a"], "a")
    connect_in(made["b"], "b")
    connect_on_host()
    result = e.stop()
    assert result.code == 0, result.stderr
    assert dports(result.json_rows()) == {PORTS[picked]: CONNECTS[picked]}


def test_pod_scope_follows_a_container_started_later(engine, containers) -> None:
    a = containers("a", "shop/web-1", "app")
    b = containers("b", "shop/db-0", "db")
    e = engine(SPEC, "-o", "json", "--pod", "shop/web-1", "-P", port_flag())
    late = containers("late", "shop/web-1", "sidecar")
    assert e.err.wait_for(lambda ls: any(f"tracing container {late}" in x for x in ls), 60), (
        e.err.text()
    )
    for name, key in ((a, "a"), (b, "b"), (late, "late")):
        connect_in(name, key)
    connect_on_host()
    result = e.stop()
    assert result.code == 0, result.stderr
    assert dports(result.json_rows()) == {
        PORTS["a"]: CONNECTS["a"], PORTS["late"]: CONNECTS["late"]
    }  # fmt: skip


def test_rows_name_container_image_and_pod(engine, containers) -> None:
    a = containers("a", "shop/web-1", "app")
    b = containers("b", "shop/db-0", "db")
    ids = {n: podman("inspect", "--format", "{{.Id}}", n).strip()[:12] for n in (a, b)}
    e = engine(NAMES, "-P", port_flag(), "-o", "json")
    connect_in(a, "a")
    connect_in(b, "b")
    connect_on_host()
    seen = names_seen(e)
    assert seen == {
        (PORTS["a"], a, ids[a], IMAGE, "shop/web-1", "app"): CONNECTS["a"],
        (PORTS["b"], b, ids[b], IMAGE, "shop/db-0", "db"): CONNECTS["b"],
        (PORTS["host"], "host", "host", "host", "host", "host"): CONNECTS["host"],
    }


def test_envelope_names_each_rows_container_and_pod(engine, containers) -> None:
    a = containers("a", "shop/web-1", "app")
    b = containers("b", "shop/db-0", "db")
    e = engine(SPEC, "--envelope", "-P", port_flag(), "-o", "json")
    connect_in(a, "a")
    connect_in(b, "b")
    connect_on_host()
    result = e.stop()
    assert result.code == 0, result.stderr
    rows = [r for r in result.json_rows() if r["dport"] in PORTS.values()]
    assert Counter((r["dport"], r["engine"]["container"], r["engine"]["pod"]) for r in rows) == {
        (PORTS["a"], a, "shop/web-1"): CONNECTS["a"],
        (PORTS["b"], b, "shop/db-0"): CONNECTS["b"],
        (PORTS["host"], "host", "host"): CONNECTS["host"],
    }
    assert all("engine_cgroup" not in r for r in rows)  # read for the envelope, not a column


def test_a_name_that_matches_nothing_is_a_usage_error(containers) -> None:
    a = containers("a", "shop/web-1", "app")
    wrong = a[:-1] + "x"
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", SPEC, "--container", wrong],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith(f"engine: error: --container {wrong}: matches nothing"), last
    assert last.endswith(f"did you mean '{a}'?"), last
    assert "Traceback" not in done.stderr
    pod = subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", SPEC, "--pod", "shop/web-2"],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert pod.returncode == 2, pod.stderr
    assert "--pod shop/web-2: matches nothing" in pod.stderr.splitlines()[-1], pod.stderr


def test_serve_labels_by_pod_through_prometheus(containers, tmp_path) -> None:
    from test_serve_prometheus import Prometheus, Serve

    a = containers("a", "shop/web-1", "app")
    b = containers("b", "shop/db-0", "db")
    serve = Serve("tests/specs/serve/pod_connects.yaml")
    prom = None
    try:
        prom = Prometheus(serve.port, tmp_path)
        prom.wait_value('up{job="engine"}', 1)
        for name, port, n in ((a, 47001, 3), (b, 47002, 4), (a, 47003, 2)):
            times = " ".join("x" * n)
            podman(
                "exec", name, "sh", "-c", f"for i in {times}; do nc 127.0.0.1 {port}; done; true"
            )
        metric = "podconn_connects_total"
        prom.wait_value(f'{metric}{{namespace="shop",pod="web-1",container="app"}}', 5)
        prom.wait_value(f'{metric}{{namespace="shop",pod="db-0",container="db"}}', 4)
        prom.wait_value(f"sum({metric})", 9)  # nothing else: no host series, no `other`
        assert serve.stop() == 0
    finally:
        if prom is not None:
            prom.stop()
        serve.kill()


def test_serve_scoped_to_a_container(containers) -> None:
    from test_serve_prometheus import Serve

    a = containers("a", "shop/web-1", "app")
    b = containers("b", "shop/db-0", "db")
    serve = Serve("tests/specs/serve/pod_connects.yaml", args=("--container", a))
    try:
        connect_in(b, "", 47004, 4)  # each connect is in the map when its syscall returns
        connect_in(a, "", 47005, 3)
        status, text = serve.get("/metrics")
        assert status == 200
        rows = [ln for ln in text.splitlines() if ln.startswith("podconn_connects_total")]
        assert rows == ['podconn_connects_total{container="app",namespace="shop",pod="web-1"} 3.0']
        assert serve.stop() == 0
    finally:
        serve.kill()


def ctr(address: str, *args: str, check: bool = True) -> str:
    done = subprocess.run(
        ["ctr", "--address", address, *args],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    if check and done.returncode != 0:
        pytest.fail(f"ctr {' '.join(args)}: exit {done.returncode}: {done.stderr}")
    return done.stdout


def answers(address: str) -> bool:
    done = subprocess.run(
        ["ctr", "--address", address, "version"], capture_output=True, timeout=TIMEOUT, check=False
    )
    return done.returncode == 0


@pytest.fixture(scope="module")
def pause_image(image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The pod sandbox's image for containerd's CRI plugin: busybox whose command sleeps (the
    kubelet's registry.k8s.io/pause is not reachable here)."""
    if subprocess.run([*PODMAN, "image", "exists", PAUSE], check=False).returncode == 0:
        return PAUSE
    root = tmp_path_factory.mktemp("pause")
    podman("create", "--name", f"engine-pause-{os.getpid()}", image, "true")
    try:
        podman("export", "-o", str(root / "rootfs.tar"), f"engine-pause-{os.getpid()}")
    finally:
        podman("rm", "-f", f"engine-pause-{os.getpid()}", check=False)
    podman("import", "--change", 'CMD ["/bin/sleep", "86400"]', str(root / "rootfs.tar"), PAUSE)
    return PAUSE


@pytest.fixture
def containerd(
    image: str, pause_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A containerd of the test's own, with the busybox image in namespace k8s.io (where the
    kubelet's are) and its CRI plugin serving on the same socket, with our sandbox image.
    One per test: every process a test starts ends with it (procs)."""
    if shutil.which("containerd") is None or shutil.which("ctr") is None:
        pytest.fail("containerd is missing: scripts/setup.sh installs it")
    root = tmp_path_factory.mktemp("containerd")
    address = str(root / "containerd.sock")
    config = root / "config.toml"
    # restrict_oom_score_adj: the CRI plugin sets a sandbox's oom_score_adj to -998, which
    # this machine refuses to lower below ours (a node's containerd runs with the right to)
    config.write_text(
        'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n'
        f'sandbox_image = "{pause_image}"\nrestrict_oom_score_adj = true\n'
    )
    log = (root / "containerd.log").open("w")
    daemon = procs.spawn(
        ["containerd", "--config", str(config), "--address", address,
         "--root", str(root / "root"), "--state", str(root / "state")],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + TIMEOUT
        while not answers(address):
            assert daemon.poll() is None, (root / "containerd.log").read_text()
            assert time.monotonic() < deadline, "containerd did not answer"
            time.sleep(0.2)
        for i, name in enumerate((image, pause_image)):
            archive = root / f"image{i}.tar"
            podman("save", "--format", "docker-archive", "-o", str(archive), name)
            ctr(address, "--namespace", "k8s.io", "images", "import", str(archive))
        yield address
    finally:
        procs.kill(daemon)
        log.close()


@pytest.fixture
def kubelet_container(containerd: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A containerd container as the kubelet makes one: namespace k8s.io, a 64-digit id,
    the kubelet's labels (pod shop/api-0, container api); its id."""
    monkeypatch.setenv("CONTAINERD_ADDRESS", containerd)
    cid = hashlib.sha256(f"engine-test-{os.getpid()}".encode()).hexdigest()
    k8s = ("--namespace", "k8s.io")
    ctr(containerd, *k8s, "run", "-d",
        "--label", "io.kubernetes.pod.name=api-0",
        "--label", "io.kubernetes.pod.namespace=shop",
        "--label", "io.kubernetes.container.name=api",
        IMAGE, cid, "sleep", "600")  # fmt: skip
    try:
        yield cid
    finally:
        ctr(containerd, *k8s, "task", "kill", "-s", "SIGKILL", cid, check=False)
        ctr(containerd, *k8s, "task", "rm", "-f", cid, check=False)
        ctr(containerd, *k8s, "containers", "rm", cid, check=False)


def connect_in_containerd(address: str, cid: str, port: int, n: int) -> None:
    times = " ".join("x" * n)
    loop = f"for i in {times}; do nc -w 1 127.0.0.1 {port}; done; true"
    ctr(address, "--namespace", "k8s.io", "task", "exec", "--exec-id", f"c{time.monotonic_ns()}",
        cid, "sh", "-c", loop)  # fmt: skip


def test_containerd_containers_are_scoped_and_named(
    engine, containers, containerd: str, kubelet_container: str
) -> None:
    a = containers("a", "shop/web-1", "app")
    scoped = engine(SPEC, "--pod", "shop/api-0", "-P", port_flag(), "-o", "json")
    named = engine(NAMES, "-P", port_flag(), "-o", "json")
    connect_in(a, "a")
    connect_in_containerd(containerd, kubelet_container, PORTS["b"], CONNECTS["b"])
    connect_on_host()
    result = scoped.stop()
    assert result.code == 0, result.stderr
    assert dports(result.json_rows()) == {PORTS["b"]: CONNECTS["b"]}
    assert names_seen(named) == {
        (PORTS["a"], a, seen_id(a), IMAGE, "shop/web-1", "app"): CONNECTS["a"],
        (PORTS["b"], "api", kubelet_container[:12], IMAGE, "shop/api-0", "api"): CONNECTS["b"],
        (PORTS["host"], "host", "host", "host", "host", "host"): CONNECTS["host"],
    }


def seen_id(name: str) -> str:
    return podman("inspect", "--format", "{{.Id}}", name).strip()[:12]


class Kubelet:
    """What the kubelet asks of a CRI runtime to run a pod, over the same socket and messages
    (runtime.v1.RuntimeService; field numbers as in the CRI API's api.proto): a pod sandbox
    on the host's network (no CNI here) in the kubelet's cgroup layout, then a container in it
    with the kubelet's labels."""

    def __init__(self, socket: str) -> None:
        self.channel = grpc.insecure_channel(f"unix:{socket}")
        self.sandboxes: list[str] = []

    def call(self, method: str, *request: pw.Field) -> dict[int, list[pw.Value]]:
        stub = self.channel.unary_unary(f"/runtime.v1.RuntimeService/{method}")
        return pw.fields(stub(pw.message(*request), timeout=TIMEOUT))

    def run_pod(self, pod: str, container: str, uid: str) -> str:
        """A running container `container` of pod NAMESPACE/NAME; its id."""
        namespace, name = pod.split("/")
        pod_labels = {POD_NAME: name, POD_NAMESPACE: namespace, "io.kubernetes.pod.uid": uid}
        host_network = pw.message((1, 2))  # NamespaceOption.network = NODE
        linux = pw.message(
            (1, f"/kubepods/besteffort/pod{uid}"),  # cgroup_parent, as the kubelet's cgroupfs
            (2, pw.message((1, host_network))),  # security_context.namespace_options
        )
        sandbox = pw.message(
            (1, pw.message((1, name), (2, uid), (3, namespace), (4, 0))),
            (6, pod_labels),
            (8, linux),
        )
        sid = pw.text(self.call("RunPodSandbox", (1, sandbox)), 1)
        self.sandboxes.append(sid)
        config = pw.message(
            (1, pw.message((1, container), (2, 0))),  # metadata: name, attempt
            (2, pw.message((1, IMAGE))),
            (3, "sleep"), (4, "600"),  # command, args
            (9, {**pod_labels, POD_CONTAINER: container}),
        )  # fmt: skip
        cid = pw.text(self.call("CreateContainer", (1, sid), (2, config), (3, sandbox)), 1)
        self.call("StartContainer", (1, cid))
        return cid

    def exec(self, cid: str, *argv: str) -> None:
        answer = self.call("ExecSync", (1, cid), *((2, a) for a in argv), (3, TIMEOUT))
        assert pw.number(answer, 3) == 0, pw.text(answer, 2)

    def close(self) -> None:
        for sid in self.sandboxes:
            with contextlib.suppress(grpc.RpcError):
                self.call("StopPodSandbox", (1, sid))
                self.call("RemovePodSandbox", (1, sid))
        self.channel.close()


@pytest.fixture
def kubelet(containerd: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Kubelet]:
    """A CRI client on the test's containerd; the engine finds the runtime by
    CONTAINER_RUNTIME_ENDPOINT (as crictl does), not by CONTAINERD_ADDRESS."""
    monkeypatch.delenv("CONTAINERD_ADDRESS", raising=False)
    monkeypatch.setenv("CONTAINER_RUNTIME_ENDPOINT", f"unix://{containerd}")
    k = Kubelet(containerd)
    try:
        yield k
    finally:
        k.close()


def test_cri_pods_are_scoped_and_named(engine, containers, kubelet: Kubelet) -> None:
    """A pod run through the CRI, as the kubelet runs one, beside a podman container: --pod
    picks its container by the labels CRI lists, rows name it by its CRI name and image."""
    uid = f"0ddba11-{os.getpid()}"
    cid = kubelet.run_pod("shop/cart-0", "cart", uid)
    a = containers("a", "shop/web-1", "app")
    scoped = engine(SPEC, "--pod", "shop/cart-0", "-P", port_flag(), "-o", "json")
    named = engine(NAMES, "-P", port_flag(), "-o", "json")
    connect_in(a, "a")
    loop = " ".join("x" * CONNECTS["b"])
    kubelet.exec(cid, "sh", "-c", f"for i in {loop}; do nc -w 1 127.0.0.1 {PORTS['b']}; done; true")
    connect_on_host()
    result = scoped.stop()
    assert result.code == 0, result.stderr
    assert dports(result.json_rows()) == {PORTS["b"]: CONNECTS["b"]}
    seen = names_seen(named)
    assert seen == {
        (PORTS["a"], a, seen_id(a), IMAGE, "shop/web-1", "app"): CONNECTS["a"],
        (PORTS["b"], "cart", cid[:12], IMAGE, "shop/cart-0", "cart"): CONNECTS["b"],
        (PORTS["host"], "host", "host", "host", "host", "host"): CONNECTS["host"],
    }


def engine_usage(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", SPEC, *args],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip


def test_a_runtime_that_does_not_answer_is_said(
    containers, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CRI socket no daemon listens on (a runtime that died): the usage error says the
    listing failed and why, not only that nothing runs; a container the others list is still
    picked, with the failure said on stderr."""
    dead = tmp_path / "crio.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(dead))  # the file stays; nothing listens
    monkeypatch.setenv("CONTAINER_RUNTIME_ENDPOINT", f"unix://{dead}")
    done = engine_usage("--pod", "shop/none-0")
    assert done.returncode == 2, done.stderr
    why = f"engine: listing containers failed: cri: {dead}: ListContainers: UNAVAILABLE: "
    *before, last = done.stderr.splitlines()
    assert last.startswith("engine: error: --pod shop/none-0: matches nothing ("), last
    assert last.endswith("; failed to list: cri)"), last
    assert [line for line in before if line.startswith(why)], done.stderr
    a = containers("a", "shop/web-1", "app")
    done = engine_usage("--container", a, "--duration", "1")
    assert done.returncode == 0, done.stderr
    assert f"engine: listing containers failed: cri: {dead}: ListContainers: UNAVAILABLE" in (
        done.stderr
    )


def test_a_containerd_without_cri_is_not_a_failure(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """containerd with its CRI plugin disabled (as Docker's packages ship it) answers
    UNIMPLEMENTED: no CRI containers there, and nothing failed."""
    root = tmp_path_factory.mktemp("nocri")
    address = str(root / "containerd.sock")
    (root / "config.toml").write_text(
        'version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
    )
    daemon = procs.spawn(
        ["containerd", "--config", str(root / "config.toml"), "--address", address,
         "--root", str(root / "root"), "--state", str(root / "state")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + TIMEOUT
    while not answers(address):
        assert daemon.poll() is None and time.monotonic() < deadline, "containerd did not answer"
        time.sleep(0.2)
    assert cri.Client(address).containers() == []
