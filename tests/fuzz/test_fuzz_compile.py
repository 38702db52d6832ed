"""Every accepted spec compiles and passes the verifier: mutated specs through clang (root).

A generated spec that validates against the running kernel is written to a file and checked
by `engine validate --compile` in a child process (so a compiler that ends its process cannot
take the test run with it): every alternative of every probe, in every mode, compiled with the
whole program and verifier-loaded; fentry/fexit loads this kernel refuses are reported, not
failed. Skips without root, bcc or kernel headers. FUZZ_COMPILE_EXAMPLES sets the sample.
"""

from __future__ import annotations

import os
import pathlib
import platform
import subprocess
import sys
import tempfile

import pytest
from fuzz_mutate import built_specs, mutated_specs, mutated_texts
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine.errors import SpecError
from engine.plan import planner
from engine.spec.loader import load_text
from engine.spec.schema import check_schema

ROOT = pathlib.Path(__file__).resolve().parents[2]
LONG = os.environ.get("FUZZ_LONG") == "1"
EXAMPLES = int(os.environ.get("FUZZ_COMPILE_EXAMPLES", "3"))
OK = (": compiled, verifier ok", ": compiled; load refused by this kernel")


def _requirements() -> str | None:
    if os.geteuid() != 0:
        return "needs root: loads BPF programs"
    try:
        import bcc  # noqa: F401
    except ImportError as exc:
        return f"needs bcc: {exc}"
    build = pathlib.Path("/lib/modules") / platform.release() / "build"
    if not build.exists():
        return f"needs kernel headers at {build}"
    if not os.path.exists(planner.VMLINUX):
        return f"needs {planner.VMLINUX}"
    return None


pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(_requirements() is not None, reason=str(_requirements())),
]


def accepted(text: str) -> bool:
    try:
        document = load_text(text, "fuzz.yaml")
        if check_schema(document):
            return False
        planner.plan(document)
    except SpecError:
        return False
    return True


@settings(
    max_examples=EXAMPLES,
    derandomize=not LONG,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
@given(
    st.one_of(
        mutated_texts(), mutated_specs(edits=2), mutated_specs(sites_only=True), built_specs()
    )
)
def test_accepted_specs_compile_and_load(text: str) -> None:
    assume(accepted(text))
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "engine.cli", "validate", "--compile", f.name],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=600,
        )
    finally:
        os.unlink(f.name)
    checks = [line for line in done.stdout.splitlines() if ": probe '" in line]
    bad = [line for line in checks if not any(ok in line for ok in OK)]
    assert done.returncode == 0 and checks and not bad, f"{text}\n---\n{done.stdout}{done.stderr}"
