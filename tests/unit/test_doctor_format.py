"""engine doctor's table and JSON output, from fake measurements (no kernel needed)."""

from __future__ import annotations

import io
import json
import platform

import pytest

from engine.kernel import capabilities
from engine.kernel.capabilities import FEATURES, Probe
from engine.verbs import doctor

KPROBE_GONE = Probe(False, "no kprobe PMU: kernel built without CONFIG_KPROBES", "use a tracepoint")


def results(**overrides: Probe) -> dict[str, Probe]:
    """Every feature ok (in FEATURES order), with some replaced."""
    base = {f: Probe(True, f"{f} measured") for f in FEATURES}
    base.update(overrides)
    return base


def this_kernel() -> dict[str, Probe]:
    return results(
        kprobe=KPROBE_GONE,
        kretprobe=KPROBE_GONE,
        fentry=Probe(False, "bpf(BPF_PROG_LOAD): Operation not permitted", "use a kprobe"),
        fexit=Probe(False, "bpf(BPF_PROG_LOAD): Operation not permitted", "use a kretprobe"),
    )


def run(monkeypatch: pytest.MonkeyPatch, fake: dict[str, Probe], as_json: bool) -> tuple[int, str]:
    monkeypatch.setattr(capabilities, "probe_all", lambda: fake)
    monkeypatch.setattr(platform, "release", lambda: "6.18.44-test")
    out = io.StringIO()
    return doctor.run_doctor(as_json, out), out.getvalue()


def test_table_has_header_a_row_per_feature_and_remedies(monkeypatch: pytest.MonkeyPatch) -> None:
    code, text = run(monkeypatch, this_kernel(), as_json=False)
    assert code == 0
    lines = text.splitlines()
    assert lines[0] == "kernel 6.18.44-test"
    header = next(i for i, ln in enumerate(lines) if ln.startswith("FEATURE"))
    assert lines[header].split() == ["FEATURE", "OK", "DETAIL"]
    detail_col = lines[header].index("DETAIL")
    rows = {ln.split()[0]: ln for ln in lines[header + 1 :] if ln and not ln.startswith(" ")}
    for feature in FEATURES:
        assert feature in rows
        assert rows[feature][detail_col:] == this_kernel()[feature].detail
    assert rows["root"].split()[1] == "yes"
    assert rows["kprobe"].split()[1] == "no"
    below = lines[lines.index(rows["kprobe"]) + 1]
    assert below.strip() == "remedy: use a tracepoint"
    assert below.index("remedy") == detail_col
    assert "kprobes unavailable: specs fall back to their tracepoint alternatives" in lines
    assert lines[-1] == "ready: tracepoint-based specs can run"


def test_no_remedy_line_for_present_features(monkeypatch: pytest.MonkeyPatch) -> None:
    _, text = run(monkeypatch, results(), as_json=False)
    assert "remedy" not in text
    assert "unavailable" not in text


def test_json_is_one_object_with_booleans_details_and_kernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, text = run(monkeypatch, this_kernel(), as_json=True)
    assert code == 0
    doc = json.loads(text)
    for feature in FEATURES:
        assert doc[feature] is (feature not in ("kprobe", "kretprobe", "fentry", "fexit"))
    assert doc["kernel"] == "6.18.44-test"
    assert doc["ready"] is True
    assert doc["missing"] == []
    assert list(doc["details"]) == list(FEATURES)
    assert doc["details"]["kprobe"] == {
        "ok": False,
        "detail": KPROBE_GONE.detail,
        "remedy": KPROBE_GONE.remedy,
    }


@pytest.mark.parametrize("absent", ["root", "bcc", "btf", "headers", "tracefs", "tracepoint"])
def test_each_required_feature_missing_exits_1(
    monkeypatch: pytest.MonkeyPatch, absent: str
) -> None:
    fake = results(**{absent: Probe(False, "gone", "fix it")})
    code, text = run(monkeypatch, fake, as_json=False)
    assert code == 1
    assert text.splitlines()[-1].startswith(f"not ready: missing {absent}")
    code, text = run(monkeypatch, fake, as_json=True)
    assert code == 1
    assert json.loads(text)["missing"] == [absent]


def test_one_buffer_is_enough_both_missing_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    code, text = run(monkeypatch, results(ringbuf=Probe(False, "old kernel")), as_json=False)
    assert code == 0
    assert "ring buffer unavailable: events go through the perf buffer" in text
    assert run(monkeypatch, results(perf_buffer=Probe(False, "x")), as_json=False)[0] == 0
    gone = Probe(False, "x")
    code, text = run(monkeypatch, results(ringbuf=gone, perf_buffer=gone), as_json=True)
    assert code == 1
    assert json.loads(text)["missing"] == ["ringbuf or perf_buffer"]


def test_optional_features_missing_still_exit_0(monkeypatch: pytest.MonkeyPatch) -> None:
    gone = Probe(False, "x")
    fake = results(raw_tracepoint=gone, kprobe=gone, kretprobe=gone, fentry=gone, fexit=gone)
    assert run(monkeypatch, fake, as_json=False)[0] == 0


def test_unprivileged_summary_does_not_blame_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    needs_root = Probe(False, "needs root (or CAP_BPF and CAP_PERFMON)", "run as root")
    fake = results(**{f: needs_root for f in FEATURES if f not in ("bcc", "btf", "headers")})
    code, text = run(monkeypatch, fake, as_json=False)
    assert code == 1
    assert "not root: kernel features could not be measured (run as root)" in text
    assert "kprobes unavailable" not in text
