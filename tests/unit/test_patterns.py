"""Dialing patterns: windows from the injected clock, features, bounds, snapshots."""

from __future__ import annotations

from pathlib import Path

from callshield import db
from callshield.patterns import PatternTracker

T0 = 1_795_000_000.0


def test_rate_fanout_repeat_sweep() -> None:
    tracker = PatternTracker(window=3600)
    for i in range(5):
        tracker.observe(1, 13125550100 + i, T0 + i)
    f = tracker.observe(1, 13125550105, T0 + 5, commit=False)
    assert (f.calls_1m, f.calls_1h, f.fanout, f.sweep, f.repeat) == (6, 6, 6, 6, 1)
    f = tracker.observe(1, 13125550100, T0 + 5, commit=False)
    assert (f.repeat, f.sweep) == (2, 1)


def test_random_order_is_no_sweep() -> None:
    tracker = PatternTracker()
    for i, callee in enumerate([13125550150, 13125550107, 13125550188, 13125550111]):
        tracker.observe(1, callee, T0 + i)
    assert tracker.observe(1, 13125550160, T0 + 10, commit=False).sweep <= 2


def test_window_slides_with_the_clock() -> None:
    tracker = PatternTracker(window=600)
    for i in range(10):
        tracker.observe(1, 100 + i, T0 + i)
    later = tracker.observe(1, 500, T0 + 120, commit=False)
    assert (later.calls_1m, later.calls_1h) == (1, 11)
    much_later = tracker.observe(1, 500, T0 + 700, commit=False)
    assert much_later.calls_1h == 1


def test_concurrency_and_outcomes() -> None:
    tracker = PatternTracker(open_call=300)
    for i in range(3):
        tracker.observe(1, 100 + i, T0 + i)
    assert tracker.observe(1, 200, T0 + 3, commit=False).concurrent == 4
    tracker.ended(1, T0 + 5, answered=False, short=True)
    tracker.ended(1, T0 + 6, answered=True, short=True)
    f = tracker.observe(1, 200, T0 + 7, commit=False)
    assert (f.concurrent, f.ended, f.answered, f.short) == (2, 2, 1, 2)
    assert tracker.observe(1, 200, T0 + 400, commit=False).concurrent == 1  # no feedback: presumed ended


def test_blocked_calls_close_without_counting() -> None:
    tracker = PatternTracker()
    tracker.observe(1, 100, T0)
    tracker.ended(1, T0 + 1, answered=False, short=False, counted=False)
    f = tracker.observe(1, 100, T0 + 2, commit=False)
    assert (f.concurrent, f.ended) == (1, 0)


def test_memory_is_bounded() -> None:
    tracker = PatternTracker(max_callers=1000, max_events=8)
    for caller in range(5000):
        tracker.observe(caller, 1, T0)
    assert len(tracker) == 1000
    assert tracker.evictions == 4000
    assert tracker.window_of(4999) is not None and tracker.window_of(0) is None
    for i in range(100):
        tracker.observe(4999, i, T0 + i)
    window = tracker.window_of(4999)
    assert window is not None and len(window.times) == 8


def test_snapshot_restore_and_damaged_rows(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "p.db")
    tracker = PatternTracker(window=3600)
    for i in range(4):
        tracker.observe(7, 100 + i, T0 + i)
    tracker.observe(8, 100, T0 - 7200)  # outside the window by restore time
    db.apply(conn, tracker.take_writes(T0 + 10))
    conn.execute("INSERT INTO pattern_state (caller, last, state) VALUES (9, ?, ?)", (T0, b"\xff\x00junk"))
    restored = PatternTracker(window=3600)
    assert restored.restore(conn, T0 + 10) == 1
    f = restored.observe(7, 104, T0 + 11, commit=False)
    assert (f.calls_1h, f.sweep) == (5, 5)
