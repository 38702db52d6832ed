"""Where the unit tests get kernel BTF from: the committed fixture, never the running kernel.

tests/fixtures/btf/linux-6.18.44-fc.btf.xz is a 6.18 kernel's vmlinux BTF (engine.kernel.btf
reads .xz itself), so planning and validation tests mean the same on every machine, with or
without /sys/kernel/btf/vmlinux. Tests that must see the live kernel live in tests/kernel.
Planning against a file never reads tracefs, so syscalls/* tracepoints (no BTF record) are
tests/kernel's too.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "btf" / "linux-6.18.44-fc.btf.xz"
BTF = str(FIXTURE)  # as `--btf` and the `btf_path` arguments take it
