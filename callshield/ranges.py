"""Range activity: node-wide sliding windows per number range (a caller's /10,000 block, which is
an area code + exchange in the NANP).

Campaigns that rotate their numbers (neighbour spoofing, snowshoe) look new and clean one number
at a time; together they crowd a few ranges with new numbers whose calls go unanswered. For each
range the tracker keeps, over the pattern window: the callers seen (and whether each was a new
number at its first call in the window) and the ended calls (and whether each was short or
unanswered).

Invariants:
- time comes from the caller (the engine's injected clock), never from the system;
- nothing older than ``window`` counts; at most ``max_ranges`` ranges are held (least recently
  active evicted first) and at most ``max_events`` callers and ends per range;
- :meth:`RangeTracker.observe` with ``commit=False`` changes nothing (``callshield check``);
- the windows are not persisted: after a restart they fill again within one window.
"""

from __future__ import annotations

from collections import OrderedDict, deque

import msgspec

RANGE_SIZE = 10_000
"""Numbers per range: a caller key divided by this names its range."""


class RangeFeatures(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What a caller's range looked like just before this call (the caller itself not counted)."""

    callers: int
    """Other callers from the range in the window."""
    new: int
    """Of those, how many were numbers never seen before."""
    ended: int
    """Ended calls from the range in the window (this caller's included)."""
    short: int
    """Of those, how many were short or unanswered."""


NO_RANGE = RangeFeatures(callers=0, new=0, ended=0, short=0)


class _Range:
    __slots__ = ("arrivals", "callers", "ends", "new", "short")

    def __init__(self) -> None:
        self.callers: dict[int, tuple[float, bool]] = {}  # caller -> (last seen, new at first call)
        self.arrivals: deque[tuple[float, int]] = deque()
        self.ends: deque[tuple[float, bool]] = deque()
        self.new = 0
        self.short = 0

    def trim(self, horizon: float, max_events: int) -> None:
        arrivals, callers = self.arrivals, self.callers
        while arrivals and (arrivals[0][0] < horizon or len(callers) > max_events):
            when, caller = arrivals.popleft()
            seen = callers.get(caller)
            if seen is not None and seen[0] <= when:
                del callers[caller]
                self.new -= seen[1]
        ends = self.ends
        while ends and (ends[0][0] < horizon or len(ends) > max_events):
            self.short -= ends.popleft()[1]


class RangeTracker:
    """Sliding windows of range activity (see the module docstring), bounded in memory."""

    def __init__(self, *, window: float = 3600.0, max_ranges: int = 200_000, max_events: int = 4096) -> None:
        self.window = window
        self.max_ranges = max_ranges
        self.max_events = max_events
        self._ranges: OrderedDict[int, _Range] = OrderedDict()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._ranges)

    def observe(self, caller: int, now: float, *, new: bool, commit: bool = True) -> RangeFeatures:
        """The range of ``caller`` as of ``now``; with ``commit``, count this call (``new``: the number
        has no history)."""
        key = caller // RANGE_SIZE
        block = self._ranges.get(key)
        if block is None:
            if not commit:
                return NO_RANGE
            block = self._ranges[key] = _Range()
            if len(self._ranges) > self.max_ranges:
                self._ranges.popitem(last=False)
                self.evictions += 1
        else:
            self._ranges.move_to_end(key)
        block.trim(now - self.window, self.max_events)
        seen = block.callers.get(caller)
        others = len(block.callers) - (seen is not None)
        others_new = block.new - (seen[1] if seen is not None else 0)
        features = RangeFeatures(callers=others, new=others_new, ended=len(block.ends), short=block.short)
        if commit:
            if seen is None:
                block.callers[caller] = (now, new)
                block.new += new
            else:
                block.callers[caller] = (now, seen[1])
            block.arrivals.append((now, caller))
        return features

    def ended(self, caller: int, now: float, *, short: bool) -> None:
        """A call from ``caller`` ended; ``short``: unanswered or short."""
        block = self._ranges.get(caller // RANGE_SIZE)
        if block is None:
            return
        block.ends.append((now, short))
        block.short += short
        block.trim(now - self.window, self.max_events)
