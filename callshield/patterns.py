"""Dialing patterns: per-caller sliding windows over this node's traffic.

Invariants:
- time comes from the caller (the engine's injected clock), never from the system;
- a caller's window keeps at most ``max_events`` calls and nothing older than ``window`` seconds;
- at most ``max_callers`` windows live in memory: the least recently active is evicted first;
- :meth:`PatternTracker.observe` with ``commit=False`` computes the same features without changing
  anything (``callshield check`` decides without recording);
- windows changed since the last snapshot are written by :meth:`PatternTracker.take_writes`, and
  :meth:`PatternTracker.restore` loads them back after a restart.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import msgspec

from callshield import db

MINUTE = 60.0
NO_CALLEE = -1
"""Callee key for a dialed string that is not a number (it still counts for fan-out by its hash)."""
SWEEP_MAX_STEP = 10
"""Two consecutive callees belong to a sweep when the second is 1..SWEEP_MAX_STEP above the first."""

_ANSWERED = 1
_SHORT = 2


class CallerWindow:
    """Recent calls of one caller: start times with callees, open calls, and how ended calls went."""

    __slots__ = ("active", "callees", "end_flags", "ends", "last", "times")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.callees: list[int] = []
        self.active: list[float] = []
        self.ends: list[float] = []
        self.end_flags: list[int] = []
        self.last = 0.0

    def trim(self, now: float, window: float, max_events: int, open_horizon: float) -> None:
        horizon = now - window
        times = self.times
        cut = 0
        while cut < len(times) and times[cut] < horizon:
            cut += 1
        cut = max(cut, len(times) - max_events)
        if cut:
            del times[:cut]
            del self.callees[:cut]
        ends = self.ends
        cut = 0
        while cut < len(ends) and ends[cut] < horizon:
            cut += 1
        cut = max(cut, len(ends) - max_events)
        if cut:
            del ends[:cut]
            del self.end_flags[:cut]
        active = self.active
        oldest_open = now - open_horizon
        while active and active[0] < oldest_open:
            active.pop(0)  # presumed ended: its hangup feedback never came (or is not configured)

    def to_state(self) -> tuple[list[float], list[int], list[float], list[float], list[int], float]:
        return self.times, self.callees, self.active, self.ends, self.end_flags, self.last

    @classmethod
    def from_state(
        cls, state: tuple[list[float], list[int], list[float], list[float], list[int], float]
    ) -> CallerWindow:
        window = cls()
        times, callees, active, ends, flags, last = state
        if not (len(times) == len(callees) and len(ends) == len(flags)):
            raise ValueError("inconsistent pattern snapshot")
        window.times, window.callees, window.active = list(times), list(callees), list(active)
        window.ends, window.end_flags, window.last = list(ends), list(flags), float(last)
        return window


@dataclass(frozen=True, slots=True)
class PatternFeatures:
    """What a caller's window says at the moment of a call (the current call included)."""

    calls_1m: int
    calls_1h: int
    concurrent: int
    fanout: int
    """Distinct callees in the window."""
    repeat: int
    """Calls to this same callee in the window."""
    sweep: int
    """Length of the run of ascending, closely spaced callees that ends with this call."""
    ended: int
    answered: int
    short: int


NO_PATTERN = PatternFeatures(
    calls_1m=1, calls_1h=1, concurrent=1, fanout=1, repeat=1, sweep=1, ended=0, answered=0, short=0
)

_STATE_TYPE = tuple[list[float], list[int], list[float], list[float], list[int], float]
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_STATE_TYPE)
_UPSERT_STATE = (
    "INSERT INTO pattern_state (caller, last, state) VALUES (?, ?, ?) "
    "ON CONFLICT (caller) DO UPDATE SET last = excluded.last, state = excluded.state"
)


class PatternTracker:
    """Sliding windows for many callers, bounded in memory."""

    def __init__(
        self,
        *,
        window: float = 3600.0,
        max_callers: int = 500_000,
        max_events: int = 128,
        open_call: float = 300.0,
    ) -> None:
        self.window = window
        self.open_call = min(open_call, window)
        self.max_callers = max_callers
        self.max_events = max_events
        self._callers: dict[int, CallerWindow] = {}
        self._dirty: set[int] = set()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._callers)

    def observe(self, caller: int, callee: int, now: float, *, commit: bool = True) -> PatternFeatures:
        """Features of a call from ``caller`` to ``callee`` at ``now``; with ``commit``, remember the call."""
        window = self._callers.pop(caller, None)
        if window is None:
            if not commit:
                return NO_PATTERN
            window = CallerWindow()
        self._callers[caller] = window  # most recently active last
        window.trim(now, self.window, self.max_events - 1, self.open_call)  # room for this call
        features = self._features(window, callee, now)
        if commit:
            window.times.append(now)
            window.callees.append(callee)
            window.active.append(now)
            window.last = now
            self._dirty.add(caller)
            if len(self._callers) > self.max_callers:
                self._evict()
        elif not window.times and not window.active and not window.ends:
            del self._callers[caller]
        return features

    def _features(self, window: CallerWindow, callee: int, now: float) -> PatternFeatures:
        times, callees = window.times, window.callees
        minute_ago = now - MINUTE
        calls_1m = 1
        for when in reversed(times):
            if when < minute_ago:
                break
            calls_1m += 1
        distinct = set(callees)
        distinct.add(callee)
        sweep = 1
        if callee >= 0:
            upper = callee
            for previous in reversed(callees):
                if previous < 0 or not 0 < upper - previous <= SWEEP_MAX_STEP:
                    break
                sweep += 1
                upper = previous
        flags = window.end_flags
        return PatternFeatures(
            calls_1m=calls_1m,
            calls_1h=len(times) + 1,
            concurrent=len(window.active) + 1,
            fanout=len(distinct),
            repeat=callees.count(callee) + 1,
            sweep=sweep,
            ended=len(flags),
            answered=flags.count(_ANSWERED) + flags.count(_ANSWERED | _SHORT),
            short=flags.count(_SHORT) + flags.count(_ANSWERED | _SHORT),
        )

    def ended(self, caller: int, now: float, *, answered: bool, short: bool, counted: bool = True) -> None:
        """A call from ``caller`` ended (hangup feedback); ``counted=False``: only close it (we blocked it)."""
        window = self._callers.get(caller)
        if window is None:
            return
        if window.active:
            window.active.pop(0)
        self._dirty.add(caller)
        if not counted:
            return
        window.ends.append(now)
        window.end_flags.append((_ANSWERED if answered else 0) | (_SHORT if short else 0))
        window.trim(now, self.window, self.max_events, self.open_call)

    def _evict(self) -> None:
        while len(self._callers) > self.max_callers:
            oldest = next(iter(self._callers))
            del self._callers[oldest]
            self._dirty.discard(oldest)
            self.evictions += 1

    # --- persistence ----------------------------------------------------------------------------

    def take_writes(self, now: float) -> list[db.Statement]:
        """Snapshot statements for the windows changed since the last call, and expiry of old ones."""
        rows = []
        for caller in self._dirty:
            window = self._callers.get(caller)
            if window is not None:
                rows.append((caller, window.last, _encoder.encode(window.to_state())))
        self._dirty = set()
        statements: list[db.Statement] = [("DELETE FROM pattern_state WHERE last < ?", [(now - self.window,)])]
        if rows:
            statements.append((_UPSERT_STATE, rows))
        return statements

    def restore_writes(self, statements: list[db.Statement]) -> None:
        for sql, params in statements:
            if sql == _UPSERT_STATE:
                self._dirty.update(int(row[0]) for row in params)

    def restore(self, conn: sqlite3.Connection, now: float) -> int:
        """Load the snapshot windows that are still inside the window; return how many were loaded."""
        cursor = conn.execute(
            "SELECT caller, state FROM (SELECT caller, last, state FROM pattern_state WHERE last >= ? "
            "ORDER BY last DESC LIMIT ?) ORDER BY last",
            (now - self.window, self.max_callers),
        )
        loaded = 0
        for caller, blob in cursor:
            try:
                window = CallerWindow.from_state(_decoder.decode(blob))
            except (msgspec.DecodeError, ValueError, TypeError):
                continue  # a damaged snapshot row is skipped, never fatal
            window.trim(now, self.window, self.max_events, self.open_call)
            self._callers.pop(caller, None)
            self._callers[caller] = window
            loaded += 1
        return loaded

    def window_of(self, caller: int) -> CallerWindow | None:
        return self._callers.get(caller)
