"""engine.kernel.capabilities on the running kernel: real loads and attaches, none left behind.

The expectations are this project's machines (kernel 6.18 without CONFIG_KPROBES, fentry refused
with EPERM); where the kprobe PMU exists the kprobe and fentry expectations flip to "works".
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import UsageError
from engine.kernel import capabilities
from engine.kernel.capabilities import FEATURES, NEEDS_ROOT, can_attach, probe, probe_all

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: loads and attaches BPF programs"),
]

REPO = Path(__file__).resolve().parents[2]
HAS_KPROBES = os.path.isdir("/sys/bus/event_source/devices/kprobe")


def ours(kind: str) -> list[dict[str, object]]:
    """Programs or maps named like ours, from bpftool."""
    out = subprocess.run(
        ["bpftool", kind, "list", "-j"], capture_output=True, text=True, check=True
    )
    return [p for p in json.loads(out.stdout or "[]") if p.get("name") == "engine_probe"]


PRESENT = (
    "root",
    "bcc",
    "btf",
    "tracefs",
    "tracepoint",
    "raw_tracepoint",
    "ringbuf",
    "perf_buffer",
)


@pytest.mark.parametrize("feature", PRESENT)
def test_present_on_this_kernel(feature: str) -> None:
    result = probe(feature)
    assert result.ok, result
    assert result.detail and not result.remedy


def test_bcc_reports_its_version() -> None:
    assert re.match(r"bcc \d+\.\d+", probe("bcc").detail)


def test_tracepoint_detail_names_what_was_attached() -> None:
    assert probe("tracepoint").detail.startswith("attached a tracepoint program to ")


@pytest.mark.parametrize("feature", ["kprobe", "kretprobe"])
def test_kprobes_match_the_kprobe_pmu(feature: str) -> None:
    result = probe(feature)
    assert result.ok is HAS_KPROBES, result
    if not HAS_KPROBES:
        assert "CONFIG_KPROBES" in result.detail
        assert result.remedy == (
            "use a tracepoint alternative, or a kernel built with CONFIG_KPROBES"
        )


@pytest.mark.parametrize("feature", ["fentry", "fexit"])
def test_fentry_refused_here(feature: str) -> None:
    result = probe(feature)
    assert result.ok is HAS_KPROBES, result
    if not HAS_KPROBES:
        assert result.detail.startswith("bpf(BPF_PROG_LOAD): "), result
        assert result.remedy


def test_probe_all_is_every_feature_in_order() -> None:
    assert list(probe_all()) == list(FEATURES)


def test_can_attach_exact_targets() -> None:
    assert can_attach("tracepoint", "sock/inet_sock_set_state").ok
    assert can_attach("raw_tracepoint", "inet_sock_set_state").ok
    assert can_attach("kprobe", "tcp_v4_connect").ok is HAS_KPROBES
    missing = can_attach("tracepoint", "sock/nope")
    assert not missing.ok
    assert "sock/nope" in missing.detail


def test_can_attach_missing_raw_tracepoint_and_function() -> None:
    raw = can_attach("raw_tracepoint", "no_such_event_xyz")
    assert not raw.ok
    assert "No such file or directory" in raw.detail
    func = can_attach("fentry", "no_such_function_xyz")
    assert not func.ok
    assert "no_such_function_xyz" in func.detail


def test_bad_targets_are_reported_not_raised() -> None:
    assert "category/event" in can_attach("tracepoint", "sock inet").detail
    assert not can_attach("kprobe", "tcp_v4_connect; rm -rf /").ok


def test_unknown_kind_or_feature_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="uprobe"):
        can_attach("uprobe", "x")
    with pytest.raises(UsageError, match="kfunc"):
        probe("kfunc")


def test_nothing_stays_loaded_and_no_fd_leaks() -> None:
    progs, maps = ours("prog"), ours("map")
    fds = len(os.listdir("/proc/self/fd"))
    probe_all()
    can_attach("tracepoint", "sock/nope")
    can_attach("raw_tracepoint", "no_such_event_xyz")
    assert len(os.listdir("/proc/self/fd")) == fds
    assert ours("prog") == progs
    assert ours("map") == maps


def test_unprivileged_without_capabilities(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capabilities, "_privileged", lambda: False)
    for feature in ("tracepoint", "raw_tracepoint", "kprobe", "fentry", "ringbuf", "perf_buffer"):
        assert probe(feature).detail == NEEDS_ROOT
    assert can_attach("tracepoint", "sock/inet_sock_set_state").detail == NEEDS_ROOT


def test_doctor_json_as_nobody() -> None:
    code = (
        "import sys; from engine.verbs.doctor import run_doctor; "
        "sys.exit(run_doctor(True, sys.stdout))"
    )
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO),
           "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
    drop = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    proc = subprocess.run(
        [*drop, sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd="/"
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["root"] is False
    assert doc["ready"] is False
    assert doc["details"]["tracepoint"]["detail"] == NEEDS_ROOT
    assert doc["btf"] is True
