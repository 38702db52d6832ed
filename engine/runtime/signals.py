"""The stop request of `engine run`: SIGINT, SIGTERM and SIGHUP all ask for a normal stop.

Installed at the very start of `run` (before bcc is imported or anything compiled), so a
signal at any moment sets a flag instead of raising KeyboardInterrupt somewhere inside an
import or bcc; the runner checks the flag between its phases and in its event loop. Kept free
of heavy imports: engine.cli imports it first.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stop:
    """Set by a stop signal; callers poll `requested` (the loop at least every 100 ms)."""

    def __init__(self) -> None:
        self.requested = False
        self.signal = 0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        self.signal = signum


STOP = Stop()
_saved: dict[int, Any] = {}


def install() -> Stop:
    """Route the stop signals to STOP (idempotent); the previous handlers are kept for restore.

    An ignored SIGHUP stays ignored: `nohup engine run ...` must survive its terminal."""
    for s in SIGNALS:
        if s == signal.SIGHUP and signal.getsignal(s) == signal.SIG_IGN:
            continue
        previous = signal.signal(s, STOP)
        if previous is not STOP:
            _saved[s] = previous
    return STOP


def installed() -> bool:
    """Whether `install` is in effect."""
    return bool(_saved) or signal.getsignal(signal.SIGINT) is STOP


def restore() -> None:
    """Put back the handlers `install` replaced, and clear the request."""
    for s, handler in _saved.items():
        signal.signal(s, handler)
    _saved.clear()
    STOP.requested = False
    STOP.signal = 0
