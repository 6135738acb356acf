"""The replay report: what the engine did with the calls and, given labels, how well it did.

Every figure about catching calls uses ``decided`` (the policy's action before shadow mode), so a
replay in shadow mode measures what enforcing would do. A call is *caught* when it was decided
``block`` or ``screen``. Percentiles are nearest-rank (no interpolation): the p-th percentile of n
sorted values is the value at rank ceil(p/100 * n).

With labels:
- shares of abusive calls blocked / screened / caught, overall, per family, and *after a campaign's
  first 10 calls*: the calls with index >= 10 within their campaign, counted in time order from 0;
- shares of legitimate calls screened and blocked, overall and per family;
- detection delay of a campaign: the number of its calls before its first caught call (0 when the
  first is caught). Campaigns never caught count as infinitely late: the median and p90 over all
  campaigns are ``None`` ("not reached") when they fall among those; ``median_detected`` and
  ``p90_detected`` are over the caught campaigns only. Abusive calls without a campaign id count in
  the shares but not in the campaign figures.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Final

import msgspec

from callshield.config import PolicyConfig
from callshield.replay._labels import ABUSIVE, LEGIT, Label
from callshield.replay._runner import ReplayRecord
from callshield.replay._verdicts import VerdictRow, row_of

AFTER_FIRST: Final = 10
"""Calls of a campaign before the ``after_first_10`` figures start counting."""
_CAUGHT: Final = frozenset({"block", "screen"})


class Share(msgspec.Struct, frozen=True, kw_only=True):
    """How many of some calls were blocked and screened (by ``decided``); shares are ``None`` for no calls."""

    calls: int
    blocked: int
    screened: int
    blocked_share: float | None
    screened_share: float | None
    caught_share: float | None
    """Blocked or screened."""


class ScoreSummary(msgspec.Struct, frozen=True, kw_only=True):
    counts: list[int]
    """Calls per score, index 0 to 100."""
    mean: float | None
    p50: int | None
    p90: int | None
    p99: int | None
    max: int | None


class CampaignDelay(msgspec.Struct, frozen=True, kw_only=True):
    campaign: str
    family: str
    calls: int
    delay: int | None
    """Calls of the campaign before its first caught call; ``None``: never caught."""


class Detection(msgspec.Struct, frozen=True, kw_only=True):
    campaigns: int
    detected: int
    never_detected: int
    median: float | None
    """Over all campaigns, never-caught ones counted as infinitely late (``None``: not reached)."""
    p90: float | None
    median_detected: float | None
    p90_detected: float | None


class FamilyFigures(msgspec.Struct, frozen=True, kw_only=True):
    label: str
    family: str
    share: Share
    after_first_10: Share | None = None
    """Abusive families: calls with index >= 10 within their campaign."""
    detection: Detection | None = None
    """Abusive families: detection delay of their campaigns."""


class ThresholdPoint(msgspec.Struct, frozen=True, kw_only=True):
    """Calls with a score >= ``threshold`` counted as flagged abusive."""

    threshold: int
    flagged: int
    precision: float | None
    recall: float | None


class LabelledFigures(msgspec.Struct, frozen=True, kw_only=True):
    matched: int
    """Calls with a label."""
    unlabelled_calls: int
    labels_without_call: int
    abusive: Share
    abusive_after_first_10: Share
    legit: Share
    families: list[FamilyFigures]
    score_counts: dict[str, list[int]]
    """Calls per score (index 0-100) for ``legit`` and ``abusive``."""
    curve: list[ThresholdPoint]
    detection: Detection
    campaigns: list[CampaignDelay]
    legit_caught_reasons: dict[str, int] = {}
    """Legitimate calls blocked or screened, by primary reason (what to tune first)."""
    abusive_missed_reasons: dict[str, int] = {}
    """Abusive calls connected, by primary reason."""


class ReplayReport(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a replay report shows; JSON-serialisable with ``msgspec.json.encode`` or :meth:`as_dict`."""

    calls: int
    mode: str
    screen_at: int
    block_at: int
    metric: str
    """Which action the catch figures use: always ``decided``."""
    actions: dict[str, int]
    """Calls by the action the PBX was told (``connect`` for all in shadow mode)."""
    decided: dict[str, int]
    reasons: dict[str, int]
    """Calls by primary reason, most frequent first."""
    scores: ScoreSummary
    rejected: dict[str, int]
    """CDR rows rejected, by reason."""
    labels_rejected: dict[str, int]
    labelled: LabelledFigures | None

    def as_dict(self) -> dict[str, object]:
        built = msgspec.to_builtins(self)
        assert isinstance(built, dict)
        return built


def build_report(
    records_or_rows: Iterable[ReplayRecord | VerdictRow],
    labels: Mapping[str, Label] | None,
    *,
    policy: PolicyConfig,
    rejected: Mapping[str, int] | None = None,
    labels_rejected: Mapping[str, int] | None = None,
) -> ReplayReport:
    """Compute the report over replayed calls (records or verdict rows, any order: they are
    ordered by start time here, stably). ``rejected`` and ``labels_rejected`` are carried through."""
    rows = [item if isinstance(item, VerdictRow) else row_of(item) for item in records_or_rows]
    rows.sort(key=_start)
    actions: Counter[str] = Counter()
    decided: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    score_counts = [0] * 101
    for row in rows:
        actions[row.action] += 1
        decided[row.decided] += 1
        reasons[row.reason] += 1
        score_counts[max(0, min(100, row.score))] += 1
    return ReplayReport(
        calls=len(rows),
        mode=policy.mode.value,
        screen_at=policy.screen_at,
        block_at=policy.block_at,
        metric="decided",
        actions=_ordered(actions),
        decided=_ordered(decided),
        reasons=_ordered(reasons),
        scores=_score_summary(score_counts),
        rejected=_ordered(Counter(rejected or {})),
        labels_rejected=_ordered(Counter(labels_rejected or {})),
        labelled=None if labels is None else _labelled(rows, labels),
    )


class _Tally:
    __slots__ = ("blocked", "calls", "screened")

    def __init__(self) -> None:
        self.calls = self.blocked = self.screened = 0

    def add(self, decided: str) -> None:
        self.calls += 1
        if decided == "block":
            self.blocked += 1
        elif decided == "screen":
            self.screened += 1

    def share(self) -> Share:
        calls = self.calls
        return Share(
            calls=calls,
            blocked=self.blocked,
            screened=self.screened,
            blocked_share=self.blocked / calls if calls else None,
            screened_share=self.screened / calls if calls else None,
            caught_share=(self.blocked + self.screened) / calls if calls else None,
        )


class _Campaign:
    __slots__ = ("calls", "family", "first_caught")

    def __init__(self, family: str) -> None:
        self.family = family
        self.calls = 0
        self.first_caught: int | None = None


def _labelled(rows: list[VerdictRow], labels: Mapping[str, Label]) -> LabelledFigures:
    by_label = {LEGIT: _Tally(), ABUSIVE: _Tally()}
    after = _Tally()
    families: dict[tuple[str, str], _Tally] = {}
    families_after: dict[str, _Tally] = {}
    campaigns: dict[str, _Campaign] = {}
    score_counts = {LEGIT: [0] * 101, ABUSIVE: [0] * 101}
    false_alarms: Counter[str] = Counter()
    missed: Counter[str] = Counter()
    matched = 0
    for row in rows:
        label = labels.get(row.uniqueid)
        if label is None:
            continue
        matched += 1
        kind, decided = label.label, row.decided
        by_label[kind].add(decided)
        score_counts[kind][max(0, min(100, row.score))] += 1
        family = families.get((kind, label.family))
        if family is None:
            family = families[(kind, label.family)] = _Tally()
        family.add(decided)
        if kind != ABUSIVE:
            if decided in _CAUGHT:
                false_alarms[row.reason] += 1
            continue
        if decided not in _CAUGHT:
            missed[row.reason] += 1
        if not label.campaign:
            continue
        campaign = campaigns.get(label.campaign)
        if campaign is None:
            campaign = campaigns[label.campaign] = _Campaign(label.family)
        index = campaign.calls
        campaign.calls += 1
        if campaign.first_caught is None and decided in _CAUGHT:
            campaign.first_caught = index
        if index >= AFTER_FIRST:
            after.add(decided)
            family_after = families_after.get(label.family)
            if family_after is None:
                family_after = families_after[label.family] = _Tally()
            family_after.add(decided)
    delays = [
        CampaignDelay(campaign=name, family=c.family, calls=c.calls, delay=c.first_caught)
        for name, c in sorted(campaigns.items())
    ]
    figures = [
        FamilyFigures(
            label=kind,
            family=family,
            share=tally.share(),
            after_first_10=(families_after.get(family) or _Tally()).share() if kind == ABUSIVE else None,
            detection=_detection([d for d in delays if d.family == family]) if kind == ABUSIVE else None,
        )
        for (kind, family), tally in sorted(families.items())
    ]
    return LabelledFigures(
        matched=matched,
        unlabelled_calls=len(rows) - matched,
        labels_without_call=len(labels) - matched,
        abusive=by_label[ABUSIVE].share(),
        abusive_after_first_10=after.share(),
        legit=by_label[LEGIT].share(),
        families=figures,
        score_counts=score_counts,
        curve=_curve(score_counts[LEGIT], score_counts[ABUSIVE]),
        detection=_detection(delays),
        campaigns=delays,
        legit_caught_reasons=_ordered(false_alarms),
        abusive_missed_reasons=_ordered(missed),
    )


def _detection(delays: list[CampaignDelay]) -> Detection:
    late = sorted(math.inf if d.delay is None else float(d.delay) for d in delays)
    caught = [value for value in late if value != math.inf]
    return Detection(
        campaigns=len(late),
        detected=len(caught),
        never_detected=len(late) - len(caught),
        median=_finite(percentile(late, 50)),
        p90=_finite(percentile(late, 90)),
        median_detected=percentile(caught, 50),
        p90_detected=percentile(caught, 90),
    )


def percentile(ordered: list[float], p: float) -> float | None:
    """Nearest-rank percentile of sorted values; ``None`` for no values."""
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isinf(value) else value


def _curve(legit: list[int], abusive: list[int]) -> list[ThresholdPoint]:
    total_abusive = sum(abusive)
    points = []
    flagged_legit = flagged_abusive = 0
    for threshold in range(100, -1, -1):  # from the top: counts of scores >= threshold accumulate
        flagged_legit += legit[threshold]
        flagged_abusive += abusive[threshold]
        flagged = flagged_legit + flagged_abusive
        points.append(
            ThresholdPoint(
                threshold=threshold,
                flagged=flagged,
                precision=flagged_abusive / flagged if flagged else None,
                recall=flagged_abusive / total_abusive if total_abusive else None,
            )
        )
    points.reverse()
    return points


def _score_summary(counts: list[int]) -> ScoreSummary:
    total = sum(counts)
    if not total:
        return ScoreSummary(counts=counts, mean=None, p50=None, p90=None, p99=None, max=None)

    def at(p: float) -> int:
        rank, seen = max(1, math.ceil(p / 100.0 * total)), 0
        for score, count in enumerate(counts):
            seen += count
            if seen >= rank:
                return score
        return 100

    return ScoreSummary(
        counts=counts,
        mean=sum(score * count for score, count in enumerate(counts)) / total,
        p50=at(50),
        p90=at(90),
        p99=at(99),
        max=max(score for score, count in enumerate(counts) if count),
    )


def _ordered(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _start(row: VerdictRow) -> float:
    return row.start


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _num(value: float | None, never: str = "not reached") -> str:
    return never if value is None else f"{value:g}"


def _share_line(title: str, share: Share) -> str:
    return (
        f"{title:<34} {share.calls:>9}  blocked {_pct(share.blocked_share):>8}  screened "
        f"{_pct(share.screened_share):>8}  caught {_pct(share.caught_share):>8}"
    )


def format_report(report: ReplayReport) -> str:
    """The report as text for a terminal."""
    lines = [
        f"calls replayed {report.calls}; mode {report.mode} (screen_at {report.screen_at}, block_at "
        f"{report.block_at}); catch figures use the decided action (before shadow mode)",
    ]
    if report.rejected:
        lines.append("CDR rows rejected: " + ", ".join(f"{k} {v}" for k, v in report.rejected.items()))
    if report.labels_rejected:
        lines.append("label rows rejected: " + ", ".join(f"{k} {v}" for k, v in report.labels_rejected.items()))
    lines.append("actions: " + (", ".join(f"{k} {v}" for k, v in report.actions.items()) or "none"))
    if report.decided != report.actions:
        lines.append("decided: " + ", ".join(f"{k} {v}" for k, v in report.decided.items()))
    lines.append("reasons:")
    lines.extend(f"  {count:>9}  {reason}" for reason, count in list(report.reasons.items())[:20])
    if len(report.reasons) > 20:
        lines.append(f"  ... {len(report.reasons) - 20} more")
    s = report.scores
    lines.append(
        f"scores: mean {'-' if s.mean is None else f'{s.mean:.1f}'}, p50 {_num(s.p50, '-')}, p90 {_num(s.p90, '-')}, "
        f"p99 {_num(s.p99, '-')}, max {_num(s.max, '-')}"
    )
    buckets = [sum(s.counts[i : i + 10]) for i in range(0, 100, 10)]
    buckets[-1] += s.counts[100]
    lines.append("  " + "  ".join(f"{i * 10}-{i * 10 + 9 if i < 9 else 100}: {n}" for i, n in enumerate(buckets)))
    labelled = report.labelled
    if labelled is None:
        return "\n".join(lines)
    lines.append(
        f"labelled calls {labelled.matched} (unlabelled calls {labelled.unlabelled_calls}, labels without a call "
        f"{labelled.labels_without_call})"
    )
    lines.append(_share_line("abusive", labelled.abusive))
    lines.append(_share_line(f"abusive after first {AFTER_FIRST} of campaign", labelled.abusive_after_first_10))
    lines.append(_share_line("legitimate", labelled.legit))
    d = labelled.detection
    lines.append(
        f"detection delay (calls before first block/screen) over {d.campaigns} campaigns: median {_num(d.median)}, "
        f"p90 {_num(d.p90)}; never detected {d.never_detected}; over detected ones: median "
        f"{_num(d.median_detected, '-')}, p90 {_num(d.p90_detected, '-')}"
    )
    if labelled.legit_caught_reasons:
        lines.append(
            "legitimate calls blocked or screened, by reason: "
            + ", ".join(f"{k} {v}" for k, v in list(labelled.legit_caught_reasons.items())[:10])
        )
    if labelled.abusive_missed_reasons:
        lines.append(
            "abusive calls connected, by reason: "
            + ", ".join(f"{k} {v}" for k, v in list(labelled.abusive_missed_reasons.items())[:10])
        )
    lines.append("per family:")
    for family in labelled.families:
        lines.append("  " + _share_line(f"{family.label}/{family.family}", family.share))
        if family.after_first_10 is not None and family.after_first_10.calls:
            lines.append("  " + _share_line(f"  after first {AFTER_FIRST}", family.after_first_10))
        if family.detection is not None and family.detection.campaigns:
            fd = family.detection
            lines.append(
                f"    detection delay over {fd.campaigns} campaigns: median {_num(fd.median)}, p90 {_num(fd.p90)}, "
                f"never detected {fd.never_detected}"
            )
    return "\n".join(lines)
