"""deploy/: the DaemonSet manifest validates against a current Kubernetes schema (offline, with
kubernetes-validate's bundled schemas, strict: no unknown fields), and it and the Containerfile
carry what engine serve needs on a node."""

from __future__ import annotations

import pathlib
import re

import kubernetes_validate
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "deploy" / "daemonset.yaml"
KUBERNETES = "1.37.0"  # the newest schema kubernetes-validate 1.37 ships


def documents() -> list[dict]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def by_kind(kind: str) -> dict:
    (doc,) = [d for d in documents() if d["kind"] == kind]
    return doc


@pytest.mark.parametrize("doc", documents(), ids=lambda d: d["kind"])
def test_manifest_validates_strictly(doc: dict) -> None:
    kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_validator_rejects_a_wrong_manifest() -> None:
    """The check can fail: a misspelled field is an error in strict mode."""
    ds = by_kind("DaemonSet")
    ds["spec"]["template"]["spec"]["hostPid"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, KUBERNETES, strict=True)


def test_daemonset_has_what_serve_needs() -> None:
    pod = by_kind("DaemonSet")["spec"]["template"]
    spec = pod["spec"]
    assert spec["hostPID"] is True
    assert pod["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9435",
        "prometheus.io/path": "/metrics",
    }
    (container,) = spec["containers"]
    caps = container["securityContext"]["capabilities"]
    assert {"BPF", "PERFMON"} <= set(caps["add"]) and caps["drop"] == ["ALL"]
    host = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    for path in ("/sys/kernel/btf", "/sys/kernel/tracing", "/lib/modules", "/usr/src"):
        (name,) = [n for n, p in host.items() if p == path]
        assert mounts[name] == path  # the same path inside: build links stay valid
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    served = by_kind("ConfigMap")["data"]
    for arg in container["args"]:
        assert arg.startswith("/etc/engine/specs/") and arg.rsplit("/", 1)[1] in served


def test_configmap_specs_are_the_repository_specs() -> None:
    for name, text in by_kind("ConfigMap")["data"].items():
        assert text == (ROOT / "specs" / name).read_text(), name


def test_containerfile() -> None:
    text = (ROOT / "deploy" / "Containerfile").read_text()
    assert re.search(r"^FROM debian:12", text, re.M)
    assert "python3-bpfcc" in text and "python3-prometheus-client" in text
    for src in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for path in src.split():
            assert (ROOT / path).exists(), path
    assert 'ENTRYPOINT ["/opt/engine/bin/engine", "serve", "--listen", "0.0.0.0:9435"]' in text
