"""Diurnal and weekly profiles, and drawing call times from them.

A profile gives a weight to each local hour of the day, and a factor for Saturdays and Sundays,
normalised so that its average over a week is 1: a family with ``calls_per_hour = 100`` makes 2,400
calls on an average day, more on the days and hours its profile favours.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np

__all__ = ["HOURLY", "Timeline"]

_NIGHT: Final = 0.02
HOURLY: Final[dict[str, tuple[tuple[float, ...], float]]] = {
    # local hour 0 .. 23, weekend factor
    "personal": (
        (0.2, 0.1, 0.05, 0.05, 0.05, 0.1, 0.3, 0.6, 0.9, 1.0, 1.0, 1.1,
         1.2, 1.1, 1.0, 1.1, 1.3, 1.6, 1.9, 2.0, 1.8, 1.3, 0.8, 0.4),
        1.1,
    ),
    "business": (
        (_NIGHT, _NIGHT, _NIGHT, _NIGHT, _NIGHT, _NIGHT, 0.05, 0.3, 0.9, 1.6, 1.7, 1.6,
         1.3, 1.5, 1.6, 1.5, 1.2, 0.6, 0.2, 0.1, 0.05, _NIGHT, _NIGHT, _NIGHT),
        0.25,
    ),
    "robocall": (  # US telemarketing hours are 8 am to 9 pm (TCPA); a little leaks outside
        (_NIGHT, _NIGHT, _NIGHT, _NIGHT, _NIGHT, _NIGHT, _NIGHT, 0.1, 0.8, 1.5, 1.8, 1.8,
         1.5, 1.6, 1.8, 1.7, 1.5, 1.2, 0.9, 0.5, 0.3, 0.05, _NIGHT, _NIGHT),
        0.5,
    ),
    "evening": (
        (0.3, 0.2, 0.1, 0.1, 0.1, 0.2, 0.4, 0.6, 0.7, 0.8, 0.8, 0.8,
         0.8, 0.8, 0.8, 0.9, 1.0, 1.3, 1.7, 2.0, 2.0, 1.7, 1.2, 0.6),
        1.6,
    ),
    "night": (
        (1.5, 1.8, 2.0, 2.0, 1.8, 1.4, 0.9, 0.5, 0.4, 0.4, 0.4, 0.4,
         0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.5, 0.6, 0.7, 0.9, 1.1, 1.3),
        1.0,
    ),
    "flat": ((1.0,) * 24, 1.0),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Cumulative:
    weights: tuple[float, ...]  # per hour of the window, normalised (week average 1)
    cumulative: tuple[float, ...]


class Timeline:
    """The simulated window: ``hours`` whole hours from ``start`` (UTC), seen in the node's time zone."""

    def __init__(self, start: datetime, hours: int, timezone: str) -> None:
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        self.start = int(start.timestamp())
        self.hours = hours
        self.end = self.start + hours * 3600
        zone = ZoneInfo(timezone)
        self._local: list[tuple[int, bool]] = []  # (local hour, weekend) per hour of the window
        for index in range(hours):
            local = datetime.fromtimestamp(self.start + index * 3600, tz=zone)
            self._local.append((local.hour, local.weekday() >= 5))
        self._profiles: dict[str, _Cumulative] = {}

    def expected_hours(self, profile: str, hours: tuple[int, int] | None = None) -> float:
        """The window's length (or that of its hours ``hours[0] <= index < hours[1]``) in 'average
        hours' of ``profile``: the sum of its normalised weights."""
        cumulative = self._profile(profile).cumulative
        low, high = (0, self.hours) if hours is None else (max(0, hours[0]), min(self.hours, hours[1]))
        if high <= low:
            return 0.0
        return cumulative[high - 1] - (cumulative[low - 1] if low > 0 else 0.0)

    def draw(self, rng: random.Random, profile: str, hours: tuple[int, int] | None = None) -> int:
        """A start time (epoch seconds) with the density of ``profile``, within the window's hours
        ``hours[0] <= hour index < hours[1]`` when given. One uniform draw: the hour by inverse CDF,
        the second by the draw's position inside that hour's share."""
        table = self._profile(profile)
        cumulative = table.cumulative
        low, high = (0, self.hours) if hours is None else (max(0, hours[0]), min(self.hours, hours[1]))
        if high <= low:
            low, high = min(low, self.hours - 1), min(low, self.hours - 1) + 1
        floor = cumulative[low - 1] if low > 0 else 0.0
        pick = floor + rng.random() * (cumulative[high - 1] - floor)
        index = bisect.bisect_right(cumulative, pick, low, high - 1)
        weight = table.weights[index]
        before = cumulative[index] - weight
        fraction = (pick - before) / weight if weight > 0 else rng.random()
        return self.start + index * 3600 + min(3599, int(fraction * 3600))

    def draw_many(
        self, generator: np.random.Generator, profile: str, n: int, hours: tuple[int, int] | None = None
    ) -> list[int]:
        """``n`` start times at once, with the density of :meth:`draw`."""
        table = self._profile(profile)
        cumulative = np.asarray(table.cumulative)
        low, high = (0, self.hours) if hours is None else (max(0, hours[0]), min(self.hours, hours[1]))
        if high <= low:
            low, high = min(low, self.hours - 1), min(low, self.hours - 1) + 1
        floor = cumulative[low - 1] if low > 0 else 0.0
        pick = floor + generator.random(n) * (cumulative[high - 1] - floor)
        index = np.minimum(np.searchsorted(cumulative, pick, side="right"), high - 1)
        weights = np.asarray(table.weights)[index]
        before = cumulative[index] - weights
        fraction = np.divide(pick - before, weights, out=np.zeros(n), where=weights > 0)
        seconds = np.minimum((fraction * 3600).astype(np.int64), 3599)
        starts: list[int] = (self.start + index * 3600 + seconds).tolist()
        return starts

    def sampler(self, profile: str) -> Callable[[random.Random], int]:
        """``lambda rng: self.draw(rng, profile)`` for the whole window, with its tables bound (the hot path)."""
        table = self._profile(profile)
        cumulative, weights, start, last = table.cumulative, table.weights, self.start, self.hours - 1
        total = cumulative[-1]
        bisect_right = bisect.bisect_right

        def draw(rng: random.Random) -> int:
            pick = rng.random() * total
            index = bisect_right(cumulative, pick, 0, last)
            weight = weights[index]
            fraction = (pick - cumulative[index] + weight) / weight if weight > 0 else rng.random()
            return start + index * 3600 + min(3599, int(fraction * 3600))

        return draw

    def _profile(self, profile: str) -> _Cumulative:
        table = self._profiles.get(profile)
        if table is None:
            hourly, weekend = HOURLY[profile]
            week_mean = sum(hourly) * (5 + 2 * weekend) / (7 * 24)
            weights = tuple(
                hourly[hour] * (weekend if is_weekend else 1.0) / week_mean for hour, is_weekend in self._local
            )
            running, cumulative = 0.0, []
            for weight in weights:
                running += weight
                cumulative.append(running)
            table = _Cumulative(weights, tuple(cumulative))
            self._profiles[profile] = table
        return table
