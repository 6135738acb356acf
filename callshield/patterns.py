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
from bisect import bisect_left
from collections import OrderedDict

import msgspec

from callshield import db

MINUTE = 60.0
NO_CALLEE = -1
"""Callee key for a dialed string that is not a number (it still counts for fan-out by its hash)."""
SWEEP_MAX_STEP = 10
"""Two consecutive callees belong to a sweep when the second is 1..SWEEP_MAX_STEP above the first."""

_ANSWERED = 1
_SHORT = 2


class CallerWindow(msgspec.Struct, gc=False):
    """Recent calls of one caller: start times with callees, open calls, and how ended calls went.

    Tuples of numbers, replaced rather than mutated, in a Struct the garbage collector does not
    track: such tuples are untracked after their first collection, so a million windows add nothing
    to a collection's work (lists and ``array``s would stay tracked).
    """

    times: tuple[float, ...] = ()
    callees: tuple[int, ...] = ()
    callee_counts: dict[int, int] = msgspec.field(default_factory=dict)
    """Calls per callee among ``callees`` (derived, kept in step by append/trim; ints only, untracked)."""
    active: tuple[float, ...] = ()
    ends: tuple[float, ...] = ()
    end_flags: tuple[int, ...] = ()
    last: float = 0.0

    def append(self, now: float, callee: int) -> None:
        self.times += (now,)
        self.callees += (callee,)
        self.callee_counts[callee] = self.callee_counts.get(callee, 0) + 1
        self.active += (now,)
        self.last = now

    def end(self, now: float, flags: int) -> None:
        self.ends += (now,)
        self.end_flags += (flags,)

    def trim(self, now: float, window: float, max_events: int, open_horizon: float) -> None:
        horizon = now - window
        times = self.times
        cut = max(bisect_left(times, horizon), len(times) - max_events)
        if cut > 0:
            counts = self.callee_counts
            for callee in self.callees[:cut]:
                left = counts[callee] - 1
                if left:
                    counts[callee] = left
                else:
                    del counts[callee]
            self.times = times[cut:]
            self.callees = self.callees[cut:]
        ends = self.ends
        cut = max(bisect_left(ends, horizon), len(ends) - max_events)
        if cut > 0:
            self.ends = ends[cut:]
            self.end_flags = self.end_flags[cut:]
        active = self.active
        if active and active[0] < now - open_horizon:
            self.active = active[bisect_left(active, now - open_horizon) :]  # presumed ended: no feedback came

    def to_state(self) -> tuple[list[float], list[int], list[float], list[float], list[int], float]:
        return list(self.times), list(self.callees), list(self.active), list(self.ends), list(self.end_flags), self.last

    @classmethod
    def from_state(
        cls, state: tuple[list[float], list[int], list[float], list[float], list[int], float]
    ) -> CallerWindow:
        times, callees, active, ends, flags, last = state
        if not (len(times) == len(callees) and len(ends) == len(flags)):
            raise ValueError("inconsistent pattern snapshot")
        window = cls(
            times=tuple(times),
            callees=tuple(callees),
            active=tuple(active),
            ends=tuple(ends),
            end_flags=tuple(flags),
            last=float(last),
        )
        for callee in window.callees:
            window.callee_counts[callee] = window.callee_counts.get(callee, 0) + 1
        return window


class PatternFeatures(msgspec.Struct, frozen=True, kw_only=True, gc=False):
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
        self._callers: OrderedDict[int, CallerWindow] = OrderedDict()
        self._dirty: set[int] = set()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._callers)

    def observe(self, caller: int, callee: int, now: float, *, commit: bool = True) -> PatternFeatures:
        """Features of a call from ``caller`` to ``callee`` at ``now``; with ``commit``, remember the call."""
        window = self._callers.get(caller)
        if window is None:
            if not commit:
                return NO_PATTERN
            window = self._callers[caller] = CallerWindow()
        else:
            self._callers.move_to_end(caller)  # most recently active last
        window.trim(now, self.window, self.max_events - 1, self.open_call)  # room for this call
        features = self._features(window, callee, now)
        if commit:
            window.append(now, callee)
            self._dirty.add(caller)
            if len(self._callers) > self.max_callers:
                self._evict()
        elif not window.times and not window.active and not window.ends:
            del self._callers[caller]
        return features

    def _features(self, window: CallerWindow, callee: int, now: float) -> PatternFeatures:
        times, callees, counts = window.times, window.callees, window.callee_counts
        calls_1m = 1 + len(times) - bisect_left(times, now - MINUTE)
        repeat = counts.get(callee, 0) + 1
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
            fanout=len(counts) + (repeat == 1),
            repeat=repeat,
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
            window.active = window.active[1:]
        self._dirty.add(caller)
        if not counted:
            return
        window.end(now, (_ANSWERED if answered else 0) | (_SHORT if short else 0))
        window.trim(now, self.window, self.max_events, self.open_call)

    def _evict(self) -> None:
        while len(self._callers) > self.max_callers:
            oldest, _ = self._callers.popitem(last=False)
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
            self._callers[caller] = window
            self._callers.move_to_end(caller)
            loaded += 1
        return loaded

    def window_of(self, caller: int) -> CallerWindow | None:
        return self._callers.get(caller)
