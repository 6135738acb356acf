"""Injected clocks.

Decision logic never reads the system time itself: it asks the clock it was given, so tests and
replays run on simulated time (the same idea as fail2ban's ``MyTime``).
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A source of the current time, in seconds since the Unix epoch."""

    def now(self) -> float: ...


class SystemClock:
    """The wall clock."""

    __slots__ = ()

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that only moves when told to: for tests and CDR replay."""

    __slots__ = ("_now",)

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def set(self, when: float) -> None:
        """Jump to ``when`` (never backwards: windows assume monotonic time)."""
        self._now = max(self._now, float(when))

    def advance(self, seconds: float) -> None:
        self._now += max(0.0, float(seconds))
