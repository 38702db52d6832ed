"""Measure what the running kernel offers, by really loading and attaching tiny BPF programs.

Probing goes through raw bpf(2) and perf_event_open(2) syscalls via ctypes, so it needs neither
bcc nor clang nor headers: `engine doctor` works on a machine that cannot compile yet, and the
runtime can choose between a spec's attach alternatives by trying each one for real (a kernel's
config, not its version, decides what attaches). Every fd is closed before a probe returns, so
nothing stays loaded or attached.
"""

from __future__ import annotations

import ctypes
import fcntl
import importlib
import mmap
import os
import platform
import re
import subprocess
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Callable

from engine.attach import KINDS as ATTACH_KINDS
from engine.attach import AttachKind, Mechanism, binary, perf
from engine.errors import EngineError, UsageError
from engine.kernel import elf
from engine.kernel.btf import Btf, BtfError, Kind


@dataclass(frozen=True)
class Probe:
    """One measurement: whether it worked, what was tried (or the error), how to fix it."""

    ok: bool
    detail: str
    remedy: str = ""


# The machine, then every attach kind (registry order: measured by can_attach), then buffers.
LOCAL_FEATURES = ("root", "bcc", "btf", "headers", "tracefs")
BUFFERS = ("ringbuf", "perf_buffer")
KINDS = tuple(ATTACH_KINDS)  # every attach kind is a feature measured by can_attach
FEATURES = (*LOCAL_FEATURES, *KINDS, *BUFFERS)

VMLINUX = "/sys/kernel/btf/vmlinux"
PROG_NAME = b"engine_probe"  # how our programs and maps show up in `bpftool prog list`
NEEDS_ROOT = "needs root (or CAP_BPF and CAP_PERFMON)"
ROOT_REMEDY = "run as root (sudo), or grant CAP_BPF and CAP_PERFMON"
TRACEFS_ROOTS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
KPROBE_PMU = "/sys/bus/event_source/devices/kprobe"
UPROBE_PMU = "/sys/bus/event_source/devices/uprobe"
SYSCALLS = {"x86_64": (321, 298), "aarch64": (280, 241)}  # machine -> (bpf, perf_event_open)

# Kernel ABI numbers (include/uapi/linux/bpf.h and perf_event.h).
BPF_MAP_CREATE, BPF_MAP_UPDATE_ELEM, BPF_PROG_LOAD, BPF_RAW_TRACEPOINT_OPEN = 0, 2, 5, 17
PROG_KPROBE, PROG_TRACEPOINT, PROG_RAW_TRACEPOINT, PROG_TRACING = 2, 5, 17, 26
PROG_PERF_EVENT = 7
MAP_PERF_EVENT_ARRAY, MAP_RINGBUF = 4, 27
PERF_TYPE_SOFTWARE, PERF_TYPE_TRACEPOINT, PERF_COUNT_SW_BPF_OUTPUT = 1, 2, 10
PERF_SAMPLE_RAW, PERF_FLAG_FD_CLOEXEC, PERF_EVENT_IOC_SET_BPF = 1 << 10, 8, 0x40042408


class BpfInsn(ctypes.Structure):
    """struct bpf_insn; `regs` packs dst_reg (low nibble) and src_reg (high nibble)."""

    _fields_ = [("code", ctypes.c_uint8), ("regs", ctypes.c_uint8),
                ("off", ctypes.c_int16), ("imm", ctypes.c_int32)]  # fmt: skip


class ProgLoadAttr(ctypes.Structure):
    """union bpf_attr, BPF_PROG_LOAD part, up to attach_btf_id (the kernel zero-fills the rest)."""

    _fields_ = [
        ("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64), ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32), ("prog_name", ctypes.c_char * 16),
        ("prog_ifindex", ctypes.c_uint32), ("expected_attach_type", ctypes.c_uint32),
        ("prog_btf_fd", ctypes.c_uint32), ("func_info_rec_size", ctypes.c_uint32),
        ("func_info", ctypes.c_uint64), ("func_info_cnt", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32), ("line_info", ctypes.c_uint64),
        ("line_info_cnt", ctypes.c_uint32), ("attach_btf_id", ctypes.c_uint32),
    ]  # fmt: skip


class MapCreateAttr(ctypes.Structure):
    """union bpf_attr, BPF_MAP_CREATE part, up to map_name."""

    _fields_ = [
        ("map_type", ctypes.c_uint32), ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32), ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32), ("inner_map_fd", ctypes.c_uint32),
        ("numa_node", ctypes.c_uint32), ("map_name", ctypes.c_char * 16),
    ]  # fmt: skip


class MapElemAttr(ctypes.Structure):
    """union bpf_attr, BPF_MAP_UPDATE_ELEM part."""

    _fields_ = [("map_fd", ctypes.c_uint32), ("key", ctypes.c_uint64),
                ("value", ctypes.c_uint64), ("flags", ctypes.c_uint64)]  # fmt: skip


class RawTracepointAttr(ctypes.Structure):
    """union bpf_attr, BPF_RAW_TRACEPOINT_OPEN part; name 0 attaches a tracing (fentry) prog."""

    _fields_ = [("name", ctypes.c_uint64), ("prog_fd", ctypes.c_uint32)]


class PerfEventAttr(ctypes.Structure):
    """struct perf_event_attr up to config2 (PERF_ATTR_SIZE_VER1, accepted by every kernel)."""

    _fields_ = [
        ("type", ctypes.c_uint32), ("size", ctypes.c_uint32), ("config", ctypes.c_uint64),
        ("sample_period", ctypes.c_uint64), ("sample_type", ctypes.c_uint64),
        ("read_format", ctypes.c_uint64), ("flags", ctypes.c_uint64),
        ("wakeup_events", ctypes.c_uint32), ("bp_type", ctypes.c_uint32),
        ("config1", ctypes.c_uint64), ("config2", ctypes.c_uint64),
    ]  # fmt: skip


class _Fail(Exception):
    """A probe step failed; the message is the Probe detail."""


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _syscall(label: str, nr: int, *args: object) -> int:
    """Call syscall(nr, ...) with every integer widened to long; raise _Fail with errno text."""
    wide = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    ret = int(_libc.syscall(ctypes.c_long(nr), *wide))
    if ret < 0:
        raise _Fail(f"{label}: {os.strerror(ctypes.get_errno())}")
    return ret


def _nr(index: int) -> int:
    """Syscall number (0: bpf, 1: perf_event_open); they differ per architecture."""
    machine = platform.machine()
    if machine not in SYSCALLS:
        raise _Fail(f"no syscall numbers for architecture {machine}")
    return SYSCALLS[machine][index]


def _bpf(stack: ExitStack, cmd_name: str, cmd: int, attr: ctypes.Structure) -> int:
    """bpf(cmd, &attr); the returned fd is closed when `stack` unwinds."""
    fd = _syscall(f"bpf({cmd_name})", _nr(0), cmd, ctypes.pointer(attr), ctypes.sizeof(attr))
    stack.callback(os.close, fd)
    return fd


def _perf_open(
    stack: ExitStack, what: str, type_: int, config: int, config1: int = 0, config2: int = 0
) -> int:
    """perf_event_open a sampling event (pid -1, first allowed cpu), closed when `stack` unwinds."""
    attr = PerfEventAttr(type=type_, size=ctypes.sizeof(PerfEventAttr), config=config,
                         config1=config1, config2=config2, sample_period=1,
                         sample_type=PERF_SAMPLE_RAW, wakeup_events=1)  # fmt: skip
    cpu = min(os.sched_getaffinity(0))
    fd = _syscall(
        f"perf_event_open({what})", _nr(1), ctypes.pointer(attr), -1, cpu, -1, PERF_FLAG_FD_CLOEXEC
    )
    stack.callback(os.close, fd)
    return fd


def _kern_version() -> int:
    """LINUX_VERSION_CODE of the running kernel; kernels before 5.0 demand it for kprobes."""
    nums = [int(n) for n in re.findall(r"\d+", platform.release())[:3]] + [0, 0, 0]
    return (nums[0] << 16) + (nums[1] << 8) + min(nums[2], 255)


def _load(stack: ExitStack, prog_type: int, attach_type: int = 0, btf_id: int = 0) -> int:
    """Load `r0 = 0; exit` as prog_type; on failure the detail carries the verifier's first line."""
    insns = (BpfInsn * 2)(BpfInsn(code=0xB7), BpfInsn(code=0x95))  # mov64 r0, 0; exit
    license, log = ctypes.create_string_buffer(b"GPL"), ctypes.create_string_buffer(65536)
    attr = ProgLoadAttr(
        prog_type=prog_type, insn_cnt=2, insns=ctypes.addressof(insns),
        license=ctypes.addressof(license), log_level=1, log_size=len(log),
        log_buf=ctypes.addressof(log), kern_version=_kern_version(), prog_name=PROG_NAME,
        expected_attach_type=attach_type, attach_btf_id=btf_id,
    )  # fmt: skip
    try:
        return _bpf(stack, "BPF_PROG_LOAD", BPF_PROG_LOAD, attr)
    except _Fail as exc:
        first = log.value.decode(errors="replace").strip().splitlines()
        raise _Fail(f"{exc} (verifier: {first[0]})" if first else str(exc)) from None


def _set_bpf(perf_fd: int, prog_fd: int) -> None:
    """Attach prog to a perf event (kprobe or tracepoint) with PERF_EVENT_IOC_SET_BPF."""
    try:
        fcntl.ioctl(perf_fd, PERF_EVENT_IOC_SET_BPF, prog_fd)
    except OSError as exc:
        raise _Fail(f"ioctl(PERF_EVENT_IOC_SET_BPF): {os.strerror(exc.errno or 0)}") from None


def _privileged() -> bool:
    """euid 0, or both CAP_BPF (39) and CAP_PERFMON (38) effective."""
    if os.geteuid() == 0:
        return True
    with open("/proc/self/status") as status:
        caps = next((ln.split()[1] for ln in status if ln.startswith("CapEff:")), "0")
    need = (1 << 39) | (1 << 38)
    return int(caps, 16) & need == need


def _tracefs() -> str | None:
    """The mounted tracefs root; older systems only have it under debugfs."""
    return next((r for r in TRACEFS_ROOTS if os.path.isdir(f"{r}/events")), None)


def _tracepoint_id(target: str) -> int:
    """The perf event id of tracepoint "category/event", read from tracefs."""
    if not re.fullmatch(r"\w+/\w+", target):
        raise _Fail(f"tracepoint {target!r} is not 'category/event'")
    root = _tracefs()
    if root is None:
        raise _Fail("tracefs is not mounted (no /sys/kernel/tracing/events)")
    try:
        with open(f"{root}/events/{target}/id") as f:
            return int(f.read())
    except FileNotFoundError:
        raise _Fail(f"no tracepoint {target} (no {root}/events/{target}/id)") from None


def _attach_tracepoint(stack: ExitStack, _kind: AttachKind, target: str) -> str:
    """TRACEPOINT prog on a perf tracepoint event, as bcc's TRACEPOINT_PROBE attaches."""
    tp_id = _tracepoint_id(target)
    prog = _load(stack, PROG_TRACEPOINT)
    _set_bpf(_perf_open(stack, f"tracepoint {target}", PERF_TYPE_TRACEPOINT, tp_id), prog)
    return f"attached a tracepoint program to {target}"


def _attach_raw_tracepoint(stack: ExitStack, _kind: AttachKind, target: str) -> str:
    """RAW_TRACEPOINT prog opened on the event by name (BPF_RAW_TRACEPOINT_OPEN)."""
    if not re.fullmatch(r"\w+", target):
        raise _Fail(f"raw tracepoint {target!r} is not an event name")
    prog = _load(stack, PROG_RAW_TRACEPOINT)
    name = ctypes.create_string_buffer(target.encode())
    attr = RawTracepointAttr(name=ctypes.addressof(name), prog_fd=prog)
    _bpf(stack, f"BPF_RAW_TRACEPOINT_OPEN {target}", BPF_RAW_TRACEPOINT_OPEN, attr)
    return f"attached a raw tracepoint program to {target}"


def _pmu_retprobe_bit(pmu: str = KPROBE_PMU) -> int:
    """Bit number of `retprobe` in a k/uprobe PMU's config (format file says e.g. 'config:0')."""
    with open(f"{pmu}/format/retprobe") as f:
        return int(f.read().split(":")[1].split("-")[0])


def _attach_kprobe(stack: ExitStack, attach_kind: AttachKind, target: str) -> str:
    """Through the kprobe PMU (perf_event_open), else the legacy tracefs kprobe_events."""
    kind, ret = attach_kind.name, attach_kind.returns
    if not re.fullmatch(r"[A-Za-z_][\w.]*", target):
        raise _Fail(f"{target!r} is not a kernel function name")
    root = _tracefs()
    legacy = f"{root}/kprobe_events" if root else None
    if not os.path.isdir(KPROBE_PMU) and not (legacy and os.path.exists(legacy)):
        raise _Fail(
            f"no kprobe PMU ({KPROBE_PMU}) and no tracefs kprobe_events: "
            "kernel built without CONFIG_KPROBES"
        )
    errors = []
    if os.path.isdir(KPROBE_PMU):
        try:
            with ExitStack() as pmu_stack:  # closed before trying the legacy interface
                prog = _load(pmu_stack, PROG_KPROBE)
                with open(f"{KPROBE_PMU}/type") as f:
                    pmu_type = int(f.read())
                func = ctypes.create_string_buffer(target.encode())
                config = (1 << _pmu_retprobe_bit()) if ret else 0
                what = f"{kind} {target}"
                perf = _perf_open(pmu_stack, what, pmu_type, config, ctypes.addressof(func))
                _set_bpf(perf, prog)
            return f"attached a {kind} to {target} (kprobe PMU)"
        except (_Fail, OSError, ValueError) as exc:
            errors.append(str(exc))
    if legacy and os.path.exists(legacy):
        try:
            _attach_legacy_kprobe(stack, legacy, target, ret)
            return f"attached a {kind} to {target} (tracefs kprobe_events)"
        except (_Fail, OSError) as exc:
            errors.append(str(exc))
    raise _Fail("; ".join(errors))


def _attach_legacy_kprobe(stack: ExitStack, kprobe_events: str, target: str, ret: bool) -> None:
    """Create a kprobe event in tracefs (like bcc), attach through its id; unwinding removes it."""
    event = f"kprobes/engine_probe_{os.getpid()}"

    def write(line: str) -> None:
        try:
            with open(kprobe_events, "a") as f:
                f.write(line + "\n")
        except OSError as exc:
            raise _Fail(f"write {line!r} to {kprobe_events}: {exc.strerror}") from None

    write(f"{'r' if ret else 'p'}:{event} {target}")
    stack.callback(
        write, f"-:{event}"
    )  # registered first, so it runs after the perf fd below is closed
    prog = _load(stack, PROG_KPROBE)
    tp_id = _tracepoint_id(event)
    _set_bpf(_perf_open(stack, event, PERF_TYPE_TRACEPOINT, tp_id), prog)


def _attach_tracing(stack: ExitStack, attach_kind: AttachKind, target: str) -> str:
    """fentry/fexit: a TRACING prog bound to the BTF id of FUNC `target`, attached via raw_tp."""
    kind, attach_type = attach_kind.name, attach_kind.capability.attach_type
    try:
        found = Btf.load(path=VMLINUX).find(target, Kind.FUNC)
    except BtfError as exc:
        raise _Fail(str(exc)) from None
    if found is None:
        raise _Fail(f"no FUNC {target} in {VMLINUX}")
    prog = _load(stack, PROG_TRACING, attach_type, found.id)
    attr = RawTracepointAttr(name=0, prog_fd=prog)
    _bpf(stack, f"BPF_RAW_TRACEPOINT_OPEN {kind} {target}", BPF_RAW_TRACEPOINT_OPEN, attr)
    return f"attached {kind} to {target} (BTF id {found.id})"


def _attach_uprobe(stack: ExitStack, attach_kind: AttachKind, target: str) -> str:
    """Through the uprobe PMU: config1 points to the binary's path, config2 is the file offset
    of the probed instruction (from the ELF program headers), the retprobe bit for a return
    probe. `target` is BINARY:PLACE (a library name, or the absolute path a plan carries), or
    what the kind's `location` places itself (a USDT probe's note)."""
    kind = attach_kind.name
    if not os.path.isdir(UPROBE_PMU):
        raise _Fail(f"no uprobe PMU ({UPROBE_PMU}): kernel built without CONFIG_UPROBES")
    try:
        path, place, offset = _uprobe_place(attach_kind, target)
    except (binary.BinaryError, EngineError) as exc:
        raise _Fail(str(exc)) from None
    prog = _load(stack, PROG_KPROBE)
    with open(f"{UPROBE_PMU}/type") as f:
        pmu_type = int(f.read())
    name = ctypes.create_string_buffer(path.encode())
    config = (1 << _pmu_retprobe_bit(UPROBE_PMU)) if attach_kind.returns else 0
    what = f"{kind} {place}"
    _set_bpf(_perf_open(stack, what, pmu_type, config, ctypes.addressof(name), offset), prog)
    return f"attached a {kind} to {place} (uprobe PMU, file offset {offset:#x})"


def _uprobe_place(attach_kind: AttachKind, target: str) -> tuple[str, str, int]:
    """(binary path, the target as said, file offset) of a uprobe target: the kind's own
    `location`, else BINARY:PLACE found in its binary."""
    located = attach_kind.location(target)
    if located is not None:
        return located[0], target, located[1]
    found = binary.locate(binary.parse(target), os.getcwd())
    offset = elf.file_offset(found.path, found.address)
    if offset is None:
        raise _Fail(f"{target}: {found.address:#x} is in no executable segment of {found.path}")
    return found.path, found.text, offset


def _attach_perf_event(stack: ExitStack, _kind: AttachKind, target: str) -> str:
    """PERF_EVENT prog on a sampling perf event; target `TYPE:EVENT`, or `*`: every event
    engine.attach.perf names, saying which open (doctor's line)."""
    if target == "*":
        opened = {
            kind: [n for n, (c, _) in table.items() if perf_event_opens(ev_type, c) == "yes"]
            for kind, (ev_type, table) in perf.EVENTS.items()
        }
        if not opened["software"]:
            raise _Fail("no software perf event opens (CONFIG_PERF_EVENTS?)")
        hardware = ", ".join(opened["hardware"]) or "none (no CPU PMU)"
        return f"software: {len(opened['software'])} events open; hardware: {hardware}"
    try:
        sampling = _kind.parse_target(target)
    except ValueError as exc:  # a TargetError
        raise _Fail(str(exc)) from None
    if sampling.ev_type == perf.TYPE_HARDWARE and not os.path.isdir(perf.PMU_CPU):
        raise _Fail(
            f"a hardware event needs a CPU PMU, which this machine lacks ({perf.PMU_CPU} is "
            "missing: a VM without PMU passthrough?); software events work (engine explain perf:)"
        )
    prog = _load(stack, PROG_PERF_EVENT)
    _set_bpf(_perf_open(stack, "perf_event_open", sampling.ev_type, sampling.config), prog)
    return f"attached a perf-event program to {target}"


def perf_event_opens(ev_type: int, config: int) -> str:
    """Whether this perf event opens here ("yes", or why not), as root, on the first CPU."""
    try:
        with ExitStack() as stack:
            _perf_open(stack, f"perf event {ev_type}:{config}", ev_type, config)
        return "yes"
    except (_Fail, OSError) as exc:
        return f"no: {exc}"


# How each mechanism a kind declares (engine.attach.base.Capability) attaches for real.
_MECHANISMS: dict[Mechanism, Callable[[ExitStack, AttachKind, str], str]] = {
    Mechanism.PERF_TRACEPOINT: _attach_tracepoint,
    Mechanism.RAW_TRACEPOINT: _attach_raw_tracepoint,
    Mechanism.KPROBE: _attach_kprobe,
    Mechanism.TRACING: _attach_tracing,
    Mechanism.UPROBE: _attach_uprobe,
    Mechanism.PERF_EVENT: _attach_perf_event,
}


def _kernel_step(what: Callable[[ExitStack], str], remedy: str) -> Probe:
    """Run one kernel-touching step: needs privilege; any failure becomes ok=False, not a raise."""
    if not _privileged():
        return Probe(False, NEEDS_ROOT, ROOT_REMEDY)
    try:
        with ExitStack() as stack:
            return Probe(True, what(stack))
    except (_Fail, OSError, ValueError, ImportError) as exc:
        return Probe(False, str(exc), remedy)


def can_attach(kind: str, target: str) -> Probe:
    """Try attaching a no-op program of `kind` to exactly `target`, then detach it again."""
    if kind not in ATTACH_KINDS:
        raise UsageError(f"unknown attach kind {kind!r} (expected one of {', '.join(KINDS)})")
    attach_kind = ATTACH_KINDS[kind]
    attach = _MECHANISMS[attach_kind.capability.mechanism]
    return _kernel_step(
        lambda stack: attach(stack, attach_kind, target), attach_kind.capability.remedy
    )


def _probe_kind(kind: AttachKind) -> Probe:
    """Attach `kind` to the target it declares for doctor (a tracepoint: the first present)."""
    targets = kind.capability.targets
    if kind.capability.mechanism is Mechanism.PERF_TRACEPOINT:
        root = _tracefs() or TRACEFS_ROOTS[0]
        exists = [t for t in targets if os.path.exists(f"{root}/events/{t}/id")]
        targets = tuple(exists) or targets  # none: attaching says which one is missing
    return can_attach(kind.name, targets[0])


def _probe_root() -> Probe:
    """BPF loading and perf events need euid 0 or CAP_BPF with CAP_PERFMON."""
    if os.geteuid() == 0:
        return Probe(True, "euid 0")
    if _privileged():
        return Probe(True, f"euid {os.geteuid()} with CAP_BPF and CAP_PERFMON")
    return Probe(False, f"euid {os.geteuid()} without CAP_BPF and CAP_PERFMON", ROOT_REMEDY)


def _probe_bcc() -> Probe:
    """The runner compiles and loads through bcc's Python module (Debian python3-bpfcc)."""
    remedy = "run scripts/setup.sh (python3-bpfcc, in a --system-site-packages venv)"
    try:
        bcc = importlib.import_module("bcc")
    except Exception as exc:  # a broken libbcc raises more than ImportError
        return Probe(False, f"import bcc: {exc}", remedy)
    version = getattr(bcc, "__version__", None)
    if not version:
        try:
            query = ["dpkg-query", "-W", "-f=${Version}", "python3-bpfcc"]
            out = subprocess.run(query, capture_output=True, text=True, check=True)
            version = out.stdout.strip() or "unknown"
        except (OSError, subprocess.CalledProcessError):
            version = "unknown"
    return Probe(True, f"bcc {version} ({os.path.dirname(bcc.__file__ or '?')})")


def _probe_btf() -> Probe:
    """Specs resolve names and offsets against the kernel's own BTF."""
    remedy = "use a kernel built with CONFIG_DEBUG_INFO_BTF, or pass --btf FILE"
    try:
        with open(VMLINUX, "rb") as f:
            magic = f.read(2)
    except OSError as exc:
        return Probe(False, f"{VMLINUX}: {exc.strerror}", remedy)
    if magic not in (b"\x9f\xeb", b"\xeb\x9f"):
        return Probe(False, f"{VMLINUX}: no BTF magic 0xeB9F (found {magic.hex()})", remedy)
    return Probe(True, f"{VMLINUX} ({os.path.getsize(VMLINUX) / 1e6:.1f} MB, magic 0xeB9F)")


def _probe_headers() -> Probe:
    """bcc compiles against the kernel header tree at /lib/modules/$(uname -r)/build."""
    build = f"/lib/modules/{platform.release()}/build"
    remedy = "run scripts/setup.sh (installs headers or links Debian's generic ones)"
    if not os.path.isdir(f"{build}/include"):
        return Probe(False, f"no {build}/include", remedy)
    where = f" -> {os.readlink(build)}" if os.path.islink(build) else ""
    return Probe(True, f"{build}{where}")


def _probe_tracefs() -> Probe:
    """Tracepoint ids and formats come from tracefs."""
    root = _tracefs()
    if root:
        return Probe(True, f"{root}/events")
    remedy = "mount -t tracefs tracefs /sys/kernel/tracing"
    try:
        os.listdir(TRACEFS_ROOTS[0])
    except PermissionError:
        return Probe(False, f"{TRACEFS_ROOTS[0]}: permission denied", "run as root")
    except OSError:
        pass
    return Probe(False, f"no {' or '.join(r + '/events' for r in TRACEFS_ROOTS)}", remedy)


def _make_ringbuf(stack: ExitStack) -> str:
    """The preferred event channel (Linux 5.8+)."""
    size = max(4096, mmap.PAGESIZE)  # a power of 2 and a page multiple
    attr = MapCreateAttr(map_type=MAP_RINGBUF, max_entries=size, map_name=PROG_NAME)
    _bpf(stack, "BPF_MAP_CREATE ringbuf", BPF_MAP_CREATE, attr)
    return f"created a BPF_MAP_TYPE_RINGBUF map of {size} bytes"


def _make_perf_buffer(stack: ExitStack) -> str:
    """The fallback event channel: a perf event array holding a BPF-output event."""
    attr = MapCreateAttr(
        map_type=MAP_PERF_EVENT_ARRAY, key_size=4, value_size=4, max_entries=1, map_name=PROG_NAME
    )
    map_fd = _bpf(stack, "BPF_MAP_CREATE perf_event_array", BPF_MAP_CREATE, attr)
    perf_fd = _perf_open(
        stack, "PERF_COUNT_SW_BPF_OUTPUT", PERF_TYPE_SOFTWARE, PERF_COUNT_SW_BPF_OUTPUT
    )
    key, value = ctypes.c_uint32(0), ctypes.c_uint32(perf_fd)
    elem = MapElemAttr(map_fd=map_fd, key=ctypes.addressof(key), value=ctypes.addressof(value))
    _bpf(stack, "BPF_MAP_UPDATE_ELEM", BPF_MAP_UPDATE_ELEM, elem)
    return "created a PERF_EVENT_ARRAY map holding a PERF_COUNT_SW_BPF_OUTPUT event"


_LOCAL: dict[str, Callable[[], Probe]] = {
    "root": _probe_root, "bcc": _probe_bcc, "btf": _probe_btf,
    "headers": _probe_headers, "tracefs": _probe_tracefs,
}  # fmt: skip


def probe(feature: str) -> Probe:
    """Measure one feature now (nothing is cached: capabilities can change under us)."""
    if feature in _LOCAL:
        return _LOCAL[feature]()
    if feature in ATTACH_KINDS:
        return _probe_kind(ATTACH_KINDS[feature])
    if feature == "ringbuf":
        return _kernel_step(_make_ringbuf, "needs Linux 5.8+ (use the perf buffer instead)")
    if feature == "perf_buffer":
        return _kernel_step(
            _make_perf_buffer, "check kernel.perf_event_paranoid and CONFIG_PERF_EVENTS"
        )
    raise UsageError(f"unknown feature {feature!r} (expected one of {', '.join(FEATURES)})")


def probe_all() -> dict[str, Probe]:
    """Every feature, in FEATURES order."""
    return {feature: probe(feature) for feature in FEATURES}


__all__ = ["FEATURES", "KINDS", "Probe", "can_attach", "probe", "probe_all"]
