"""Policy: from the feature vector to a risk score with reasons, and from the score to an action.

The built-in scorer is additive and explainable: each finding adds the points configured in
``[scoring]`` (scaled by how far past its threshold the caller is, capped at twice the points),
the sum is clamped to 0-100, and the findings, largest first, are the reasons. A learned model
plugs in through :class:`Scorer` and reads the same vector.
"""

from __future__ import annotations

import math
from typing import Protocol

from callshield.config import PatternsConfig, PolicyConfig, ReputationConfig, ScoringConfig
from callshield.features import F
from callshield.verdict import Action, Reason

MAX_SCALE = 2.0


class Scorer(Protocol):
    """Anything that turns a feature vector into (score 0-100, reasons)."""

    def score(self, features: tuple[float, ...]) -> tuple[int, tuple[Reason, ...]]: ...


def _over(value: float, threshold: float) -> float:
    """How far past its threshold a count is: 0 below it, 1 at it, up to MAX_SCALE."""
    if threshold <= 0 or value < threshold:
        return 0.0
    return min(MAX_SCALE, value / threshold)


_KNOWN, _REPORTS, _SCREEN_FAILED, _PEER = F["known"], F["reports"], F["screen_failed"], F["peer_bad"]
_LEGIT, _PASSED, _BAD_10, _BAD_100 = F["legit_calls"], F["screen_passed"], F["range_bad_10"], F["range_bad_100"]
_CALLS_1M, _CALLS_1H, _ENDED, _SHORT_RATIO = F["calls_1m"], F["calls_1h"], F["ended"], F["short_ratio"]
_WITHOUT_NUMBER = tuple(F[n] for n in ("anonymous", "withheld", "unavailable", "invalid", "short_code"))
_EVIDENCE_FLOOR = 0.05
"""Decayed evidence below this is noise and not shown."""


class ExpertScorer:
    """The built-in scorer: configured points per finding (see module docstring)."""

    def __init__(self, scoring: ScoringConfig, patterns: PatternsConfig, reputation: ReputationConfig) -> None:
        self._s = scoring
        self._p = patterns
        self._range_bad = max(1, reputation.range_bad_numbers)
        self._flags = tuple(
            (F[name], Reason(code=f"number:{name}", points=points, detail=detail))
            for name, points, detail in (
                ("anonymous", scoring.anonymous, "anonymous caller"),
                ("withheld", scoring.withheld, "caller ID withheld"),
                ("unavailable", scoring.unavailable, "no caller number"),
                ("invalid", scoring.invalid, "caller ID is not a valid number"),
                ("premium_rate", scoring.premium_rate, "premium-rate caller number"),
                ("neighbour", scoring.neighbour, "caller shares area code and exchange with the callee"),
            )
        )
        self._new = Reason(code="number:new", points=scoring.new_number, detail="first call seen from this number")
        self._counts = tuple(
            (F[name], float(threshold), points, f"pattern:{name}", detail)
            for name, threshold, points, detail in (
                ("fanout", patterns.fanout, scoring.fanout, "distinct callees in the window"),
                ("sweep", patterns.sweep, scoring.sweep, "callees dialed in ascending sequence"),
                ("concurrent", patterns.concurrent, scoring.concurrent, "calls at the same time"),
                ("repeat", patterns.repeat, scoring.repeat, "calls to the same callee in the window"),
            )
            if threshold > 0
        )

    def score(self, features: tuple[float, ...]) -> tuple[int, tuple[Reason, ...]]:
        found = self._number_findings(features)
        if features[_KNOWN] or features[_BAD_100] or features[_PEER]:
            found += self._reputation_findings(features)
        found += self._pattern_findings(features)
        if not found:
            return 0, ()
        found.sort(key=_by_points)
        return max(0, min(100, round(sum(r.points for r in found)))), tuple(found)

    def _number_findings(self, f: tuple[float, ...]) -> list[Reason]:
        out = [reason for index, reason in self._flags if f[index]]
        if not f[_KNOWN] and not any(f[i] for i in _WITHOUT_NUMBER):
            out.append(self._new)
        return out

    def _reputation_findings(self, f: tuple[float, ...]) -> list[Reason]:
        s = self._s
        out: list[Reason] = []
        reports, failed, peer = f[_REPORTS], f[_SCREEN_FAILED], f[_PEER]
        if reports >= _EVIDENCE_FLOOR:
            detail = f"spam reports and listings (decayed weight {reports:.2f})"
            out.append(Reason(code="reputation:reports", points=s.reports * math.log2(1.0 + reports), detail=detail))
        if failed >= _EVIDENCE_FLOOR:
            detail = f"failed screening (decayed {failed:.2f})"
            out.append(
                Reason(code="reputation:screen_failed", points=min(MAX_SCALE, failed) * s.screen_failed, detail=detail)
            )
        if peer >= _EVIDENCE_FLOOR:
            detail = f"peer verdicts (decayed {peer:.2f})"
            out.append(Reason(code="reputation:peer", points=s.peer * math.log2(1.0 + peer), detail=detail))
        good = f[_LEGIT] + f[_PASSED]
        if good >= _EVIDENCE_FLOOR:
            detail = f"answered long calls and passed screenings (decayed {good:.2f})"
            out.append(Reason(code="reputation:legitimate", points=s.legitimate * min(4.0, good), detail=detail))
        heat = max(f[_BAD_10] / 2.0, f[_BAD_100] / self._range_bad)
        if heat >= 1.0:
            detail = f"{int(f[_BAD_100])} bad numbers in the same /100 range ({int(f[_BAD_10])} in the /10)"
            out.append(Reason(code="reputation:range", points=s.range_heat * min(MAX_SCALE, heat), detail=detail))
        return out

    def _pattern_findings(self, f: tuple[float, ...]) -> list[Reason]:
        s, p = self._s, self._p
        out: list[Reason] = []
        per_minute, per_window = f[_CALLS_1M], f[_CALLS_1H]
        if per_minute >= p.rate_per_minute or per_window >= p.rate_per_hour:
            rate = max(_over(per_minute, p.rate_per_minute), _over(per_window, p.rate_per_hour))
            detail = f"{int(per_minute)} calls in a minute, {int(per_window)} in the window"
            out.append(Reason(code="pattern:rate", points=s.rate * rate, detail=detail))
        for index, threshold, points, code, text in self._counts:
            value = f[index]
            if value >= threshold:
                scale = min(MAX_SCALE, value / threshold)
                out.append(Reason(code=code, points=points * scale, detail=f"{int(value)} {text}"))
        ended = f[_ENDED]
        if ended >= 4 and f[_SHORT_RATIO] >= 0.7:
            detail = f"{f[_SHORT_RATIO]:.0%} of {int(ended)} recent calls short or unanswered"
            out.append(Reason(code="pattern:short_calls", points=s.short_calls, detail=detail))
        return out


def _by_points(reason: Reason) -> float:
    return -reason.points


_BLOCK, _SCREEN, _CONNECT = Action.BLOCK, Action.SCREEN, Action.CONNECT


def action_for(score: int, policy: PolicyConfig) -> Action:
    """Map a score to an action with the ``screen_at``/``block_at`` thresholds."""
    if score >= policy.block_at:
        return _BLOCK
    if score >= policy.screen_at:
        return _SCREEN
    return _CONNECT
