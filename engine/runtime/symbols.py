"""Code addresses to names, in user space: kernel frames from /proc/kallsyms, user frames
through a process's mappings and symbol tables (stand-in: kernel only; user frames print
`[unknown]` until the ELF reader lands).

Stacks print long after the sample (an aggregation is read at the end), so what resolves is
cached per pid and kept after the process exits; what does not is counted and reported, never
silent.
"""

from __future__ import annotations

import bisect

from engine.output.values import Symbol, Text

UNKNOWN = "[unknown]"


class Symbolizer:
    """Resolves kernel and user addresses, counting what it could not."""

    def __init__(self, kallsyms: str = "/proc/kallsyms") -> None:
        self._kallsyms = kallsyms
        self._kaddrs: list[int] | None = None
        self._knames: list[str] = []
        self.kernel_unresolved = 0
        self.user_unresolved = 0

    def _load_kernel(self) -> list[int]:
        if self._kaddrs is None:
            pairs: list[tuple[int, str]] = []
            try:
                with open(self._kallsyms) as f:
                    for line in f:
                        parts = line.split()
                        if len(parts) >= 3 and parts[1] in "tTwW":
                            pairs.append((int(parts[0], 16), parts[2]))
            except OSError:
                pass
            pairs.sort()
            self._kaddrs = [a for a, _ in pairs]
            self._knames = [n for _, n in pairs]
        return self._kaddrs

    def kernel(self, addr: int) -> Symbol | Text:
        """The kernel symbol holding `addr`, with its offset; [unknown] when none does."""
        addrs = self._load_kernel()
        i = bisect.bisect_right(addrs, addr) - 1
        if i < 0 or addrs[i] == 0:
            self.kernel_unresolved += 1
            return Text(UNKNOWN)
        return Symbol(self._knames[i], addr - addrs[i])

    def user(self, pid: int, addr: int) -> Symbol | Text:
        """The user symbol of `pid` holding `addr` (stand-in: never resolves)."""
        self.user_unresolved += 1
        return Text(UNKNOWN)

    def report(self) -> str:
        """One line on what did not resolve ("" when everything did)."""
        if not (self.kernel_unresolved or self.user_unresolved):
            return ""
        return (
            f"symbols: {self.kernel_unresolved} kernel and {self.user_unresolved} user frames"
            " unresolved (printed [unknown])"
        )
