"""The VM kernel suite's requirement: a kernel with kprobes (Debian's stock 6.1 and 6.12).

This machine's kernel has neither kprobes nor fentry, so here every test of tests/vm skips
with one reason; `make test-vm` (scripts/vm-kernels.sh) boots the stock kernels under QEMU
and runs them there (ENGINE_VM_KERNEL is set), where a missing requirement fails instead:
no test is skipped in both places.
"""

from __future__ import annotations

import os

import pytest

from tests.kernel.conftest import kernel_requirements

IN_VM = bool(os.environ.get("ENGINE_VM_KERNEL"))
KPROBE_PMU = "/sys/bus/event_source/devices/kprobe"
SKIP_REASON = "needs kprobes: runs in make test-vm"


@pytest.fixture(scope="session")
def vm_kernel() -> None:
    """Skip here (no kprobes); fail inside the VM when anything the tests need is missing."""
    reason = kernel_requirements()
    if reason is None and not os.path.isdir(KPROBE_PMU):
        reason = f"{SKIP_REASON} (no {KPROBE_PMU})"
    if reason is None:
        return
    if IN_VM:
        pytest.fail(f"inside the VM kernel suite, but: {reason}", pytrace=False)
    pytest.skip(SKIP_REASON if SKIP_REASON in reason else f"{SKIP_REASON}; and {reason}")
