"""Strict checks of a Prometheus text exposition, for every test that scrapes or renders one.

Two independent judges: prometheus_client's parser plus the rules a real Prometheus applies
to a scrape (one HELP/TYPE per family, no duplicate series, no reserved label, counters not
negative, a histogram's `_count` and `_sum` for each bucket set, buckets cumulative and `+Inf`
equal to `_count`), and `promtool check metrics` (Debian's `prometheus` package, installed by
scripts/setup.sh). Without promtool the check skips, except under CI=true, where it fails:
CI must not pass by skipping.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from collections import defaultdict

import pytest
from prometheus_client.parser import text_string_to_metric_families

IN_CI = os.environ.get("CI", "").strip().lower() == "true"


def promtool() -> str:
    """promtool's path; skip (fail under CI=true) without it."""
    found = shutil.which("promtool")
    if found is None:
        message = "needs promtool (Debian's prometheus package; scripts/setup.sh installs it)"
        if IN_CI:
            pytest.fail(f"CI=true but {message}", pytrace=False)
        pytest.skip(message)
    return found


def check_exposition(text: str, *, with_promtool: bool = True) -> None:
    """Fail with the first rule the exposition breaks."""
    families = list(text_string_to_metric_families(text))
    names = [f.name for f in families]
    dup = {n for n in names if names.count(n) > 1}
    assert not dup, f"families declared twice: {sorted(dup)}"
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            assert line.split()[3] in ("counter", "gauge", "histogram", "summary", "untyped")
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for fam in families:
        histograms: dict[tuple[tuple[str, str], ...], dict[str, object]] = defaultdict(dict)
        for s in fam.samples:
            assert not any(k.startswith("__") for k in s.labels), f"reserved label in {s}"
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in seen, f"duplicate series {s.name}{s.labels}"
            seen.add(key)
            if fam.type == "counter":
                assert s.value >= 0, f"negative counter {s}"
            if fam.type == "histogram":
                labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
                entry = histograms[labels]
                suffix = s.name[len(fam.name) :]
                if suffix == "_bucket":
                    buckets = entry.setdefault("buckets", [])
                    assert isinstance(buckets, list)
                    buckets.append((float(s.labels["le"]), s.value))
                else:
                    entry[suffix] = s.value
        for labels, entry in histograms.items():
            where = f"{fam.name}{dict(labels)}"
            assert "_count" in entry and "_sum" in entry, f"{where}: no _count/_sum"
            buckets = entry.get("buckets")
            assert isinstance(buckets, list) and buckets, f"{where}: no buckets"
            les = [le for le, _ in buckets]
            assert les == sorted(les) and math.isinf(les[-1]), f"{where}: le order {les}"
            counts = [n for _, n in buckets]
            assert counts == sorted(counts), f"{where}: buckets not cumulative {counts}"
            assert counts[-1] == entry["_count"], f"{where}: +Inf != _count"
    if with_promtool:
        r = subprocess.run(
            [promtool(), "check", "metrics"], input=text, capture_output=True, text=True
        )
        assert r.returncode == 0, f"promtool check metrics: {r.stdout}{r.stderr}"
