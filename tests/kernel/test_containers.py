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
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from collections import Counter
from typing import Callable, Iterator

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = "specs/tcpconnect.yaml"
NAMES = "tests/specs/live/container_connects.yaml"
IMAGE = "localhost/engine-test-busybox:1"
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


def test_container_scope_prints_exactly_its_connects(engine, containers) -> None:
    a = containers("a", "shop/web-1", "app")
    b = containers("b", "shop/db-0", "db")
    e = engine(SPEC, "--container", a, "-P", port_flag(), "-o", "json")
    connect_in(a, "a")
    connect_in(b, "b")
    connect_on_host()
    result = e.stop()
    assert result.code == 0, result.stderr
    assert dports(result.json_rows()) == {PORTS["a"]: CONNECTS["a"]}


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
    result = e.stop()
    assert result.code == 0, result.stderr
    seen = Counter(
        (r["dport"], r["container"], r["container_id"], r["image"], r["pod"], r["pod_container"])
        for r in result.json_rows()
        if r["dport"] in PORTS.values()
    )
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
