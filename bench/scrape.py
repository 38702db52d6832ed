"""Scrape cost of `engine serve`: /metrics wall time with N series in the kernel map (root).

    python -m bench.scrape [--series 0,1000,10000] [--scrapes 20]

Starts `engine serve bench/specs/scrape.yaml` on loopback, then for each N makes connects to
N distinct closed loopback ports from a child named engine-sbench (each refused connect still
leaves CLOSE for SYN_SENT, so it is one key), and times --scrapes GETs of /metrics: median,
90th percentile and max wall time, the body size, and the engine's own
engine_scrape_duration_seconds (map read + decode + fold, before text formatting). Beside
them, `map_read_ms_median`: the batched read of the same map alone (BPF_MAP_LOOKUP_BATCH, what
every scrape starts with), timed in this process on a second session of the same spec that
counts the same connects.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIRST_PORT = 20000

CHILD = r"""
import ctypes, socket, sys
ctypes.CDLL(None).prctl(15, b"engine-sbench", 0, 0, 0)
first, last = int(sys.argv[1]), int(sys.argv[2])
for port in range(first, last):
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))
    except OSError:
        pass
    s.close()
"""


def scrape(port: int) -> tuple[float, str]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as r:
        body = r.read().decode()
    return time.perf_counter() - t0, body


def map_reader() -> tuple[object, object]:
    """A session of the bench spec in this process, and its count map's reader."""
    from engine.pipeline import check
    from engine.plan import model as M
    from engine.runtime import decoders, runner, sinks
    from engine.verbs.serve import serving_program

    plan = check(str(REPO / "bench/specs/scrape.yaml"), None).plan
    session = runner.start(plan, runner.RunConfig(count=True), M.Transport.RINGBUF)
    (sink,) = serving_program(plan).aggregations
    fields = {f.name: f for f in plan.fields}
    return session, sinks.Reader(sink, fields, decoders.State(exact_text=True))


def time_map_read(session: object, reader: object, times: int) -> float:
    """The median of `times` batched reads of the count map, in ms."""
    table = session.bpf[reader.sink.map]  # type: ignore[attr-defined]
    took = []
    for _ in range(times):
        t0 = time.perf_counter()
        reader.items(table)  # type: ignore[attr-defined]
        took.append(time.perf_counter() - t0)
    return round(statistics.median(took) * 1e3, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", default="0,1000,10000")
    ap.add_argument("--scrapes", type=int, default=20)
    args = ap.parse_args()
    targets = [int(x) for x in args.series.split(",")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "bench/specs/scrape.yaml",
         "--listen", "127.0.0.1:0"],
        cwd=REPO, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    port = 0
    for line in proc.stderr:
        m = re.search(r"serving http://127\.0\.0\.1:(\d+)/", line)
        if m:
            port = int(m.group(1))
            break
    if not port:
        print("engine serve did not start", file=sys.stderr)
        return 1
    made = 0
    results = []
    session, reader = map_reader()
    try:
        for n in targets:
            if n > made:
                subprocess.run(
                    [sys.executable, "-c", CHILD, str(FIRST_PORT + made), str(FIRST_PORT + n)],
                    check=True,
                )
                made = n
            times, own = [], []
            body = ""
            for _ in range(args.scrapes):
                t, body = scrape(port)
                times.append(t)
                m = re.search(r"^engine_scrape_duration_seconds (\S+)$", body, re.M)
                own.append(float(m.group(1)) if m else float("nan"))
            series = len(re.findall(r"^scrapebench_connects_total\{", body, re.M))
            times.sort()
            results.append(
                {
                    "series": series,
                    "scrape_ms_median": round(statistics.median(times) * 1e3, 1),
                    "scrape_ms_p90": round(times[int(0.9 * (len(times) - 1))] * 1e3, 1),
                    "scrape_ms_max": round(times[-1] * 1e3, 1),
                    "read_ms_median": round(statistics.median(own) * 1e3, 1),
                    "map_read_ms_median": time_map_read(session, reader, args.scrapes),
                    "body_kib": round(len(body.encode()) / 1024, 1),
                }
            )
            print(json.dumps(results[-1]), flush=True)
    finally:
        session.close()  # type: ignore[attr-defined]
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
