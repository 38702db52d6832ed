"""`engine validate`: check specs without loading anything into the kernel.

Three output formats, because the verb serves three readers: people (text, like a compiler),
programs (json), and CI logs (GitHub workflow commands, which put each problem on the line of
the pull request it belongs to).
"""

from __future__ import annotations

import json
import os
import pathlib
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Dict, List, TextIO, Tuple

from engine import __version__
from engine.attach import KINDS
from engine.errors import Problem, SpecError, UsageError
from engine.kernel.btf import Btf
from engine.pipeline import check_spec, load, verdict
from engine.plan.layout import EMPTY_BTF, load_btf
from engine.spec import model as S

FORMATS = ("text", "json", "github")


def validate_path(path: str, btf_path: str | None) -> List[Problem]:
    """Every problem of the spec at `path`: load, then schema, then (if clean) semantics.

    Semantics run only on a schema-clean document, since the planner may assume its shape.
    An EngineError from the planner (BTF unreadable, say) is not the spec's fault and
    propagates to the caller.
    """
    return verdict(path, btf_path)[0]


def check_path(path: str, btf_path: str | None) -> List[Problem]:
    """`validate_path`'s problems, or for a valid spec its warnings (severity "warning"):
    the spec is loaded and planned once."""
    problems, warnings = verdict(path, btf_path)
    return problems or warnings


def _errors(problems: List[Problem]) -> List[Problem]:
    return [p for p in problems if p.severity == "error"]


def run_validate(paths: List[str], btf_path: str | None, fmt: str, out: TextIO) -> int:
    """Validate every path, report in `fmt`, and return the exit status (0 all valid, else 1)."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    results = [(path, check_path(path, btf_path)) for path in paths]
    if fmt == "json":
        _write_json(results, out)
    else:
        _write_lines(results, out, github=fmt == "github")
    return 0 if all(not _errors(problems) for _, problems in results) else 1


def _write_lines(results: List[Tuple[str, List[Problem]]], out: TextIO, *, github: bool) -> None:
    for path, problems in results:
        for problem in problems:
            out.write((_annotation(problem) if github else problem.format()) + "\n")
        if not _errors(problems):
            out.write(f"{path}: ok\n")
    out.write(_summary(results) + "\n")


def _summary(results: List[Tuple[str, List[Problem]]]) -> str:
    valid = sum(1 for _, problems in results if not _errors(problems))
    warnings = sum(len(problems) - len(_errors(problems)) for _, problems in results)
    total = len(results)
    noun = "spec" if total == 1 else "specs"
    tail = f", {warnings} warning{'s' * (warnings != 1)}" if warnings else ""
    return f"{total} {noun} checked: {valid} valid, {total - valid} invalid{tail}"


def _write_json(results: List[Tuple[str, List[Problem]]], out: TextIO) -> None:
    specs = [
        {
            "file": path,
            "valid": not _errors(problems),
            "problems": [_problem_json(p) for p in _errors(problems)],
            "warnings": [_problem_json(p) for p in problems if p.severity != "error"],
        }
        for path, problems in results
    ]
    document = {"specs": specs, "valid": all(spec["valid"] for spec in specs)}
    json.dump(document, out, indent=2, ensure_ascii=False)
    out.write("\n")


def _problem_json(problem: Problem) -> Dict[str, Any]:
    """A problem as JSON; line and col are null when the problem is about the whole file."""
    where = problem.location
    return {
        "file": where.file,
        "line": where.line or None,
        "col": where.col or None,
        "path": where.path,
        "message": problem.message,
    }


def _annotation(problem: Problem, kernel: str = "") -> str:
    """A GitHub Actions `::error` (or `::warning`) workflow command for one problem (on
    `kernel`, if named)."""
    where = problem.location
    properties = [f"file={_escape_property(where.file)}"]
    if where.line:
        properties += [f"line={where.line}", f"col={where.col}"]
    title = f"engine validate ({kernel})" if kernel else "engine validate"
    properties.append(f"title={_escape_property(title)}")
    message = problem.message
    if where.path not in ("", "$"):
        message += f" [{where.path}]"
    return f"::{problem.severity} {','.join(properties)}::{_escape_data(message)}"


def _escape_data(text: str) -> str:
    """Workflow-command message escaping: %, CR and LF."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    """Workflow-command property escaping: the message escapes plus `:` and `,`."""
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


# --- many kernels at once: the matrix ---------------------------------------------------------

MATRIX_FORMATS = (*FORMATS, "sarif")
BTF_SUFFIXES = (".btf", ".btf.xz")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_RULE = "engine/spec-invalid-on-kernel"


def btf_files(args: List[str]) -> List[str]:
    """The BTF files named by repeated --btf: files as given, a folder's *.btf[.xz] sorted."""
    files: List[str] = []
    for arg in args:
        if not arg.strip():
            raise UsageError(EMPTY_BTF)
        if os.path.isdir(arg):
            found = sorted(
                os.path.join(arg, n) for n in os.listdir(arg) if n.endswith(BTF_SUFFIXES)
            )
            if not found:
                raise UsageError(
                    f"--btf {arg}: no {' or '.join('*' + s for s in BTF_SUFFIXES)} in it"
                )
            files += found
        elif os.path.exists(arg):
            files.append(arg)
        else:
            raise UsageError(f"--btf {arg}: no such file or folder")
    return files


def kernel_name(path: str) -> str:
    """linux-6.1.0-57-amd64.btf.xz -> linux-6.1.0-57-amd64: the file name says the kernel."""
    name = os.path.basename(path)
    for suffix in (".xz", ".btf"):
        name = name[: -len(suffix)] if name.endswith(suffix) else name
    return name


@dataclass
class Choice:
    """Which attach alternative of one probe a kernel would use, and why earlier ones not."""

    probe: str
    alternative: int | None  # 1-based; None: none would attach
    attach: str
    skipped: List[Tuple[int, str]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


@dataclass
class Cell:
    """One spec on one kernel."""

    kernel: str
    btf: str
    problems: List[Problem]
    probes: List[Choice]

    @property
    def valid(self) -> bool:
        return not self.problems


def _alternative_gap(btf: Btf, kind: str, targets: List[str]) -> Tuple[str | None, List[str]]:
    """Why an alternative would not attach on the kernel of `btf` (None: it would), and notes.

    Judged from BTF alone, by the kind's family (engine.attach: functions must be in BTF,
    kprobes need the kernel's kprobe code, tracepoints their record type).
    """
    return KINDS[kind].gap(btf, targets)


def choices_on(spec: S.Spec, btf: Btf) -> List[Choice]:
    """Per probe, the first alternative that would attach on this kernel (from BTF)."""
    result = []
    for probe in spec.probes:
        choice = Choice(probe.name, None, "")
        for alt in probe.attach:
            index, kind, targets = alt.index, alt.kind, list(alt.targets)
            gap, notes = _alternative_gap(btf, kind, targets)
            attach = f"{kind} {', '.join(targets)}"
            if gap is None:
                choice.alternative, choice.attach, choice.notes = index + 1, attach, notes
                break
            choice.skipped.append((index + 1, f"{attach}: {gap}"))
        result.append(choice)
    return result


def matrix(paths: List[str], btfs: List[str]) -> List[Tuple[str, List[Cell]]]:
    """Every spec against every kernel."""
    rows = []
    for path in paths:
        cells = []
        try:
            spec: S.Spec | None = load(path)  # once: each kernel plans the same typed spec
        except SpecError as error:
            spec, loaded = None, error.problems
        for btf_path in btfs:
            probes: List[Choice] = []
            problems = loaded if spec is None else _problems_on(spec, btf_path)
            if spec is not None:
                probes = choices_on(spec, load_btf(btf_path))
            cells.append(Cell(kernel_name(btf_path), btf_path, problems, probes))
        rows.append((path, cells))
    return rows


def _problems_on(spec: S.Spec, btf_path: str) -> List[Problem]:
    """Every problem of a typed spec on one kernel (as `validate_path`)."""
    try:
        return check_spec(spec, btf_path).serve_problems()
    except SpecError as error:
        return error.problems


def run_matrix(paths: List[str], btf_args: List[str], fmt: str, out: TextIO) -> int:
    """`engine validate --btf A --btf B ...` or `--btf DIR`: exit 0 all valid everywhere, else 1."""
    if fmt not in MATRIX_FORMATS:
        raise UsageError(f"unknown format {fmt!r}; expected one of {', '.join(MATRIX_FORMATS)}")
    rows = matrix(paths, btf_files(btf_args))
    if fmt == "json":
        json.dump(_matrix_json(rows), out, indent=2, ensure_ascii=False)
        out.write("\n")
    elif fmt == "sarif":
        json.dump(_sarif(rows), out, indent=2, ensure_ascii=False)
        out.write("\n")
    else:
        _write_matrix(rows, out, github=fmt == "github")
    return 0 if all(cell.valid for _, cells in rows for cell in cells) else 1


def _choice_text(choice: Choice) -> str:
    if choice.alternative is None:
        why = "; ".join(f"{n}. {reason}" for n, reason in choice.skipped)
        return f"{choice.probe}: no alternative would attach ({why})"
    text = f"{choice.probe}: {choice.alternative}. {choice.attach}"
    if choice.skipped:
        text += " (skipped " + "; ".join(f"{n}. {r}" for n, r in choice.skipped) + ")"
    return text


def _write_matrix(rows: List[Tuple[str, List[Cell]]], out: TextIO, *, github: bool) -> None:
    width = max((len(c.kernel) for _, cells in rows for c in cells), default=0)
    for path, cells in rows:
        out.write(f"{path}\n")
        for cell in cells:
            if cell.valid:
                used = "; ".join(_choice_text(c) for c in cell.probes)
                out.write(f"  {cell.kernel:<{width}}  valid    would use {used}\n")
            else:
                first = cell.problems[0].format()
                more = len(cell.problems) - 1
                tail = f" (+{more} more)" if more else ""
                out.write(f"  {cell.kernel:<{width}}  INVALID  {first}{tail}\n")
                if github:
                    for problem in cell.problems:
                        out.write(_annotation(problem, cell.kernel) + "\n")
    cells = [c for _, cs in rows for c in cs]
    valid = sum(1 for c in cells if c.valid)
    kernels = len(rows[0][1]) if rows else 0
    out.write(
        f"{len(rows)} {'spec' if len(rows) == 1 else 'specs'} x {kernels} "
        f"{'kernel' if kernels == 1 else 'kernels'}: {valid} valid, {len(cells) - valid} invalid\n"
    )


def _matrix_json(rows: List[Tuple[str, List[Cell]]]) -> Dict[str, Any]:
    kernels = [{"name": c.kernel, "btf": c.btf} for c in rows[0][1]] if rows else []
    specs = []
    for path, cells in rows:
        specs.append(
            {
                "file": path,
                "valid": all(c.valid for c in cells),
                "kernels": [
                    {
                        "kernel": c.kernel,
                        "valid": c.valid,
                        "first_problem": _problem_json(c.problems[0]) if c.problems else None,
                        "problems": [_problem_json(p) for p in c.problems],
                        "probes": [
                            {
                                "name": ch.probe,
                                "alternative": ch.alternative,
                                "attach": ch.attach or None,
                                "skipped": [{"alternative": n, "reason": r} for n, r in ch.skipped],
                                "notes": ch.notes,
                            }
                            for ch in c.probes
                        ],
                    }
                    for c in cells
                ],
            }
        )
    return {"kernels": kernels, "specs": specs, "valid": all(s["valid"] for s in specs)}


def _uri(path: str) -> str:
    """A SARIF artifactLocation.uri: a URI reference, so a relative path is percent-encoded
    (`my specs/a#1.yaml` -> `my%20specs/a%231.yaml`) and an absolute one is a file: URI."""
    if os.path.isabs(path):
        return pathlib.Path(path).as_uri()
    return urllib.parse.quote(path)


def _sarif(rows: List[Tuple[str, List[Cell]]]) -> Dict[str, Any]:
    """SARIF 2.1.0 for code scanning: one result per problem, naming the kernels it is on."""
    merged: Dict[Tuple[str, int, int, str], List[str]] = {}
    for _, cells in rows:
        for cell in cells:
            for p in cell.problems:
                key = (p.location.file, p.location.line, p.location.col, p.message)
                merged.setdefault(key, []).append(cell.kernel)
    results = []
    for (file, line, col, message), kernels in merged.items():
        location: Dict[str, Any] = {"artifactLocation": {"uri": _uri(file)}}
        if line:
            location["region"] = {"startLine": line, "startColumn": max(col, 1)}
        results.append(
            {
                "ruleId": SARIF_RULE,
                "level": "error",
                "message": {"text": f"{message} (on {', '.join(kernels)})"},
                "locations": [{"physicalLocation": location}],
                "properties": {"kernels": kernels},
            }
        )
    driver = {
        "name": "engine validate",
        "version": __version__,
        "rules": [
            {
                "id": SARIF_RULE,
                "shortDescription": {"text": "spec does not validate against a kernel's BTF"},
                "defaultConfiguration": {"level": "error"},
            }
        ],
    }
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{"tool": {"driver": driver}, "results": results}],
    }
