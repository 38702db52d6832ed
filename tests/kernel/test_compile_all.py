"""`engine validate --compile` (engine.verbs.verify.compile_check) against the running kernel.

Every attach alternative of every spec, in every output mode, is compiled with bcc and each of
its functions loaded through the verifier, kprobe alternatives included (they load here even
though kprobes cannot attach). Skips without root/bcc/headers; fails instead under CI=true.
"""

from __future__ import annotations

import io
import pathlib
import re
from typing import Callable

import pytest

from engine.errors import EngineError
from engine.kernel import capabilities
from engine.plan import model as M
from engine.plan import planner
from engine.spec.loader import load_document
from engine.verbs import verify

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPECS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "specs").glob("*.yaml"))
GOOD = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "specs" / "good").glob("*.yaml"))
LINE = re.compile(
    r"^(\S+): probe '(\w+)' alternative (\d+) \((\w+) ([^)]*)\) (events|count): (.*)$"
)


def run(paths: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, list[str]]:
    monkeypatch.chdir(ROOT)
    out = io.StringIO()
    code = verify.compile_check(paths, out)
    return code, out.getvalue().splitlines()


def expected(path: str) -> dict[tuple[str, str, int, str], M.Alternative]:
    plan = planner.plan(load_document(str(ROOT / path)))
    modes = ("events", "count") if plan.counted else ("events",)
    return {
        (path, probe.name, i + 1, mode): alt
        for probe in plan.probes
        for i, alt in enumerate(probe.alternatives)
        for mode in modes
    }


def ok_text(alt: M.Alternative) -> str:
    if alt.kind in ("fentry", "fexit") and not capabilities.probe(alt.kind).ok:
        return "compiled; load refused by this kernel"
    n = len(alt.functions)
    return f"compiled, verifier ok ({n} program{'s' if n != 1 else ''})"


def check_report(paths: list[str], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    code, lines = run(paths, monkeypatch)
    want = {k: v for p in paths for k, v in expected(p).items()}
    reported = [LINE.match(x) for x in lines[:-1]]
    assert all(reported), "\n".join(lines)
    got = {(m[1], m[2], int(m[3]), m[6]): m for m in reported if m}
    assert len(got) == len(reported), "a line repeated:\n" + "\n".join(lines)
    assert sorted(got) == sorted(want), "\n".join(lines)
    for key, alt in want.items():
        m = got[key]
        assert (m[4], m[5]) == (alt.kind, ", ".join(alt.targets))
        assert m[7].startswith(ok_text(alt)), m[0]
    assert lines[-1] == f"{len(want)} checked: {len(want)} ok, 0 failed"
    assert code == 0, "\n".join(lines)
    return lines


def test_every_spec_alternative_compiles_and_verifies(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = check_report(SPECS, monkeypatch)
    kinds = {m[4] for m in map(LINE.match, lines[:-1]) if m}
    assert kinds & {"kprobe", "kretprobe"}, "no kprobe alternative was verifier-loaded"
    assert "tracepoint" in kinds
    four = "specs/tcpconnect.yaml: probe 'connect' alternative 1 (kretprobe tcp_v4_connect, "
    assert (
        f"{four}tcp_v6_connect) count: compiled, verifier ok (4 programs) in 3 option shapes"
        in lines
    )


def test_good_specs_compile_and_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    """raw tracepoints, two probes in one spec, fexit alternatives."""
    check_report(GOOD, monkeypatch)


def test_fexit_refused_by_kernel_is_not_a_failure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    text = (ROOT / "specs" / "tcpconnect.yaml").read_text()
    spec = tmp_path / "fexit.yaml"
    spec.write_text(text.replace("- kretprobe: [tcp_v4_connect", "- fexit: [tcp_v4_connect"))
    code, lines = run([str(spec)], monkeypatch)
    fexit = [x for x in lines if "(fexit tcp_v4_connect, tcp_v6_connect)" in x]
    assert len(fexit) == 2, lines
    probe = capabilities.probe("fexit")
    if probe.ok:
        assert all(x.endswith("compiled, verifier ok (2 programs)") for x in fexit), lines
    else:
        assert all(
            f"compiled; load refused by this kernel (fexit unsupported: {probe.detail}" in x
            for x in fexit
        ), lines
    assert code == 0, lines


def bcc_version() -> tuple[int, ...]:
    try:
        import bcc
    except ImportError:
        return ()
    return tuple(int(x) for x in str(getattr(bcc, "__version__", "0.0")).split(".")[:2])


def test_fexit_functions_are_named_as_this_bcc_expects(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    text = (ROOT / "specs" / "tcpconnect.yaml").read_text()
    spec = tmp_path / "fexit.yaml"
    spec.write_text(text.replace("- kretprobe: [tcp_v4_connect", "- fexit: [tcp_v4_connect"))
    _, lines = run([str(spec)], monkeypatch)
    fexit = [x for x in lines if "(fexit " in x]
    assert fexit and not [x for x in fexit if "not found in vmlinux BTF" in x], fexit


def inject(monkeypatch: pytest.MonkeyPatch, change: Callable[[str], str]) -> None:
    real = verify.render.render_c
    monkeypatch.setattr(verify.render, "render_c", lambda program: change(real(program)))


def test_compile_error_names_the_function(monkeypatch: pytest.MonkeyPatch) -> None:
    inject(monkeypatch, lambda c: c.replace("    return 0;\n}", "    return nope;\n}", 1))
    code, lines = run(["specs/icmp.yaml"], monkeypatch)
    assert code == 1
    bad = [x for x in lines if "compile failed" in x]
    assert len(bad) == 2, lines
    assert re.search(
        r"events: compile failed: use of undeclared identifier 'nope' "
        r"\(generated C line \d+, in p0_echo_\w+\)$",
        bad[1],
    ), bad
    assert lines[-1] == "2 checked: 0 ok, 2 failed"


def test_verifier_rejection_names_the_program(monkeypatch: pytest.MonkeyPatch) -> None:
    unbounded = (
        "{\n    { char b[16]; u32 n = bpf_get_prandom_u32();\n"
        "      bpf_probe_read_kernel(b, n, (void *)0); if (b[0]) return 1; }\n"
    )
    marker = "int p0_echo_tracepoint_net_net_dev_queue(void *ctx)\n{\n"
    inject(monkeypatch, lambda c: c.replace(marker, marker[:-2] + unbounded))
    code, lines = run(["specs/icmp.yaml"], monkeypatch)
    assert code == 1
    assert lines[0].endswith("events: compiled, verifier ok (1 program)"), lines
    assert re.search(
        r"alternative 2 \(tracepoint net/net_dev_queue\) events: compiled; verifier rejected "
        r"p0_echo_tracepoint_net_net_dev_queue: R2 .*",
        lines[1],
    ), lines
    assert lines[-1] == "2 checked: 1 ok, 1 failed"


SWITCHED = """\
name: sw
options:
  wide: {flag: --wide, type: bool, help: one series per file}
  pid: {flag: -p, type: u32, help: this process only}
  ports: {flag: -P, type: "list[u16]", help: these ports}
probes:
  - name: execs
    attach:
      - tracepoint: sched/sched_process_exec
    fields:
      file: {value: args.filename, size: 64}
      pid: tgid
    filter: pid == $pid and pid in $ports
output:
  aggregations:
    - {name: calls, count: true, by: [pid, {field: file, if: wide}]}
"""


def test_every_option_shape_is_compiled(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    """Switches turn key columns on, options add comparisons, a long list becomes a hash set:
    each distinct program is compiled and loaded, not only the one no option makes."""
    spec = tmp_path / "sw.yaml"
    spec.write_text(SWITCHED)
    seen: list[str] = []
    inject(monkeypatch, lambda c: seen.append(c) or c)
    code, lines = run([str(spec)], monkeypatch)
    assert code == 0 and lines[0].endswith("verifier ok (1 program) in 4 option shapes"), lines
    wide = "struct agg_calls_key_t {\n    u32 f_pid;\n    char f_file[64];\n};"
    assert [c for c in seen if wide in c], "no program with --wide's key was compiled"
    assert [c for c in seen if "set_ports.lookup" in c], "no program with -P's hash set"
    assert [c for c in seen if "set_ports" not in c and "== 1U" in c], "no -P with one port"


def test_a_failing_shape_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    """A program that fails only with --wide on: the line says so."""
    spec = tmp_path / "sw.yaml"
    spec.write_text(SWITCHED)
    broken = "bpf_probe_read_kernel(&key.f_file"
    inject(monkeypatch, lambda c: c.replace(broken, "nope = 1;\n" + broken))
    code, lines = run([str(spec)], monkeypatch)
    assert code == 1
    assert re.search(
        r"events with --wide -p 1 -P 1,2,3,4,5,6,7,8,9: compile failed: use of undeclared "
        r"identifier 'nope'",
        lines[0],
    ), lines


def test_spec_problems_are_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    spec = tmp_path / "bad.yaml"
    text = (ROOT / "specs" / "icmp.yaml").read_text()
    spec.write_text(text.replace("kprobe: icmp_echo", "kprobe: icmp_ech0"))
    code, lines = run([str(spec), "specs/icmp.yaml"], monkeypatch)
    assert code == 1
    assert "error: no kernel function 'icmp_ech0'" in lines[0]
    assert len([x for x in lines if "verifier ok" in x]) == 2


def test_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    real = capabilities.probe

    def fake(feature: str) -> capabilities.Probe:
        if feature == "root":
            return capabilities.Probe(False, "euid 1000", "run as root")
        return real(feature)

    monkeypatch.setattr(verify.capabilities, "probe", fake)
    with pytest.raises(EngineError, match=r"^--compile needs root \(euid 1000\): run as root$"):
        verify.compile_check(SPECS, io.StringIO())


def test_cli_validate_compile(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.cli import main

    monkeypatch.chdir(ROOT)
    assert main(["validate", "--compile", *SPECS]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[len(SPECS)] == f"{len(SPECS)} specs checked: {len(SPECS)} valid, 0 invalid"
    assert "verifier ok" in out[len(SPECS) + 1]
