"""Every attach path of the seed specs, for real, on a kernel with kprobes and fentry.

Runs inside `make test-vm` (Debian 6.1 and 6.12 under QEMU); skips elsewhere. Compiling is
slow under emulation (30-45 s a program), so one session fixture starts every engine at once
(a few compiling at a time), makes one round of traffic that all of them see, and the tests
assert on what each printed:

* tcpconnect: fexit, kretprobe (the seed's way) and tracepoint alternatives forced with
  `--alternative N` give identical rows (IPv4 and IPv6), and the seed spec with `-p`, `-P`
  and `-c` filters and counts exactly;
* a kretprobe's `ret` filter: failed connects (tcp_v4_connect -EAFNOSUPPORT, tcp_v6_connect
  -EINVAL, from many threads) give no row with `ret == 0`, and exactly one row each with
  `ret != 0`; the stash maps of every kretprobe engine are empty afterwards;
* icmp: fentry, kprobe (the seed's way) and tracepoint on `ping -c 3` give SEQ 1, 2, 3 with
  ping's pid and comm, identical rows;
* the alternative the engine chose by itself equals the one `engine validate` predicts from
  this kernel's committed BTF fixture, and that fixture is this kernel's BTF.

Results (chosen alternatives, compile times) go to $ENGINE_VM_OUT for the suite's report.
"""

from __future__ import annotations

import contextlib
import json
import lzma
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests.kernel.conftest import REPO, ConnChild, EngineProc, LineReader, run_ping

pytestmark = [pytest.mark.vm, pytest.mark.usefixtures("vm_kernel")]

OUT = Path(os.environ.get("ENGINE_VM_OUT") or "/tmp/engine-vm-out")
FIXTURES = REPO / "tests" / "fixtures" / "btf"
READY_TIMEOUT = 900.0  # clang under emulation, four at once: 70-250 s seen; more on a busy host
STOP_TIMEOUT = 120.0
CONCURRENT = 4  # engines compiling at once (2 vCPUs; each clang needs ~300 MB)
FAIL_THREADS = 16
TRAFFIC_SETTLE = 3.0  # seconds for the last events to be read (the reader polls every 100 ms)

# One child per failing kind of connect; many threads, so a leaking stash (keyed by thread
# id) would hold many entries. Prints the errnos it got, then "done".
FAIL_CODE = r"""
import ctypes, json, socket, struct, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(15, b"vm-conn-fail", 0, 0, 0) != 0:
    sys.exit("prctl failed")
print(json.dumps({"pid": __import__("os").getpid()}), flush=True)
if sys.stdin.readline() != "go\n":
    sys.exit("not told to go")
got = []
lock = threading.Lock()
def one():
    # AF_INET socket, sockaddr claiming AF_INET6: tcp_v4_connect returns -EAFNOSUPPORT
    s4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    a4 = ctypes.create_string_buffer(struct.pack("=H", socket.AF_INET6) + bytes(14), 16)
    r4 = libc.connect(s4.fileno(), a4, 16); e4 = ctypes.get_errno()
    # AF_INET6 socket, 8-byte address (< SIN6_LEN_RFC2133): tcp_v6_connect returns -EINVAL
    s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    a6 = ctypes.create_string_buffer(struct.pack("=H", socket.AF_INET6) + bytes(6), 8)
    r6 = libc.connect(s6.fileno(), a6, 8); e6 = ctypes.get_errno()
    with lock:
        got.append([r4, e4, r6, e6])
    s4.close(); s6.close()
threads = [threading.Thread(target=one) for _ in range(int(sys.argv[1]))]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(got), flush=True)
print("done", flush=True)
"""


def derived_spec(tmp: Path, name: str, source: str, edit: Any) -> str:
    """A copy of a seed spec with `edit(document)` applied (extra alternatives, say)."""
    document = yaml.safe_load((REPO / source).read_text())
    edit(document)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return str(path)


def with_fexit(doc: dict) -> None:
    """tcpconnect with an fexit alternative first: fexit, kretprobe, tracepoint."""
    attach = doc["probes"][0]["attach"]
    attach.insert(0, {"fexit": list(attach[0]["kretprobe"]), "where": attach[0]["where"]})


def with_fentry(doc: dict) -> None:
    """icmp with an fentry alternative first: fentry, kprobe, tracepoint."""
    attach = doc["probes"][0]["attach"]
    attach.insert(0, {"fentry": attach[0]["kprobe"]})


def failed_only(doc: dict) -> None:
    """tcpconnect's kretprobe alone, keeping the connects that failed, with `ret` shown."""
    probe = doc["probes"][0]
    probe["attach"] = [{"kretprobe": probe["attach"][0]["kretprobe"], "where": "ret != 0"}]
    probe["fields"]["ret"] = "ret"
    doc["output"]["columns"].append("ret")


@dataclass
class Load:
    name: str
    spec: str
    args: list[str]
    proc: EngineProc | None = None
    started: float = 0.0
    ready_s: float = 0.0
    rows: list[dict] = field(default_factory=list)
    stderr: str = ""
    code: int | None = None
    stash_sizes: list[int] = field(default_factory=list)

    @property
    def using(self) -> str:
        """What the engine said it attached: the text after "using" for the one probe."""
        text = self.stderr or (self.proc.err.text() if self.proc else "")
        m = re.search(r"^probe '[^']+': using (.+?)(?: \((?:skipped|forced).*)?$", text, re.M)
        assert m, f"{self.name}: no 'using' line:\n{self.stderr}"
        return m.group(1)


@dataclass
class Scene:
    loads: dict[str, Load]
    a: ConnChild
    b: ConnChild
    fail_pid: int
    fail_result: list[list[int]]
    ping_pid: int


def stash_sizes(pid: int) -> list[int]:
    """Entries in each kretprobe stash map the process holds (bpftool)."""
    maps = json.loads(
        subprocess.run(
            ["bpftool", "map", "list", "-j"], capture_output=True, text=True, check=True
        ).stdout
        or "[]"
    )
    held: set[int] = set()
    for entry in Path(f"/proc/{pid}/fdinfo").iterdir():
        with contextlib.suppress(OSError):
            for line in entry.read_text().splitlines():
                if line.startswith("map_id:"):
                    held.add(int(line.split(":", 1)[1]))
    sizes = []
    for m in maps:
        # the stash is the state map state_stash_<probe> (BPF names stop at 15 characters)
        if m["id"] in held and str(m.get("name", "")).startswith("state_stash"):
            dump = subprocess.run(
                ["bpftool", "map", "dump", "id", str(m["id"]), "-j"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            sizes.append(len(json.loads(dump or "[]")))
    return sizes


def start_all(loads: list[Load]) -> None:
    """Start every engine, at most CONCURRENT compiling at once; wait until all trace."""
    waiting = list(loads)
    compiling: list[Load] = []
    while waiting or compiling:
        while waiting and len(compiling) < CONCURRENT:
            load = waiting.pop(0)
            load.started = time.monotonic()
            load.proc = EngineProc(load.spec, load.args)
            compiling.append(load)
        for load in list(compiling):
            assert load.proc is not None
            lines = load.proc.err.lines
            if any(line.startswith("Tracing") for line in lines):
                load.ready_s = time.monotonic() - load.started
                load.proc.wait_ready(timeout=1)
                compiling.remove(load)
            elif load.proc.proc.poll() is not None or (
                time.monotonic() - load.started > READY_TIMEOUT
            ):
                load.proc.wait_ready(timeout=1)  # fails the test with the engine's output
        time.sleep(0.2)


@pytest.fixture(scope="session")
def scene(vm_kernel: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    tmp = tmp_path_factory.mktemp("specs")
    tc3 = derived_spec(tmp, "tcpconnect-fexit", "specs/tcpconnect.yaml", with_fexit)
    icmp3 = derived_spec(tmp, "icmp-fentry", "specs/icmp.yaml", with_fentry)
    failed = derived_spec(tmp, "tcpconnect-failed", "specs/tcpconnect.yaml", failed_only)
    # Children first (they wait for "go"), so -p and -P can name their pid and port.
    a = ConnChild(
        listen=["127.0.0.1", "::1"], connects=[(0, 2), (1, 1)], comm="vm-conn-a", wait=True
    )
    b = ConnChild(listen=["127.0.0.1"], connects=[(0, 1)], comm="vm-conn-b", wait=True)
    fail = subprocess.Popen(
        [sys.executable, "-I", "-c", FAIL_CODE, str(FAIL_THREADS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert fail.stdout is not None and fail.stdin is not None
    fail_out = LineReader(fail.stdout)
    assert fail_out.wait_for(lambda ls: len(ls) >= 1, 30), "failing child reported nothing"
    fail_pid = json.loads(fail_out.lines[0])["pid"]
    json_ = ["-o", "json"]
    loads = [
        Load("tcp-fexit", tc3, ["--alternative", "1", *json_]),
        Load("tcp-kretprobe", tc3, ["--alternative", "2", *json_]),
        Load("tcp-tracepoint", tc3, ["--alternative", "3", *json_]),
        Load("tcp-auto-port", "specs/tcpconnect.yaml", ["-P", str(b.ports[0]), *json_]),
        Load("tcp-auto-count-pid", "specs/tcpconnect.yaml", ["-c", "-p", str(a.pid), *json_]),
        Load("tcp-failed", failed, json_),
        Load("icmp-fentry", icmp3, ["--alternative", "1", *json_]),
        Load("icmp-kprobe", icmp3, ["--alternative", "2", *json_]),
        Load("icmp-tracepoint", icmp3, ["--alternative", "3", *json_]),
        Load("icmp-auto", "specs/icmp.yaml", json_),
    ]
    by_name = {load.name: load for load in loads}
    try:
        start_all(loads)
        a.go()
        b.go()
        fail.stdin.write("go\n")
        fail.stdin.flush()
        a.finish()
        b.finish()
        fail.wait(60)
        fail_out.join(5)
        assert fail.returncode == 0 and fail_out.lines[-1] == "done", fail_out.text()
        fail_result = json.loads(fail_out.lines[1])
        ping_pid = run_ping("-c", "3", "-i", "0.2", "127.0.0.1")
        time.sleep(TRAFFIC_SETTLE)
        for load in loads:
            assert load.proc is not None
            if "kretprobe" in load.using:
                load.stash_sizes = stash_sizes(load.proc.engine_pid)
        for load in loads:
            assert load.proc is not None
            result = load.proc.stop(timeout=STOP_TIMEOUT)
            load.code, load.stderr = result.code, result.stderr
            load.rows = result.json_rows()
        record(loads)
        yield Scene(by_name, a, b, fail_pid, fail_result, ping_pid)
    finally:
        for load in loads:
            if load.proc is not None:
                load.proc.kill()
        for child in (a, b):
            child.kill()
        if fail.poll() is None:
            fail.kill()
            fail.wait(10)
        fail.stdin.close()
        if fail_out.join(5):
            fail.stdout.close()


def record(loads: list[Load]) -> None:
    """Compile times and chosen alternatives, for scripts/vm-kernels.sh's report."""
    OUT.mkdir(parents=True, exist_ok=True)
    for load in loads:
        (OUT / f"load-{load.name}.json").write_text(
            json.dumps(
                {
                    "spec": load.spec,
                    "args": load.args,
                    "ready_s": round(load.ready_s, 1),
                    "using": load.using,
                    "rows": len(load.rows),
                }
            )
            + "\n"
        )


def connect_rows(child: ConnChild) -> list[dict]:
    """The rows of `child`'s connects, in the order it made them."""
    rows = []
    for index, times in ((0, 2), (1, 1)) if len(child.listen) == 2 else ((0, 1),):
        host = child.listen[index]
        rows += [
            {
                "pid": child.pid,
                "comm": child.comm,
                "ip": 6 if ":" in host else 4,
                "saddr": host,
                "daddr": host,
                "dport": child.ports[index],
            }
        ] * times
    return rows


def ours(rows: list[dict], *pids: int) -> list[dict]:
    return [r for r in rows if r.get("pid") in pids]


def ordered(rows: list[dict]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True) for r in rows)


# --- which path each engine took ---------------------------------------------------------


def test_each_forced_alternative_attached(scene: Scene) -> None:
    expect = {
        "tcp-fexit": "fexit tcp_v4_connect, tcp_v6_connect",
        "tcp-kretprobe": "kretprobe tcp_v4_connect, tcp_v6_connect",
        "tcp-tracepoint": "tracepoint sock/inet_sock_set_state",
        "icmp-fentry": "fentry icmp_echo",
        "icmp-kprobe": "kprobe icmp_echo",
        "icmp-tracepoint": "tracepoint net/net_dev_queue",
        # chosen by the engine itself: the seed's own first alternatives
        "tcp-auto-port": "kretprobe tcp_v4_connect, tcp_v6_connect",
        "tcp-auto-count-pid": "kretprobe tcp_v4_connect, tcp_v6_connect",
        "tcp-failed": "kretprobe tcp_v4_connect, tcp_v6_connect",
        "icmp-auto": "kprobe icmp_echo",
    }
    assert {name: scene.loads[name].using for name in expect} == expect
    assert all(load.code == 0 for load in scene.loads.values()), {
        n: (load.code, load.stderr) for n, load in scene.loads.items() if load.code != 0
    }


# --- tcpconnect --------------------------------------------------------------------------------


def test_kretprobe_rows_ipv4_and_ipv6(scene: Scene) -> None:
    rows = scene.loads["tcp-kretprobe"].rows
    assert ours(rows, scene.a.pid) == connect_rows(scene.a)  # in the order they were made
    assert ours(rows, scene.b.pid) == connect_rows(scene.b)


def test_fexit_kretprobe_and_tracepoint_rows_are_identical(scene: Scene) -> None:
    kretprobe = scene.loads["tcp-kretprobe"].rows
    assert len(ours(kretprobe, scene.a.pid, scene.b.pid)) == 4
    assert ordered(scene.loads["tcp-fexit"].rows) == ordered(kretprobe)
    assert ordered(scene.loads["tcp-tracepoint"].rows) == ordered(kretprobe)


def test_port_filter(scene: Scene) -> None:
    assert scene.loads["tcp-auto-port"].rows == connect_rows(scene.b)


def test_count_mode_with_pid_filter(scene: Scene) -> None:
    """-c -p PID: child a's connects counted per address pair; b's (and all else) filtered."""
    a = scene.a
    assert ordered(scene.loads["tcp-auto-count-pid"].rows) == ordered(
        [
            {"saddr": "127.0.0.1", "daddr": "127.0.0.1", "dport": a.ports[0], "connects": 2},
            {"saddr": "::1", "daddr": "::1", "dport": a.ports[1], "connects": 1},
        ]
    )


# --- the kretprobe's ret filter and its stash ----------------------------------------------------


def test_failed_connects_failed_where_expected(scene: Scene) -> None:
    eafnosupport, einval = 97, 22
    assert scene.fail_result == [[-1, eafnosupport, -1, einval]] * FAIL_THREADS


def test_ret_filter_keeps_only_successful_connects(scene: Scene) -> None:
    for name in ("tcp-fexit", "tcp-kretprobe", "tcp-tracepoint"):
        assert ours(scene.loads[name].rows, scene.fail_pid) == [], name


def test_ret_filter_inverted_shows_each_failed_connect_once(scene: Scene) -> None:
    rows = ours(scene.loads["tcp-failed"].rows, scene.fail_pid)
    by_ret = {(r["ip"], r["ret"]) for r in rows}
    assert by_ret == {(4, -97), (6, -22)}, rows
    assert sorted((r["ip"], r["ret"]) for r in rows) == sorted(
        [(4, -97)] * FAIL_THREADS + [(6, -22)] * FAIL_THREADS
    )
    assert {r["comm"] for r in rows} == {"vm-conn-fail"}
    # the successful connects do not pass `ret != 0`
    assert ours(scene.loads["tcp-failed"].rows, scene.a.pid, scene.b.pid) == []


def test_stash_is_empty_after_every_path(scene: Scene) -> None:
    names = ("tcp-kretprobe", "tcp-auto-port", "tcp-auto-count-pid", "tcp-failed")
    sizes = {name: scene.loads[name].stash_sizes for name in names}
    assert sizes == {name: [0] for name in names}


# --- icmp ----------------------------------------------------------------------------------------


def test_icmp_kprobe_sequences(scene: Scene) -> None:
    pid = scene.ping_pid
    expect = [{"tgid": pid, "pid": pid, "comm": "ping", "seq": n} for n in (1, 2, 3)]
    assert ours(scene.loads["icmp-kprobe"].rows, pid) == expect


def test_icmp_fentry_kprobe_and_tracepoint_rows_are_identical(scene: Scene) -> None:
    kprobe = scene.loads["icmp-kprobe"].rows
    assert len(ours(kprobe, scene.ping_pid)) == 3
    assert scene.loads["icmp-fentry"].rows == kprobe
    assert scene.loads["icmp-tracepoint"].rows == kprobe
    assert scene.loads["icmp-auto"].rows == kprobe


# --- the matrix's prediction ------------------------------------------------------------------


def fixture_of_this_kernel() -> Path:
    path = FIXTURES / f"linux-{platform.release()}.btf.xz"
    assert path.is_file(), f"no BTF fixture for kernel {platform.release()}: {path}"
    return path


def test_fixture_is_this_kernels_btf() -> None:
    live = Path("/sys/kernel/btf/vmlinux").read_bytes()
    assert lzma.decompress(fixture_of_this_kernel().read_bytes()) == live


def test_matrix_prediction_is_what_attached(scene: Scene, tmp_path: Path) -> None:
    kernels = tmp_path / "kernels"  # a folder of one: the matrix's JSON, for this kernel
    kernels.mkdir()
    (kernels / fixture_of_this_kernel().name).symlink_to(fixture_of_this_kernel())
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "validate",
            "--btf",
            str(kernels),
            "--format",
            "json",
            "specs/tcpconnect.yaml",
            "specs/icmp.yaml",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    matrix = json.loads(result.stdout)
    predicted = {}
    for spec in matrix["specs"]:
        (cell,) = spec["kernels"]
        (probe,) = cell["probes"]
        predicted[spec["file"]] = probe["attach"]
    attached = {
        "specs/tcpconnect.yaml": scene.loads["tcp-auto-port"].using,
        "specs/icmp.yaml": scene.loads["icmp-auto"].using,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "chosen.json").write_text(
        json.dumps({"kernel": platform.release(), "predicted": predicted, "attached": attached})
        + "\n"
    )
    assert predicted == attached
