"""Diurnal profiles: normalised to a weekly mean of 1; scalar and batch draws follow the same density."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime

import numpy as np
import pytest

from callshield.simulate._time import HOURLY, Timeline

MONDAY = datetime(2026, 11, 2, tzinfo=UTC)


@pytest.mark.parametrize("profile", sorted(HOURLY))
def test_a_week_holds_168_average_hours(profile: str) -> None:
    week = Timeline(MONDAY, 24 * 7, "America/Chicago")
    assert week.expected_hours(profile) == pytest.approx(168.0, rel=1e-3)  # one DST-free week


def test_scalar_and_batch_draws_agree() -> None:
    day = Timeline(MONDAY, 24, "America/Chicago")
    scalar = Counter((day.draw(random.Random(i), "business") - day.start) // 3600 for i in range(20_000))
    batch = Counter((t - day.start) // 3600 for t in day.draw_many(np.random.default_rng(1), "business", 20_000))
    for hour in range(24):
        assert abs(scalar[hour] - batch[hour]) < 0.02 * 20_000 + 4 * (scalar[hour] ** 0.5), hour
    # business hours 8-17 in Chicago (UTC-6): window hours 14-23
    assert sum(batch[hour] for hour in range(14, 23)) > 0.85 * 20_000


def test_draws_stay_inside_the_requested_hours() -> None:
    day = Timeline(MONDAY, 24, "UTC")
    rng, generator = random.Random(2), np.random.default_rng(2)
    assert all(day.start + 5 * 3600 <= day.draw(rng, "night", (5, 7)) < day.start + 7 * 3600 for _ in range(500))
    starts = day.draw_many(generator, "night", 500, (5, 7))
    assert all(day.start + 5 * 3600 <= start < day.start + 7 * 3600 for start in starts)
    assert day.expected_hours("flat", (5, 7)) == pytest.approx(2.0)
