"""Errors every stage shares: located spec problems, usage errors and runtime failures.

User mistakes never surface as tracebacks: the CLI catches these types and prints
their one-line messages, with exit 2 for usage errors and 1 for everything else.
"""

from __future__ import annotations

import difflib
import heapq
from collections import Counter
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


SHORTLIST = 48  # candidates difflib compares, at most, whatever the pool's size
SMALL_POOL = 200  # pools up to this size are compared whole, as they are


class NameIndex:
    """Candidates for did-you-mean, indexed once so a suggestion compares a short list.

    Kernel BTF holds ~60,000 function names; comparing each with difflib costs a quarter
    of a second per unknown name. The index maps every trigram of each lowercased name to
    the names holding it; a suggestion ranks names by the trigrams they share with the
    unknown one (a close match shares most) and hands difflib the best SHORTLIST only.
    `compared` counts the candidates difflib was given, for tests and measurements.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self.names = sorted(set(names))
        self.lowered = [n.lower() for n in self.names]
        self.grams: dict[str, list[int]] = {}
        for i, low in enumerate(self.lowered):
            for gram in set(_trigrams(low)):
                self.grams.setdefault(gram, []).append(i)
        self.compared = 0
        self.said: dict[str, str] = {}

    def shortlist(self, name: str) -> list[str]:
        """The candidates most like `name`: all of them in a small pool, else by trigrams."""
        if len(self.names) <= SMALL_POOL:
            return self.names
        shared: Counter[int] = Counter()
        for gram in set(_trigrams(name.lower())):
            shared.update(self.grams.get(gram, ()))
        size = len(name)

        def score(i: int) -> float:  # shared trigrams, less a little for a length gap
            return shared[i] - abs(len(self.names[i]) - size) / 4

        # the most shared first (in C), then the length gap on those few only
        likely = [i for i, _ in shared.most_common(SHORTLIST * 4)]
        best = heapq.nlargest(SHORTLIST, likely, key=score)
        return [self.names[i] for i in sorted(best)]

    def suggest(self, name: str) -> str:
        """The suggestion for `name` (the same name asked again is answered from memory)."""
        if name not in self.said:
            pool = self.shortlist(name)
            self.compared += len(pool)
            self.said[name] = _closest(name, pool)
        return self.said[name]


def _trigrams(text: str) -> list[str]:
    """Overlapping three-letter pieces, the ends marked so short names have some too."""
    padded = f"^{text}$"
    return [padded[i : i + 3] for i in range(len(padded) - 2)]


def did_you_mean(name: str, candidates: Iterable[str] | NameIndex) -> str:
    """Return "; did you mean 'x'?" for the closest candidate, or "" when none is close.

    A large pool is best passed as a NameIndex built once (see NameIndex); a plain iterable
    is compared whole when small and indexed on the spot when not.
    """
    if isinstance(candidates, NameIndex):
        return candidates.suggest(name)
    pool = list(candidates)
    if len(pool) > SMALL_POOL:
        return NameIndex(pool).suggest(name)
    return _closest(name, pool)


def _closest(name: str, pool: Sequence[str]) -> str:
    """difflib finds the close ones; among them the fewest edits wins, a swap of two
    neighbours counting as one (so 'skc_dprot' suggests 'skc_dport', not 'skc_prot')."""
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
