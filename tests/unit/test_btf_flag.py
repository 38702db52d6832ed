"""`--btf FILE` is honoured: a synthetic kernel's offsets and constants reach the rendered C.

tests/btfwriter.py's synthetic kernel puts `struct sock`'s `__sk_common` at byte 24 (0 in real
kernels), lays `sock_common` and the inet_sock_set_state record out differently and numbers
the TCP states otherwise. Rendering specs/tcpconnect.yaml against it and against the 6.18
fixture must give each file's own numbers: were `--btf` ignored (the running kernel or the
fixture used instead), the synthetic expectations could not hold.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import btfwriter as W
import pytest

from engine.codegen import render
from engine.plan import planner
from engine.plan.bind import bind
from engine.spec.loader import load_document
from engine.verbs.validate import run_validate

ROOT = Path(__file__).resolve().parents[2]
TCPCONNECT = ROOT / "specs" / "tcpconnect.yaml"
# What the 6.18 fixture says (bpftool btf dump of tests/fixtures/btf/linux-6.18.44-fc.btf.xz).
REAL_SOCK = {
    "skc_family": 16,
    "skc_dport": 12,
    "skc_daddr": 0,
    "skc_rcv_saddr": 4,
    "skc_v6_daddr": 56,
    "skc_v6_rcv_saddr": 72,
}
REAL_TP = {"protocol": 30, "oldstate": 16, "newstate": 20, "skaddr": 8}
REAL_CONSTANTS = (6, 7, 2)  # IPPROTO_TCP, TCP_CLOSE, TCP_SYN_SENT
READ = re.compile(r"bpf_probe_read_kernel\(&(\S+), (\d+), \(void \*\)\((\w+) \+ (\d+)\)\);")
# a tracepoint record's aligned field: a plain load from the context
CTX_LOAD = re.compile(r"= \*\([us](\d+) \*\)\((ctx_addr) \+ (\d+)\);")


def rendered(btf: str, alternative: int) -> str:
    plan = planner.plan(load_document(str(TCPCONNECT)), btf)
    return render.render_c(bind(plan, choices={"connect": alternative}))


def reads(c: str) -> dict[str, set[tuple[int, int]]]:
    """(size, offset) of every kernel read in the C, by what it reads from: `ctx_addr` or
    `sk` (any other local: tcpconnect reads only the socket through locals)."""
    out: dict[str, set[tuple[int, int]]] = {"ctx_addr": set(), "sk": set()}
    for _, size, base, off in READ.findall(c):
        out["ctx_addr" if base == "ctx_addr" else "sk"].add((int(size), int(off)))
    for bits, _, off in CTX_LOAD.findall(c):
        out["ctx_addr"].add((int(bits) // 8, int(off)))
    return out


def sock_reads(offsets: dict[str, int]) -> set[tuple[int, int]]:
    """The reads of tcpconnect's fields from a `struct sock` with these member offsets."""
    sizes = {"skc_family": 2, "skc_dport": 2, "skc_daddr": 4, "skc_rcv_saddr": 4,
             "skc_v6_daddr": 16, "skc_v6_rcv_saddr": 16}  # fmt: skip
    return {(sizes[name], off) for name, off in offsets.items()}


def where_constants(c: str) -> tuple[int, ...]:
    """The numbers the tracepoint alternative's `where` compares with, in order."""
    line = next(ln for ln in c.splitlines() if "if (!((v" in ln)
    return tuple(int(n) for n in re.findall(r"== (\d+)U?\)", line))


@pytest.mark.parametrize("alternative", [0, 1], ids=["kretprobe", "tracepoint"])
def test_synthetic_offsets_reach_the_c(synthetic_btf: str, alternative: int) -> None:
    got = reads(rendered(synthetic_btf, alternative))
    assert got["sk"] == sock_reads(W.SOCK)
    if alternative == 1:
        tp = W.INET_SOCK_SET_STATE
        sizes = {"protocol": 2, "oldstate": 4, "newstate": 4, "skaddr": 8}
        assert got["ctx_addr"] == {(sizes[k], off) for k, off in tp.items()}
    else:
        assert got["ctx_addr"] == set()


@pytest.mark.parametrize("alternative", [0, 1], ids=["kretprobe", "tracepoint"])
def test_fixture_offsets_reach_the_c(fixture_btf: str, alternative: int) -> None:
    """The same spec against the 6.18 fixture: its own, different numbers."""
    got = reads(rendered(fixture_btf, alternative))
    assert got["sk"] == sock_reads(REAL_SOCK)
    assert not got["sk"] & sock_reads(W.SOCK)  # the two kernels share no offset
    if alternative == 1:
        sizes = {"protocol": 2, "oldstate": 4, "newstate": 4, "skaddr": 8}
        assert got["ctx_addr"] == {(sizes[k], off) for k, off in REAL_TP.items()}


def test_enum_constants_come_from_the_btf(synthetic_btf: str, fixture_btf: str) -> None:
    synthetic = (W.IPPROTO["IPPROTO_TCP"], W.TCP_STATES["TCP_CLOSE"], W.TCP_STATES["TCP_SYN_SENT"])
    assert where_constants(rendered(synthetic_btf, 1)) == synthetic == (6, 17, 12)
    assert where_constants(rendered(fixture_btf, 1)) == REAL_CONSTANTS


def engine(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip


def test_render_flag_reaches_the_c(synthetic_btf: str) -> None:
    """Through the CLI: `engine render SPEC --btf FILE` plans against FILE."""
    for alternative in ("1", "2"):
        done = engine("render", "specs/tcpconnect.yaml", "--btf", synthetic_btf,
                      "--alternative", alternative)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert reads(done.stdout)["sk"] == sock_reads(W.SOCK)
    assert where_constants(done.stdout) == (6, 17, 12)


def test_validate_against_the_synthetic_kernel(synthetic_btf: str) -> None:
    """What the synthetic kernel lacks is reported, located, against that file."""
    done = engine("validate", "--btf", synthetic_btf, "specs/tcpconnect.yaml", "specs/icmp.yaml",
                  "specs/execsnoop.yaml")  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == [
        "specs/tcpconnect.yaml: ok",
        f"specs/icmp.yaml:11:17: error: no kernel function 'icmp_echo' in {synthetic_btf} "
        "[$.probes[0].attach[0].kprobe]",
        f"specs/icmp.yaml:14:21: error: no tracepoint 'net/net_dev_queue' in {synthetic_btf} "
        "[$.probes[0].attach[1].tracepoint]",
        f"specs/execsnoop.yaml:21:21: error: no tracepoint 'sched/sched_process_exec' in "
        f"{synthetic_btf} [$.probes[0].attach[0].tracepoint]",
        "3 specs checked: 1 valid, 2 invalid",
    ]


def test_validate_reads_members_from_the_given_file(
    synthetic_btf: str, fixture_btf: str, tmp_path: Path
) -> None:
    """`skc_bound_dev_if` is in real kernels' sock_common, not in the synthetic one."""
    spec = tmp_path / "member.yaml"
    text = TCPCONNECT.read_text()
    spec.write_text(text.replace("skc_dport, decode: be16", "skc_bound_dev_if"))
    out = io.StringIO()
    assert run_validate([str(spec)], fixture_btf, "text", out) == 0, out.getvalue()
    out = io.StringIO()
    assert run_validate([str(spec)], synthetic_btf, "text", out) == 1
    line = 1 + text.splitlines().index(
        next(ln for ln in text.splitlines() if "skc_dport, decode: be16" in ln)
    )
    assert out.getvalue().splitlines() == [
        f"{spec}:{line}:37: error: 'struct sock_common' has no member 'skc_bound_dev_if' "
        "[$.probes[0].fields.dport.value]",
        "1 spec checked: 0 valid, 1 invalid",
    ]
