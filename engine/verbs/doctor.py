"""`engine doctor`: what this machine offers the engine, measured, with a fix for each gap.

The measurements come from engine.kernel.capabilities (real loads and attaches); this module only
decides what is required and prints the result as a table for people or JSON for scripts.
"""

from __future__ import annotations

import json
import platform
from typing import Mapping, TextIO

from engine.attach import KINDS
from engine.kernel import capabilities
from engine.kernel.capabilities import Probe

# What tracepoint-based specs need: the machine and the attach kinds that say they are required;
# the other kinds are optional because every spec lists a tracepoint alternative. Events need
# one of the two buffers.
REQUIRED = (*capabilities.LOCAL_FEATURES, *(k.name for k in KINDS.values() if k.required))
BUFFERS = capabilities.BUFFERS


def missing(results: Mapping[str, Probe]) -> list[str]:
    """The required features that are not there (empty: the engine can run)."""
    absent = [f for f in REQUIRED if not results[f].ok]
    if not any(results[b].ok for b in BUFFERS):
        absent.append(" or ".join(BUFFERS))
    return absent


def summary(results: Mapping[str, Probe]) -> list[str]:
    """One line per consequence a person should know about, the verdict last."""
    lines = []
    if not results["root"].ok:
        lines.append("not root: kernel features could not be measured (run as root)")
    else:
        lines += unavailable(results)
        if not results["ringbuf"].ok and results["perf_buffer"].ok:
            lines.append("ring buffer unavailable: events go through the perf buffer")
    gaps = missing(results)
    if gaps:
        lines.append(f"not ready: missing {', '.join(gaps)} (see the remedies above)")
    else:
        lines.append("ready: tracepoint-based specs can run")
    return lines


def unavailable(results: Mapping[str, Probe]) -> list[str]:
    """Each attach kind's line (said once for kinds sharing it) when one of them cannot attach."""
    lines: list[str] = []
    for kind in KINDS.values():
        if kind.unavailable and not results[kind.name].ok and kind.unavailable not in lines:
            lines.append(kind.unavailable)
    return lines


def format_table(results: Mapping[str, Probe], kernel: str) -> str:
    """FEATURE / OK / DETAIL columns, a remedy line under each missing feature, then a summary."""
    width = max(len("FEATURE"), *(len(f) for f in results))
    rows = [f"kernel {kernel}", "", f"{'FEATURE':<{width}}  OK   DETAIL"]
    for feature, result in results.items():
        rows.append(f"{feature:<{width}}  {'yes' if result.ok else 'no':<3}  {result.detail}")
        if not result.ok and result.remedy:
            rows.append(f"{'':<{width}}       remedy: {result.remedy}")
    return "\n".join([*rows, "", *summary(results)]) + "\n"


def format_json(results: Mapping[str, Probe], kernel: str) -> str:
    """One JSON object: a boolean per feature at top level, plus kernel, ready and details."""
    doc: dict[str, object] = {"kernel": kernel, "ready": not missing(results)}
    doc.update({feature: result.ok for feature, result in results.items()})
    doc["missing"] = missing(results)
    doc["details"] = {
        feature: {"ok": r.ok, "detail": r.detail, "remedy": r.remedy}
        for feature, r in results.items()
    }
    return json.dumps(doc, indent=2) + "\n"


def run_doctor(as_json: bool, out: TextIO) -> int:
    """Measure everything, print it; exit 0 when tracepoint-based specs can run, else 1."""
    results = capabilities.probe_all()
    kernel = platform.release()
    out.write(format_json(results, kernel) if as_json else format_table(results, kernel))
    return 1 if missing(results) else 0
