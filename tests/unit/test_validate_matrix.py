"""`engine validate --btf A --btf B` / `--btf DIR`: every spec on every kernel, from BTF alone.

Against the committed BTF of Debian 6.1, Debian 6.12 and this machine's 6.18 (extracted by
scripts/extract-btf.sh). What the matrix says a kernel would attach is checked against what
really attached in tests/vm (inside make test-vm); here, its verdicts and formats.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "tests" / "fixtures" / "btf"
K61, K612, K618 = "linux-6.1.0-57-amd64", "linux-6.12.117+deb12-amd64", "linux-6.18.44-fc"
SPECS = [f"specs/{n}.yaml" for n in ("drops", "execsnoop", "icmp", "tcpconnect", "tcpstates")]
SKB_CONSUMED = (
    "specs/drops.yaml:23:31: error: unknown name 'SKB_CONSUMED'; expected args.FIELD, a builtin "
    "(pid, tid, uid, comm, ...) or an enum constant; did you mean 'GRO_CONSUMED'? "
    "[$.probes[0].attach[0].where]"
)
NO_KPROBES = "no kprobes in this kernel (register_kprobe is not in its BTF)"


def validate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", "validate", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def matrix_json() -> dict:
    result = validate("--btf", str(FIX), "--format", "json", *SPECS)
    assert result.returncode == 1, result.stderr  # drops.yaml is invalid on 6.1
    return json.loads(result.stdout)


def cell(matrix: dict, spec: str, kernel: str) -> dict:
    (found,) = [s for s in matrix["specs"] if s["file"] == spec]
    (c,) = [k for k in found["kernels"] if k["kernel"] == kernel]
    return c


def test_kernels_come_from_the_folder_sorted(matrix_json: dict) -> None:
    assert [k["name"] for k in matrix_json["kernels"]] == [K61, K612, K618]
    assert [k["btf"] for k in matrix_json["kernels"]] == [
        str(FIX / f"{k}.btf.xz") for k in (K61, K612, K618)
    ]


def test_drops_is_invalid_on_debian_61_only(matrix_json: dict) -> None:
    on61 = cell(matrix_json, "specs/drops.yaml", K61)
    assert on61["valid"] is False
    assert on61["first_problem"] == {
        "file": "specs/drops.yaml",
        "line": 23,
        "col": 31,
        "path": "$.probes[0].attach[0].where",
        "message": SKB_CONSUMED.split(": error: ")[1].rsplit(" [", 1)[0],
    }
    for kernel in (K612, K618):
        assert cell(matrix_json, "specs/drops.yaml", kernel)["valid"] is True
    valid = {
        (s["file"], k["kernel"]) for s in matrix_json["specs"] for k in s["kernels"] if k["valid"]
    }
    assert len(valid) == 14


def test_would_use_the_kprobe_where_the_kernel_has_kprobes(matrix_json: dict) -> None:
    for kernel in (K61, K612):
        (probe,) = cell(matrix_json, "specs/tcpconnect.yaml", kernel)["probes"]
        assert probe["alternative"] == 1
        assert probe["attach"] == "kretprobe tcp_v4_connect, tcp_v6_connect"
        assert probe["skipped"] == []
        (probe,) = cell(matrix_json, "specs/icmp.yaml", kernel)["probes"]
        assert (probe["alternative"], probe["attach"]) == (1, "kprobe icmp_echo")
        assert probe["notes"] == ["icmp_echo is static: calls the compiler inlined are not seen"]


def test_would_use_the_tracepoint_on_this_kernel_without_kprobes(matrix_json: dict) -> None:
    (probe,) = cell(matrix_json, "specs/tcpconnect.yaml", K618)["probes"]
    assert probe["alternative"] == 2
    assert probe["attach"] == "tracepoint sock/inet_sock_set_state"
    assert probe["skipped"] == [
        {"alternative": 1, "reason": f"kretprobe tcp_v4_connect, tcp_v6_connect: {NO_KPROBES}"}
    ]


def test_text_matrix() -> None:
    result = validate(
        "--btf", str(FIX / f"{K61}.btf.xz"), "--btf", str(FIX / f"{K618}.btf.xz"),
        "specs/drops.yaml", "specs/icmp.yaml",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        "specs/drops.yaml",
        f"  {K61}  INVALID  {SKB_CONSUMED}",
        f"  {K618}      valid    would use drop: 1. tracepoint skb/kfree_skb",
        "specs/icmp.yaml",
        f"  {K61}  valid    would use echo: 1. kprobe icmp_echo",
        f"  {K618}      valid    would use echo: 2. tracepoint net/net_dev_queue "
        f"(skipped 1. kprobe icmp_echo: {NO_KPROBES})",
        "2 specs x 2 kernels: 3 valid, 1 invalid",
    ]
    assert result.stderr == ""


def test_all_valid_exits_0() -> None:
    result = validate("--btf", str(FIX), "specs/tcpconnect.yaml", "specs/icmp.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.endswith("2 specs x 3 kernels: 6 valid, 0 invalid\n")


def test_github_annotations_name_the_kernel() -> None:
    result = validate("--btf", str(FIX), "--format", "github", "specs/drops.yaml")
    assert result.returncode == 1
    annotations = [line for line in result.stdout.splitlines() if line.startswith("::")]
    assert annotations == [
        "::error file=specs/drops.yaml,line=23,col=31,"
        f"title=engine validate ({K61})::{SKB_CONSUMED.split(': error: ')[1]}"
    ]


def test_sarif() -> None:
    result = validate("--btf", str(FIX), "--format", "sarif", *SPECS)
    assert result.returncode == 1
    sarif = json.loads(result.stdout)
    assert sarif["version"] == "2.1.0"
    assert sarif["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    (run,) = sarif["runs"]
    assert run["tool"]["driver"]["name"] == "engine validate"
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == ["engine/spec-invalid-on-kernel"]
    (res,) = run["results"]
    assert res["ruleId"] == "engine/spec-invalid-on-kernel"
    assert res["level"] == "error"
    assert res["message"]["text"].startswith("unknown name 'SKB_CONSUMED'")
    assert res["message"]["text"].endswith(f" (on {K61})")
    assert res["locations"] == [
        {
            "physicalLocation": {
                "artifactLocation": {"uri": "specs/drops.yaml"},
                "region": {"startLine": 23, "startColumn": 31},
            }
        }
    ]
    assert res["properties"] == {"kernels": [K61]}


def test_sarif_of_all_valid_has_no_results() -> None:
    result = validate("--btf", str(FIX), "--format", "sarif", "specs/tcpconnect.yaml")
    assert result.returncode == 0
    assert json.loads(result.stdout)["runs"][0]["results"] == []


def test_a_folder_without_btf_is_a_usage_error(tmp_path: Path) -> None:
    result = validate("--btf", str(tmp_path), "specs/icmp.yaml")
    assert result.returncode == 2
    assert result.stderr == f"engine: error: --btf {tmp_path}: no *.btf or *.btf.xz in it\n"
    result = validate("--btf", str(tmp_path / "nope"), "--btf", str(FIX), "specs/icmp.yaml")
    assert result.returncode == 2
    assert result.stderr == f"engine: error: --btf {tmp_path / 'nope'}: no such file or folder\n"


def test_a_missing_function_skips_to_the_next_alternative(tmp_path: Path) -> None:
    """A kernel whose BTF lacks the kprobe's function would use the tracepoint."""
    spec = tmp_path / "t.yaml"
    text = (REPO / "specs/tcpconnect.yaml").read_text()
    spec.write_text(text)
    shutil.copy(FIX / f"{K61}.btf.xz", tmp_path / f"{K61}.btf.xz")
    import yaml

    from engine import pipeline
    from engine.kernel.btf import Btf
    from engine.verbs.validate import choices_on

    btf = Btf.load(str(tmp_path / f"{K61}.btf.xz"))
    document = yaml.safe_load(text)
    document["probes"][0]["attach"][0]["kretprobe"] = ["tcp_v4_connect", "no_such_fn"]
    spec.write_text(yaml.safe_dump(document))
    (choice,) = choices_on(pipeline.load(str(spec)), btf)
    assert choice.alternative == 2
    assert choice.skipped == [
        (1, "kretprobe tcp_v4_connect, no_such_fn: no function 'no_such_fn' in BTF "
            "(absent or always inlined)")
    ]  # fmt: skip


def test_readme_example_is_real_output() -> None:
    """The README's matrix example is what the command prints today."""
    command = "engine validate --btf tests/fixtures/btf specs/drops.yaml specs/tcpconnect.yaml"
    readme = (REPO / "README.md").read_text()
    start = readme.index(f"$ {command}\n") + len(f"$ {command}\n")
    shown = readme[start : readme.index("```", start)]
    result = validate(*command.split()[2:])
    assert result.returncode == 1
    assert result.stdout == shown
