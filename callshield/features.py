"""The feature vector: one definition, used live by the engine and offline by replay and training.

Every decision computes the same tuple of floats, in the order of :data:`FEATURE_NAMES`, from the
caller's number facts, its reputation, its dialing pattern and its number range's recent activity;
the audit log stores it, so a model trained on audited or replayed traffic sees exactly what the
live engine saw (no train/serve skew). New features are only ever appended (stored vectors of
older versions are a prefix).
"""

from __future__ import annotations

import math
from typing import Final

from callshield.numbers import NumberInfo, NumberKind
from callshield.patterns import PatternFeatures
from callshield.ranges import NO_RANGE, RangeFeatures
from callshield.reputation import ReputationView

FEATURE_NAMES: Final[tuple[str, ...]] = (
    "anonymous",
    "withheld",
    "unavailable",
    "invalid",
    "short_code",
    "premium_rate",
    "toll_free",
    "mobile",
    "voip",
    "international",
    "neighbour",
    "known",
    "age_days",
    "calls_seen_log",
    "reports",
    "screen_failed",
    "screen_passed",
    "legit_calls",
    "short_calls_hist",
    "blocks",
    "peer_bad",
    "range_bad_10",
    "range_bad_100",
    "calls_1m",
    "calls_1h",
    "concurrent",
    "fanout",
    "repeat",
    "sweep",
    "ended",
    "answer_ratio",
    "short_ratio",
    "range_callers",
    "range_new",
    "range_ended",
    "range_short_ratio",
)
F: Final[dict[str, int]] = {name: index for index, name in enumerate(FEATURE_NAMES)}
"""Index of each feature by name."""

MAX_AGE_DAYS = 365.0
_INVALID_KINDS = frozenset({NumberKind.INVALID, NumberKind.TOO_SHORT, NumberKind.TOO_LONG})
# Enum member lookups cost ~2 µs each on Python 3.11: read them once.
_ANONYMOUS, _WITHHELD, _UNAVAILABLE = NumberKind.ANONYMOUS, NumberKind.WITHHELD, NumberKind.UNAVAILABLE
_NUMBER, _SHORT_CODE = NumberKind.NUMBER, NumberKind.SHORT_CODE


def feature_vector(
    caller: NumberInfo,
    callee: NumberInfo | None,
    reputation: ReputationView,
    pattern: PatternFeatures,
    now: float,
    *,
    home_country: int,
    ranges: RangeFeatures = NO_RANGE,
) -> tuple[float, ...]:
    """The features of one call, in :data:`FEATURE_NAMES` order."""
    kind = caller.kind
    number_type = caller.number_type
    callee_country = callee.country_code if callee is not None and callee.country_code else home_country
    first_seen = reputation.first_seen
    age_days = 0.0 if first_seen is None else min(MAX_AGE_DAYS, max(0.0, (now - first_seen) / 86400.0))
    ended = pattern.ended
    return (
        float(kind is _ANONYMOUS),
        float(kind is _WITHHELD or caller.restricted),
        float(kind is _UNAVAILABLE),
        float(kind in _INVALID_KINDS or (kind is _NUMBER and not caller.valid)),
        float(kind is _SHORT_CODE),
        float(number_type == "premium_rate"),
        float(number_type == "toll_free"),
        float(number_type == "mobile"),
        float(number_type == "voip"),
        float(caller.country_code is not None and caller.country_code != callee_country),
        float(is_neighbour(caller, callee)),
        float(reputation.known),
        age_days,
        math.log1p(reputation.calls),
        reputation.reports,
        reputation.screen_failed,
        reputation.screen_passed,
        reputation.legit_calls,
        reputation.short_calls,
        reputation.blocks,
        reputation.peer_bad,
        float(reputation.range_bad_10),
        float(reputation.range_bad_100),
        float(pattern.calls_1m),
        float(pattern.calls_1h),
        float(pattern.concurrent),
        float(pattern.fanout),
        float(pattern.repeat),
        float(pattern.sweep),
        float(ended),
        pattern.answered / ended if ended else 0.0,
        pattern.short / ended if ended else 0.0,
        float(ranges.callers),
        float(ranges.new),
        float(ranges.ended),
        ranges.short / ranges.ended if ranges.ended else 0.0,
    )


def is_neighbour(caller: NumberInfo, callee: NumberInfo | None) -> bool:
    """Caller and callee share country code, area code and exchange, but are different numbers."""
    return (
        callee is not None
        and caller.exchange is not None
        and caller.exchange == callee.exchange
        and caller.e164 != callee.e164
    )


def as_dict(vector: tuple[float, ...]) -> dict[str, float]:
    """Name each value (for ``explain`` and JSON output)."""
    return dict(zip(FEATURE_NAMES, vector, strict=True))
