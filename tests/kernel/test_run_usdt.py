"""USDT probes for real: tests/specs/live/usdt_demo.yaml on tests/fixtures/usdt/demo.c, built
here with gcc and <sys/sdt.h>, against bpftrace's `usdt:` probe on the SAME run of the program.

The program prints "ready" and waits for a line ("N BASE") before it fires demo:tick N times:
the engine and bpftrace are both attached (each said so) before the first probe fires. Each
row's arguments are exact: the values the C computes from N and BASE, and bpftrace's."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import procs
import pytest
from conftest import CHILD_TIMEOUT, REPO, LineReader
from oracle import Bpftrace

from engine.verbs import verify

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SPEC = REPO / "tests" / "specs" / "live" / "usdt_demo.yaml"
DEMO_C = REPO / "tests" / "fixtures" / "usdt" / "demo.c"
SEM_SPEC = REPO / "tests" / "specs" / "live" / "usdt_sem.yaml"
SEM_C = REPO / "tests" / "fixtures" / "usdt" / "sem.c"  # demo:sem, an is-enabled probe
NAMES = ("alpha", "beta gamma", "")  # demo.c's names[], argument 4 of demo:tick


def expected_ticks(n: int, base: int) -> list[tuple[int, int, int, int]]:
    """demo:tick's (i, neg, big, sh) as demo.c computes them from N and BASE."""
    rows = []
    for i in range(n):
        short = (-base - 3 * i + 2**15) % 2**16 - 2**15  # (short) wraps to 16 bits, signed
        rows.append((i, -(base + i), (base << 32) | i, short))
    return rows


@pytest.fixture(scope="module", params=["-O2", "-O0"])
def demo_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """demo.c built with gcc beside a copy of the spec, whose `./demo` names it: at -O2 the
    probe's arguments are registers and an indexed memory operand (`8@(%r9,%rdx,8)`), at -O0
    stack slots (`-4@-4(%rbp)`)."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is missing: scripts/setup.sh installs it")
    d = tmp_path_factory.mktemp("usdt")
    for name, source in (("demo", DEMO_C), ("sem", SEM_C)):
        subprocess.run(["gcc", request.param, "-g0", "-o", str(d / name), str(source)], check=True)
    shutil.copy(SPEC, d / SPEC.name)
    shutil.copy(SEM_SPEC, d / SEM_SPEC.name)
    return d


class Demo:
    """One run of the demo program, held at its "ready" until `fire`."""

    def __init__(self, binary: Path) -> None:
        self.proc = procs.spawn(
            [str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.pid = self.proc.pid
        self.out = LineReader(self.proc.stdout)
        assert self.out.wait_for(lambda ls: ls[:1] == ["ready"], CHILD_TIMEOUT), "demo not ready"

    def fire(self, *numbers: int) -> str:
        """Let it fire its probes and exit (the hits are in the kernel's buffers then); what
        it said last ("fired N ...")."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(" ".join(map(str, numbers)) + "\n")
        self.proc.stdin.close()
        assert self.proc.wait(CHILD_TIMEOUT) == 0
        assert self.out.wait_for(lambda ls: ls[-1].startswith("fired"), CHILD_TIMEOUT)
        return self.out.lines[-1]


def bpftrace_ticks(binary: Path, pid: int) -> Bpftrace:
    return Bpftrace(
        f"usdt:{binary}:demo:tick /pid == {pid}/ "
        '{ printf("%d %d %d %lu %d %s\\n", pid, arg0, arg1, arg2, arg3, str(arg4)); }'
    )


def test_arguments_equal_bpftrace_on_the_same_run(engine, demo_dir: Path) -> None:
    n, base = 7, 40000  # BASE > 32767: the short argument wraps, the big one uses 48 bits
    demo = Demo(demo_dir / "demo")
    e = engine(str(demo_dir / SPEC.name), "-o", "json", "-p", str(demo.pid))
    oracle = bpftrace_ticks(demo_dir / "demo", demo.pid)
    assert demo.fire(n, base) == f"fired {n}"
    e.wait_rows(lambda rows: len(rows) >= n)
    oracle.wait_line(lambda line: line.startswith(f"{demo.pid} {n - 1} "))
    result = e.stop()
    assert result.code == 0, result.stderr
    rows = result.json_rows()
    ours = [(r["pid"], r["i"], r["neg"], r["big"], r["sh"], r["name"]) for r in rows]
    theirs = []
    for line in filter(None, oracle.stop()):  # it ends with an empty line
        pid, i, neg, big, sh, *name = line.split(" ")
        theirs.append((int(pid), int(i), int(neg), int(big), int(sh), " ".join(name)))
    expected = [(demo.pid, *t, NAMES[t[0] % 3]) for t in expected_ticks(n, base)]
    assert ours == theirs == expected


def test_an_is_enabled_probe_is_raised_in_its_process(engine, demo_dir: Path) -> None:
    """demo:sem fires only while its semaphore is set: bcc raises it in the process `pid:`
    names (the engine alone here, so the program's count proves it); with no pid given the
    run ends before tracing, saying so."""
    n = 5
    sem = Demo(demo_dir / "sem")
    e = engine(str(demo_dir / SEM_SPEC.name), "-o", "json", "-p", str(sem.pid))
    assert sem.fire(n) == f"fired {n} semaphore 1"
    e.wait_rows(lambda rows: len(rows) >= n)
    result = e.stop()
    assert result.code == 0, result.stderr
    assert [(r["pid"], r["i"], r["sq"]) for r in result.json_rows()] == [
        (sem.pid, i, i * i) for i in range(n)
    ]
    after = Demo(demo_dir / "sem")  # nothing left attached that raises it
    assert after.fire(n) == "fired 0 semaphore 0"


def test_an_is_enabled_probe_without_a_process_says_so(engine, demo_dir: Path) -> None:
    e = engine(str(demo_dir / SEM_SPEC.name), ready=False)
    result = e.wait()
    assert result.code == 1
    assert result.err_lines[-1] == (
        f"engine: error: usdt {demo_dir}/sem:demo:sem: demo:sem has a semaphore (an "
        "is-enabled probe): bcc enables it only in one process; give its pid (the "
        "alternative's `pid:` or its option)"
    )


def test_validate_compile_checks_usdt_programs(demo_dir: Path) -> None:
    """`engine validate --compile` gives bcc the probes' argument readers (as `run` does,
    attaching nothing) so the program compiles and verifier-loads; an is-enabled probe's
    readers need its process, so without one it says it was not compiled."""
    out = io.StringIO()
    assert verify.compile_check([str(demo_dir / SPEC.name)], out) == 0, out.getvalue()
    assert "compiled, verifier ok (1 program) in 2 option shapes" in out.getvalue()
    out = io.StringIO()
    assert verify.compile_check([str(demo_dir / SEM_SPEC.name)], out) == 1
    assert f"usdt {demo_dir}/sem:demo:sem) events: not compiled: usdt {demo_dir}/sem:" in (
        out.getvalue()
    )
