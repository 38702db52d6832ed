"""`engine serve` scraped by a real Prometheus server (Debian's `prometheus`), both on loopback.

Known traffic in, exact values out through Prometheus's HTTP query API: 57 connects to one
port raise tcpconnect's counter for that port by exactly 57; seven write() sizes land in the
log2 and linear histogram buckets they belong to. A second engine serve checks the series
budget: more ports than max_series -> the `other` series carries the rest and the sum over
all series equals the connects made. SIGTERM detaches every program.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import procs
import pytest
from conftest import READY_TIMEOUT, RELEASE_TIMEOUT, STOP_TIMEOUT

from tests.promcheck import check_exposition

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").strip().lower() == "true"
READY = re.compile(r"serving http://127\.0\.0\.1:(\d+)/metrics")


def prog_ids_held_by(pid: int) -> set[int]:
    ids: set[int] = set()
    for entry in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            text = entry.read_text()
        except OSError:
            continue
        ids |= {int(line.split(":", 1)[1]) for line in text.splitlines() if "prog_id:" in line}
    return ids


def loaded_prog_ids() -> set[int]:
    out = subprocess.run(
        ["bpftool", "prog", "list", "-j"], capture_output=True, text=True, check=True, timeout=90
    )
    return {p["id"] for p in json.loads(out.stdout or "[]")}


class Serve:
    """`engine serve SPEC... --listen 127.0.0.1:0` with its port read from stderr."""

    def __init__(self, *specs: str, args: tuple[str, ...] = ()) -> None:
        self.proc = procs.spawn(
            [
                sys.executable,
                "-m",
                "engine.cli",
                "serve",
                *specs,
                "--listen",
                "127.0.0.1:0",
                *args,
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.port = 0
        ready = threading.Event()

        def pump() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.lines.append(line)
                m = READY.search(line)
                if m:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(READY_TIMEOUT) or not self.port:
            procs.kill(self.proc)
            raise AssertionError("engine serve did not start:\n" + "".join(self.lines))

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def stop(self) -> int:
        held = prog_ids_held_by(self.proc.pid)
        assert held, "engine serve holds no BPF programs"
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(STOP_TIMEOUT)
        self.close()
        deadline = time.monotonic() + RELEASE_TIMEOUT
        while held & loaded_prog_ids() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not held & loaded_prog_ids(), "programs left loaded after SIGTERM"
        return code

    def close(self) -> None:
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def kill(self) -> None:
        procs.kill(self.proc)


class Prometheus:
    """A Prometheus server on a free loopback port scraping one target every second."""

    def __init__(self, target_port: int, tmp: Path) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            message = "needs Debian's prometheus (scripts/setup.sh installs it)"
            if IN_CI:
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = tmp / "prometheus.yml"
        config.write_text(
            textwrap.dedent(
                f"""\
                global: {{scrape_interval: 1s, scrape_timeout: 1s}}
                scrape_configs:
                  - job_name: engine
                    static_configs: [{{targets: ["127.0.0.1:{target_port}"]}}]
                """
            )
        )
        self.log = (tmp / "prometheus.log").open("w")
        self.proc = procs.spawn(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + READY_TIMEOUT  # it accepts, then answers 200 when ready
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=10) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        procs.kill(self.proc)
        self.log.close()
        raise AssertionError(f"prometheus was not ready within {READY_TIMEOUT:.0f} s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, promql: str) -> list[dict[str, Any]]:
        q = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{q}", timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def wait_value(self, promql: str, want: float, timeout: float = 90) -> list[dict[str, Any]]:
        """Poll until the query's single value equals `want`; fail with what it last saw."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(promql)
            if len(result) == 1 and float(result[0]["value"][1]) == want:
                return result
            time.sleep(0.5)
        raise AssertionError(f"{promql}: wanted {want}, Prometheus says {result}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            procs.kill(self.proc)
        self.log.close()


@pytest.fixture
def serve_and_prometheus(tmp_path: Path) -> Iterator[tuple[Serve, Prometheus]]:
    serve = Serve(
        "specs/tcpconnect.yaml",
        "tests/specs/serve/writesize.yaml",
        "tests/specs/serve/writeret.yaml",
    )
    prom = None
    try:
        prom = Prometheus(serve.port, tmp_path)
        yield serve, prom
    finally:
        if prom is not None:
            prom.stop()
        serve.kill()


def connects(count: int, port: int) -> None:
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass


CHILD = textwrap.dedent(
    """\
    import ctypes, os, sys
    ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)  # PR_SET_NAME
    fd = os.open(os.devnull, os.O_WRONLY)
    for n in sys.argv[2:]:
        os.write(fd, b"x" * int(n))
    """
)

SIZES = (1, 5, 100, 250, 999, 1000, 4000)

# Writes that return -EBADF (-9) and two that succeed: signed values for writeret.yaml.
RET_CHILD = textwrap.dedent(
    """\
    import ctypes, os, sys
    ctypes.CDLL(None).prctl(15, b"engine-rtest", 0, 0, 0)  # PR_SET_NAME
    fd = os.open(os.devnull, os.O_WRONLY)
    os.write(fd, b"x")
    os.write(fd, b"xxxxx")
    libc = ctypes.CDLL(None, use_errno=True)
    for _ in range(2):
        assert libc.write(999, b"x", 1) == -1 and ctypes.get_errno() == 9  # EBADF
    """
)


def test_prometheus_sees_exact_counts_and_buckets(
    serve_and_prometheus: tuple[Serve, Prometheus],
) -> None:
    serve, prom = serve_and_prometheus
    prom.wait_value('up{job="engine"}', 1)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port = listener.getsockname()[1]
        metric = f'tcpconnect_connects_total{{daddr="127.0.0.1",dport="{port}"}}'
        assert prom.query(metric) == []  # nothing before the traffic
        connects(20, port)
        prom.wait_value(metric, 20)
        connects(37, port)
        prom.wait_value(metric, 57)
        (series,) = prom.query(metric)
        assert series["metric"]["saddr"] == "127.0.0.1"

    subprocess.run(
        [sys.executable, "-c", CHILD, "engine-wtest", *map(str, SIZES)], check=True, timeout=30
    )
    name = "wtest_write_size_bytes"
    prom.wait_value(f'{name}_count{{comm="engine-wtest"}}', len(SIZES))
    prom.wait_value(f'{name}_sum{{comm="engine-wtest"}}', sum(SIZES))
    buckets = {
        r["metric"]["le"]: float(r["value"][1])
        for r in prom.query(f'{name}_bucket{{comm="engine-wtest"}}')
    }
    # bcc's log2 buckets: [0,1] [4,7] [64,127] [128,255] [512,1023] [2048,4095], cumulative;
    # every bucket from le 1 up to the highest filled is there, empty ones included.
    filled = {1: 1, 7: 1, 127: 1, 255: 1, 1023: 2, 4095: 1}
    want, running = {}, 0
    for i in range(1, 13):
        running += filled.get((1 << i) - 1, 0)
        want[f"{float((1 << i) - 1)}"] = running
    assert buckets == {**want, "+Inf": 7}
    linear = {
        r["metric"]["le"]: float(r["value"][1])
        for r in prom.query('writesize_sizes_bucket{comm="engine-wtest"}')
    }
    # lhist 0..1000 step 100: [0,99] [100,199] [200,299] [900,999], then >= 1000; every
    # bucket of the lhist is there (le -1 is its `< min` one).
    assert linear == {
        "-1.0": 0,
        "99.0": 2,
        "199.0": 3,
        "299.0": 4,
        **{f"{float(le)}": 4 for le in range(399, 999, 100)},
        "999.0": 5,
        "+Inf": 7,
    }
    prom.wait_value('writesize_biggest_bytes{comm="engine-wtest"}', 4000)
    prom.wait_value('engine_spec_load_errors_total{spec="tcpconnect"}', 0)
    prom.wait_value("engine_specs_loaded", 3)

    # Signed values: the sum is a gauge below zero; the lhist's buckets start below zero and
    # it keeps _count and _sum (prometheus_client drops them for negative buckets).
    subprocess.run([sys.executable, "-c", RET_CHILD], check=True, timeout=30)
    prom.wait_value('writeret_returned{comm="engine-rtest"}', 1 + 5 - 9 - 9)
    prom.wait_value('writeret_rets_count{comm="engine-rtest"}', 4)
    prom.wait_value('writeret_rets_sum{comm="engine-rtest"}', 1 + 5 - 9 - 9)
    rets = {
        r["metric"]["le"]: float(r["value"][1])
        for r in prom.query('writeret_rets_bucket{comm="engine-rtest"}')
    }
    # lhist -16..16 step 8: [-16,-9] holds -9 twice, [0,7] holds 1 and 5; all its buckets.
    assert rets == {"-17.0": 0, "-9.0": 2, "-1.0": 2, "7.0": 4, "15.0": 4, "+Inf": 4}
    # The whole scrape passes the strict checks and promtool; Prometheus kept the target up.
    status, text = serve.get("/metrics")
    assert status == 200
    check_exposition(text)
    prom.wait_value('up{job="engine"}', 1)

    status, text = serve.get("/healthz")
    assert (status, text) == (200, "ok\n")
    assert serve.get("/nothing")[0] == 404
    assert serve.stop() == 0


def test_series_budget_other_carries_the_rest() -> None:
    """tcpbudget allows 5 series: 8 ports with 1..8 connects -> 5 named, the rest in `other`."""
    serve = Serve("tests/specs/serve/tcpbudget.yaml")
    try:
        listeners = []
        for _ in range(8):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(64)
            listeners.append(s)
        made = {s.getsockname()[1]: i + 1 for i, s in enumerate(listeners)}
        script = (
            "import socket,sys\n"
            + CHILD.split("fd =")[0]
            + textwrap.dedent(
                """\
            for arg in sys.argv[2:]:
                port, n = map(int, arg.split(":"))
                for _ in range(n):
                    socket.create_connection(("127.0.0.1", port)).close()
            """
            )
        )
        args = [f"{p}:{n}" for p, n in made.items()]
        subprocess.run(
            [sys.executable, "-c", script, "engine-ctest", *args], check=True, timeout=60
        )
        status, text = serve.get("/metrics")
        assert status == 200
        check_exposition(text)
        values = {
            m.group(1): float(m.group(2))
            for m in re.finditer(r'^tcpbudget_connects_total\{dport="(\w+)"\} (\S+)$', text, re.M)
        }
        assert len(values) == 6, text  # 5 ports and other
        named = {int(k): v for k, v in values.items() if k != "other"}
        assert all(made[p] == v for p, v in named.items()), (named, made)
        assert values["other"] == sum(n for p, n in made.items() if p not in named)
        assert sum(values.values()) == sum(made.values()) == 36
        overflow = 'engine_series_overflow_total{metric="tcpbudget_connects",spec="tcpbudget"}'
        assert f"{overflow} 3.0" in text.splitlines()
        # The next scrape keeps the same five: a counter never moves into `other`.
        again = serve.get("/metrics")[1]
        assert sorted(re.findall(r'dport="(\w+)"', again)) == sorted(values)
        for s in listeners:
            s.close()
        assert serve.stop() == 0
    finally:
        serve.kill()


STATS = Path("/proc/sys/kernel/bpf_stats_enabled")


def test_program_run_counts_only_when_bpf_stats_enabled() -> None:
    """kernel.bpf_stats_enabled=1: each program's run count and time; 0: no such metric."""
    before = STATS.read_text().strip()
    serve = Serve("tests/specs/serve/tcpbudget.yaml")
    try:
        STATS.write_text("0\n")
        assert "engine_bpf_program_runs_total" not in serve.get("/metrics")[1]
        STATS.write_text("1\n")
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(64)
            connects(10, listener.getsockname()[1])
        text = serve.get("/metrics")[1]
        check_exposition(text)
    except BaseException:
        serve.kill()
        raise
    finally:
        STATS.write_text(before + "\n")
    runs = re.search(
        r'^engine_bpf_program_runs_total\{program="p0_connect_\w+",spec="tcpbudget"\} (\S+)$',
        text,
        re.M,
    )
    run_time = re.search(r"^engine_bpf_program_run_seconds_total\{[^}]*\} (\S+)$", text, re.M)
    if not (runs and run_time):
        serve.kill()
        raise AssertionError(text)
    # Every connect moves its socket out of CLOSE at least once: the program ran for each.
    assert float(runs.group(1)) >= 10
    assert float(run_time.group(1)) > 0
    assert serve.stop() == 0


def test_slow_clients_and_50_scrapers_do_not_starve_a_scrape() -> None:
    """Issue 17: 20 connections with unfinished requests (one of 60 kB) and 50 clients
    scraping without pause; a well-behaved scrape with Prometheus' default 10 s timeout is
    answered each time, and the server closes every slow connection itself."""
    serve = Serve(
        "tests/specs/serve/tcpbudget.yaml",
        args=("--request-timeout", "2"),  # and 64 connections at most: 20 + 51 are more
    )
    stop = threading.Event()
    slow: list[socket.socket] = []
    scrapers: list[threading.Thread] = []
    answered = [0]

    def scrape_forever() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                serve.get("/metrics")
                answered[0] += 1

    try:
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", serve.port), timeout=60)
            tail = b"a" * (60_000 if i == 0 else 100)
            s.sendall(f"GET /metrics HTTP/1.1\r\nX-Slow-{i}: ".encode() + tail)
            slow.append(s)
        scrapers = [threading.Thread(target=scrape_forever, daemon=True) for _ in range(50)]
        for t in scrapers:
            t.start()
        for _ in range(3):
            status, text = serve.get("/metrics")  # urllib, timeout=10: Prometheus' default
            assert status == 200 and "engine_specs_loaded 1.0" in text
        for s in slow:
            s.settimeout(60)
            with contextlib.suppress(ConnectionResetError):
                while s.recv(65536):
                    pass  # a 431 for the 60 kB one, then the end; the others just end
        stop.set()
        for t in scrapers:
            t.join(60)
        text = serve.get("/metrics")[1]
        closed = {
            m.group(1): float(m.group(2))
            for m in re.finditer(
                r'^engine_http_connections_closed_total\{reason="(\w+)"\} (\S+)$', text, re.M
            )
        }
        assert closed["header_too_large"] == 1
        assert closed["timeout"] + closed["evicted"] >= 19, closed
        assert answered[0] > 0
        assert serve.stop() == 0
    finally:
        stop.set()
        for s in slow:
            s.close()
        serve.kill()
