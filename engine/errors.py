"""Errors every stage shares: located spec problems, usage errors and runtime failures.

User mistakes never surface as tracebacks: the CLI catches these types and prints
their one-line messages, with exit 2 for usage errors and 1 for everything else.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable, Sequence


@dataclass(frozen=True)
class Location:
    """Where a problem is: file, 1-based line and column, and the JSON path of the node."""

    file: str
    line: int = 0
    col: int = 0
    path: str = "$"

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.col}"
        return self.file


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec, located; `message` is a single line."""

    message: str
    location: Location
    severity: str = "error"  # or "warning": reported, but the spec is valid

    def format(self) -> str:
        path = f" [{self.location.path}]" if self.location.path not in ("", "$") else ""
        return f"{self.location}: {self.severity}: {self.message}{path}"


class EngineError(Exception):
    """A failure that is not the user's typing: kernel, bcc, permissions. Exit 1."""

    exit_code = 1


class UsageError(EngineError):
    """A wrong flag or flag value. Exit 2, like argparse."""

    exit_code = 2


class SpecError(EngineError):
    """One or more problems in a spec document, all collected before raising."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(p.format() for p in self.problems))


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return "; did you mean 'x'?" for the closest candidate, or "" when none is close.

    difflib finds the close ones; among them the fewest edits wins, a swap of two neighbours
    counting as one (so 'skc_dprot' suggests 'skc_dport', not 'skc_prot').
    """
    pool = list(candidates)
    close = difflib.get_close_matches(name, pool, n=5, cutoff=0.6)
    if not close and len(name) > 2:
        lowered = {c.lower(): c for c in pool}
        close = difflib.get_close_matches(name.lower(), list(lowered), n=5, cutoff=0.6)
        close = [lowered[c] for c in close]
    if not close:
        return ""

    def rank(c: str) -> tuple[int, bool, int]:
        low = c.lower()
        same_letters = sorted(low) == sorted(name.lower())  # a swap rather than a typo
        return (edits(name.lower(), low), not same_letters, close.index(c))

    best = min(close, key=rank)
    return f"; did you mean '{best}'?"


def edits(a: str, b: str) -> int:
    """Edit distance where inserting, deleting, replacing or swapping neighbours costs one."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            cost = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, prev2[j - 2] + 1)
            row.append(cost)
        prev2, prev = prev, row
    return prev[-1]
