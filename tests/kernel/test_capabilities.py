"""engine.kernel.capabilities on the running kernel: real loads and attaches, none left behind.

What the probes must find is worked out independently of the engine, so the tests hold on any
kernel: kprobes from the kernel's build config (/proc/config.gz or /boot/config-$(uname -r),
else /proc/kallsyms and tracefs), fentry/fexit from the same load and attach done by libbpf.
"""

from __future__ import annotations

import ctypes
import gzip
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import UsageError
from engine.kernel import capabilities, elf
from engine.kernel.capabilities import FEATURES, NEEDS_ROOT, can_attach, probe, probe_all

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: loads and attaches BPF programs"),
]

REPO = Path(__file__).resolve().parents[2]


def kernel_config() -> dict[str, str] | None:
    """The running kernel's build config, or None where it is not published."""
    for path in ("/proc/config.gz", f"/boot/config-{platform.release()}"):
        try:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt") as f:  # type: ignore[operator]
                lines = f.read().splitlines()
        except OSError:
            continue
        return dict(ln.split("=", 1) for ln in lines if ln.startswith("CONFIG_") and "=" in ln)
    return None


def kprobes_built_in() -> bool:
    """CONFIG_KPROBES and CONFIG_KPROBE_EVENTS (what a BPF kprobe attaches through)."""
    config = kernel_config()
    if config is not None:
        return config.get("CONFIG_KPROBES") == "y" and config.get("CONFIG_KPROBE_EVENTS") == "y"
    with open("/proc/kallsyms") as f:  # root sees the symbols: register_kprobe is CONFIG_KPROBES
        registered = any(line.split()[2:3] == ["register_kprobe"] for line in f)
    tracefs = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
    return registered and any(os.path.exists(f"{t}/kprobe_events") for t in tracefs)


HAS_KPROBES = kprobes_built_in()


class Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("regs", ctypes.c_uint8),
                ("off", ctypes.c_int16), ("imm", ctypes.c_int32)]  # fmt: skip


class ProgLoadOpts(ctypes.Structure):
    """libbpf's struct bpf_prog_load_opts up to attach_prog_fd (`sz` says how far)."""

    _fields_ = [
        ("sz", ctypes.c_size_t), ("attempts", ctypes.c_int),
        ("expected_attach_type", ctypes.c_uint32), ("prog_btf_fd", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32), ("prog_ifindex", ctypes.c_uint32),
        ("kern_version", ctypes.c_uint32), ("attach_btf_id", ctypes.c_uint32),
        ("attach_btf_obj_fd", ctypes.c_uint32), ("attach_prog_fd", ctypes.c_int),
    ]  # fmt: skip


def libbpf_attaches(kind: str, function: str) -> tuple[bool, str]:
    """Load and attach `r0 = 0; exit` as fentry/fexit through libbpf, then close it: the
    reference the engine's raw-syscall probe is compared with."""
    try:
        lib = ctypes.CDLL("libbpf.so.1")
    except OSError as exc:
        pytest.skip(f"libbpf.so.1 is not installed (apt install libbpf1): no reference: {exc}")
    attach_type = {"fentry": 24, "fexit": 25}[kind]  # BPF_TRACE_FENTRY, BPF_TRACE_FEXIT
    lib.libbpf_find_vmlinux_btf_id.argtypes = [ctypes.c_char_p, ctypes.c_uint32]
    lib.bpf_prog_load.argtypes = [ctypes.c_uint32, ctypes.c_char_p, ctypes.c_char_p,
                                  ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]  # fmt: skip
    lib.bpf_raw_tracepoint_open.argtypes = [ctypes.c_char_p, ctypes.c_int]
    btf_id = lib.libbpf_find_vmlinux_btf_id(function.encode(), attach_type)
    if btf_id < 0:
        return False, f"libbpf_find_vmlinux_btf_id: {os.strerror(-btf_id)}"
    insns = (Insn * 2)(Insn(code=0xB7), Insn(code=0x95))
    opts = ProgLoadOpts(sz=ctypes.sizeof(ProgLoadOpts), expected_attach_type=attach_type,
                        attach_btf_id=btf_id)  # fmt: skip
    tracing = 26  # BPF_PROG_TYPE_TRACING
    prog = lib.bpf_prog_load(
        tracing, b"h2_reference", b"GPL", ctypes.addressof(insns), 2, ctypes.addressof(opts)
    )
    if prog < 0:
        return False, f"bpf_prog_load: {os.strerror(-prog)}"
    try:
        link = lib.bpf_raw_tracepoint_open(None, prog)
        if link < 0:
            return False, f"bpf_raw_tracepoint_open: {os.strerror(-link)}"
        os.close(link)
        return True, "attached"
    finally:
        os.close(prog)


def ours(kind: str, name: str = "engine_probe") -> list[dict[str, object]]:
    """Programs or maps named `name`, from bpftool."""
    out = subprocess.run(
        ["bpftool", kind, "list", "-j"], capture_output=True, text=True, check=True
    )
    return [p for p in json.loads(out.stdout or "[]") if p.get("name") == name]


PRESENT = (
    "root",
    "bcc",
    "btf",
    "tracefs",
    "tracepoint",
    "raw_tracepoint",
    "uprobe",
    "uretprobe",
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
def test_kprobes_agree_with_the_kernel_config(feature: str) -> None:
    result = probe(feature)
    assert result.ok is HAS_KPROBES, result
    if not HAS_KPROBES:
        assert "CONFIG_KPROBES" in result.detail
        assert result.remedy == (
            "use a tracepoint alternative, or a kernel built with CONFIG_KPROBES"
        )


@pytest.mark.parametrize("feature", ["fentry", "fexit"])
def test_fentry_agrees_with_libbpf(feature: str) -> None:
    """probe() tries vfs_read; libbpf tries the same: both attach, or both are refused."""
    works, why = libbpf_attaches(feature, "vfs_read")
    result = probe(feature)
    assert result.ok is works, (result, why)
    if works:
        assert re.fullmatch(rf"attached {feature} to vfs_read \(BTF id \d+\)", result.detail)
    else:
        assert result.detail.startswith(("bpf(BPF_PROG_LOAD): ", "bpf(BPF_RAW_TRACEPOINT_OPEN")), (
            result,
            why,
        )
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


def test_uprobes_attach_at_the_exact_binary_and_symbol() -> None:
    """Through the uprobe PMU at the symbol's file offset; a bad target is a result, not a raise."""
    libc = elf.resolve_library("libc")
    got = can_attach("uretprobe", f"{libc}:getaddrinfo")
    assert got.ok and got.detail.startswith(f"attached a uretprobe to {libc}:getaddrinfo"), got
    sym = elf.load(libc).function("getaddrinfo")
    assert f"file offset {elf.file_offset(libc, sym.address):#x}" in got.detail
    missing = can_attach("uprobe", "libc:getaddrinf")
    assert not missing.ok and "did you mean 'getaddrinfo'" in missing.detail
    assert can_attach("uprobe", "/etc/hostname:main").detail == "not an ELF file: /etc/hostname"
    assert not can_attach("uprobe", f"{libc}:getpid+100000").ok  # past the function's end


def test_unknown_kind_or_feature_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="uprobes"):
        can_attach("uprobes", "x")
    with pytest.raises(UsageError, match="kfunc"):
        probe("kfunc")


def test_nothing_stays_loaded_and_no_fd_leaks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Named for this test alone (another engine beside it loads its own `engine_probe`s):
    after every probe none of its programs or maps is left."""
    name = f"engine_t{os.getpid() % 10**7}"
    monkeypatch.setattr(capabilities, "PROG_NAME", name.encode())
    fds = len(os.listdir("/proc/self/fd"))
    probe_all()
    can_attach("tracepoint", "sock/nope")
    can_attach("raw_tracepoint", "no_such_event_xyz")
    assert len(os.listdir("/proc/self/fd")) == fds
    assert ours("prog", name) == []
    assert ours("map", name) == []
    # the name reached the kernel (else the check above could not fail)
    import contextlib

    with contextlib.ExitStack() as stack:
        capabilities._load(stack, 5)  # BPF_PROG_TYPE_TRACEPOINT, held until the block ends
        assert len(ours("prog", name)) == 1


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
