"""Range activity windows: counts per /10,000 range, expiry, dry runs and bounds."""

from __future__ import annotations

from callshield.ranges import NO_RANGE, RangeTracker

BASE = 13125550000  # +1 312 555 0000: one range


def test_counts_other_callers_and_new_numbers_in_the_range() -> None:
    tracker = RangeTracker(window=3600)
    assert tracker.observe(BASE + 1, 0.0, new=True) == NO_RANGE
    tracker.observe(BASE + 2, 10.0, new=True)
    tracker.observe(BASE + 3, 20.0, new=False)
    tracker.observe(BASE + 2, 30.0, new=False)  # a repeat caller counts once, as new at its first call
    seen = tracker.observe(BASE + 4, 40.0, new=True)
    assert (seen.callers, seen.new) == (3, 2)
    again = tracker.observe(BASE + 1, 50.0, new=False)
    assert (again.callers, again.new) == (3, 2)  # itself not counted
    other = tracker.observe(BASE + 10_000, 60.0, new=True)  # the next range
    assert other == NO_RANGE


def test_ended_calls_and_their_short_share() -> None:
    tracker = RangeTracker(window=3600)
    for i in range(4):
        tracker.observe(BASE + i, float(i), new=True)
        tracker.ended(BASE + i, float(i) + 30, short=i < 3)
    seen = tracker.observe(BASE + 9, 100.0, new=True)
    assert (seen.ended, seen.short) == (4, 3)


def test_old_activity_leaves_the_window() -> None:
    tracker = RangeTracker(window=600)
    tracker.observe(BASE + 1, 0.0, new=True)
    tracker.ended(BASE + 1, 30.0, short=True)
    tracker.observe(BASE + 2, 500.0, new=True)
    seen = tracker.observe(BASE + 3, 700.0, new=True)
    assert (seen.callers, seen.new, seen.ended, seen.short) == (1, 1, 0, 0)
    tracker.observe(BASE + 2, 1000.0, new=False)  # seen again: stays
    late = tracker.observe(BASE + 4, 1150.0, new=True)
    assert late.callers == 2  # BASE+2 (seen at 1000) and BASE+3 (700); BASE+1 left long ago


def test_a_dry_run_changes_nothing() -> None:
    tracker = RangeTracker(window=3600)
    assert tracker.observe(BASE + 1, 0.0, new=True, commit=False) == NO_RANGE
    assert len(tracker) == 0
    tracker.observe(BASE + 1, 1.0, new=True)
    tracker.observe(BASE + 2, 2.0, new=True, commit=False)
    assert tracker.observe(BASE + 3, 3.0, new=True).callers == 1


def test_memory_is_bounded() -> None:
    tracker = RangeTracker(window=3600, max_ranges=10, max_events=8)
    for i in range(50):
        tracker.observe(BASE + i * 10_000, float(i), new=True)
    assert len(tracker) == 10 and tracker.evictions == 40
    for i in range(100):
        tracker.observe(BASE + i, 100.0 + i, new=True)
        tracker.ended(BASE + i, 100.0 + i, short=True)
    seen = tracker.observe(BASE + 500, 300.0, new=True)
    assert seen.callers <= 8 and seen.ended <= 8 and seen.short == seen.ended
