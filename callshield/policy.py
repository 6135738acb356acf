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


class ExpertScorer:
    """The built-in scorer: configured points per finding (see module docstring)."""

    def __init__(self, scoring: ScoringConfig, patterns: PatternsConfig, reputation: ReputationConfig) -> None:
        self._s = scoring
        self._p = patterns
        self._r = reputation
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
        self._without_number = tuple(F[n] for n in ("anonymous", "withheld", "unavailable", "invalid", "short_code"))

    def score(self, features: tuple[float, ...]) -> tuple[int, tuple[Reason, ...]]:
        found = self._number_findings(features) + self._reputation_findings(features)
        found += self._pattern_findings(features)
        total = sum(reason.points for reason in found)
        found.sort(key=lambda r: -r.points)
        return max(0, min(100, round(total))), tuple(found)

    def _number_findings(self, f: tuple[float, ...]) -> list[Reason]:
        out = [reason for index, reason in self._flags if f[index]]
        if not f[F["known"]] and not any(f[i] for i in self._without_number):
            out.append(self._new)
        return out

    def _reputation_findings(self, f: tuple[float, ...]) -> list[Reason]:
        s, r = self._s, self._r
        out: list[Reason] = []
        reports = f[F["reports"]]
        if reports >= 0.05:
            out.append(
                Reason(
                    code="reputation:reports",
                    points=s.reports * math.log2(1.0 + reports),
                    detail=f"spam reports and listings (decayed weight {reports:.2f})",
                )
            )
        failed = f[F["screen_failed"]]
        if failed >= 0.05:
            out.append(
                Reason(
                    code="reputation:screen_failed",
                    points=min(MAX_SCALE, failed) * s.screen_failed,
                    detail=f"failed screening (decayed {failed:.2f})",
                )
            )
        peer = f[F["peer_bad"]]
        if peer >= 0.05:
            out.append(
                Reason(
                    code="reputation:peer",
                    points=s.reports * math.log2(1.0 + peer),
                    detail=f"peer verdicts (decayed {peer:.2f})",
                )
            )
        good = f[F["legit_calls"]] + f[F["screen_passed"]]
        if good >= 0.05:
            out.append(
                Reason(
                    code="reputation:legitimate",
                    points=s.legitimate * min(4.0, good),
                    detail=f"answered long calls and passed screenings (decayed {good:.2f})",
                )
            )
        heat = max(f[F["range_bad_10"]] / 2.0, f[F["range_bad_100"]] / max(1, r.range_bad_numbers))
        if heat >= 1.0:
            out.append(
                Reason(
                    code="reputation:range",
                    points=s.range_heat * min(MAX_SCALE, heat),
                    detail=f"{int(f[F['range_bad_100']])} bad numbers in the same /100 range "
                    f"({int(f[F['range_bad_10']])} in the /10)",
                )
            )
        return out

    def _pattern_findings(self, f: tuple[float, ...]) -> list[Reason]:
        s, p = self._s, self._p
        out: list[Reason] = []
        rate = max(_over(f[F["calls_1m"]], p.rate_per_minute), _over(f[F["calls_1h"]], p.rate_per_hour))
        if rate:
            out.append(
                Reason(
                    code="pattern:rate",
                    points=s.rate * rate,
                    detail=f"{int(f[F['calls_1m']])} calls in a minute, {int(f[F['calls_1h']])} in the window",
                )
            )
        for name, threshold, points, detail in (
            ("fanout", p.fanout, s.fanout, "distinct callees in the window"),
            ("sweep", p.sweep, s.sweep, "callees dialed in ascending sequence"),
            ("concurrent", p.concurrent, s.concurrent, "calls at the same time"),
            ("repeat", p.repeat, s.repeat, "calls to the same callee in the window"),
        ):
            scale = _over(f[F[name]], threshold)
            if scale:
                out.append(Reason(code=f"pattern:{name}", points=points * scale, detail=f"{int(f[F[name]])} {detail}"))
        ended = f[F["ended"]]
        if ended >= 4 and f[F["short_ratio"]] >= 0.7:
            out.append(
                Reason(
                    code="pattern:short_calls",
                    points=s.short_calls,
                    detail=f"{f[F['short_ratio']]:.0%} of {int(ended)} recent calls short or unanswered",
                )
            )
        return out


def action_for(score: int, policy: PolicyConfig) -> Action:
    """Map a score to an action with the ``screen_at``/``block_at`` thresholds."""
    if score >= policy.block_at:
        return Action.BLOCK
    if score >= policy.screen_at:
        return Action.SCREEN
    return Action.CONNECT
