"""`engine validate`: check specs without loading anything into the kernel.

Three output formats, because the verb serves three readers: people (text, like a compiler),
programs (json), and CI logs (GitHub workflow commands, which put each problem on the line of
the pull request it belongs to).
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, TextIO, Tuple

from engine.errors import Problem, UsageError
from engine.pipeline import problems_of, warnings_of

FORMATS = ("text", "json", "github")


def validate_path(path: str, btf_path: str | None) -> List[Problem]:
    """Every problem of the spec at `path`: load, then schema, then (if clean) semantics.

    Semantics run only on a schema-clean document, since the planner may assume its shape.
    An EngineError from the planner (BTF unreadable, say) is not the spec's fault and
    propagates to the caller.
    """
    return problems_of(path, btf_path)


def check_path(path: str, btf_path: str | None) -> List[Problem]:
    """`validate_path`'s problems, or for a valid spec its warnings (severity "warning")."""
    return validate_path(path, btf_path) or warnings_of(path, btf_path)


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


def _annotation(problem: Problem) -> str:
    """A GitHub Actions `::error` (or `::warning`) workflow command for one problem."""
    where = problem.location
    properties = [f"file={_escape_property(where.file)}"]
    if where.line:
        properties += [f"line={where.line}", f"col={where.col}"]
    properties.append("title=engine validate")
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
