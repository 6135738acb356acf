"""The learned scorer on the decision path: a checked model file compiled to plain Python.

scikit-learn's ``predict_proba`` costs ~100 µs per single row; the decision path cannot pay that.
The loader turns the model's *numbers* (checked by ``_format``) into the source of two functions,
one giving the margin (log-odds) and one giving the margin with per-feature contributions, and
compiles them. Thresholds, weights and leaf values are written with ``repr`` of finite floats and
feature indices as ints, so the generated source contains nothing from the file but numbers.

Contributions are exact and additive: for a linear model ``coef * standardized value``; for trees
the path attribution (each split credits its feature with the change in the subtree's mean value),
so ``bias + sum(contributions) == margin``.
"""

from __future__ import annotations

import bisect
import copy
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from callshield.features import FEATURE_NAMES, F
from callshield.model._format import Calibration, LinearModel, ModelFile, ScoreMap, Tree, TreeModel, load
from callshield.policy import Scorer
from callshield.verdict import Reason

_MarginFn = Callable[[Sequence[float]], float]
_ContribFn = Callable[[Sequence[float], list[float]], float]
MAX_REASONS = 5
REASONS_FROM_SCORE = 20
"""Below this score, or below the score map's screening anchor when that is higher, a verdict carries
no model reasons: they cost a second pass over the trees, and a connected call needs none
(``explain`` still shows every contribution)."""
MIN_CONTRIBUTION = 0.05
"""Contributions smaller than this (log-odds) are not worth a reason."""
_PEER_CODE = "reputation:peer"

EVIDENCE_FEATURES: tuple[str, ...] = (
    "reports",
    "screen_failed",
    "screen_passed",
    "peer_bad",
    "blocks",
    "range_bad_10",
    "range_bad_100",
)
"""Features a model does not read. Replayed CDRs cannot hold them (no reports, screenings or peers),
and ``blocks`` would feed the model's own verdicts back to it. The rules scorer's points for this
evidence are added to the model's score instead (see :class:`ModelScorer`)."""
MODEL_FEATURES: tuple[str, ...] = tuple(name for name in FEATURE_NAMES if name not in EVIDENCE_FEATURES)
"""What a trained model reads: the number facts and this node's call history and dialing patterns."""
EVIDENCE_CODES = frozenset(
    {"reputation:reports", "reputation:screen_failed", "reputation:peer", "reputation:range", "reputation:legitimate"}
)
_EVIDENCE_INDEX = tuple(F[name] for name in EVIDENCE_FEATURES)
_LEGIT = F["legit_calls"]

FEATURE_DESCRIPTIONS: dict[str, str] = {
    "anonymous": "anonymous caller",
    "withheld": "caller ID withheld",
    "unavailable": "no caller number",
    "invalid": "caller ID is not a valid number",
    "short_code": "short code caller",
    "premium_rate": "premium-rate number",
    "toll_free": "toll-free number",
    "mobile": "mobile number",
    "voip": "VoIP number",
    "international": "international caller",
    "neighbour": "caller shares area code and exchange with the callee",
    "known": "number seen before",
    "age_days": "days since first seen",
    "calls_seen_log": "calls seen (log)",
    "reports": "spam reports and listings (decayed)",
    "screen_failed": "failed screenings (decayed)",
    "screen_passed": "passed screenings (decayed)",
    "legit_calls": "answered long calls (decayed)",
    "short_calls_hist": "short or unanswered calls (decayed)",
    "blocks": "past blocks (decayed)",
    "peer_bad": "peer verdicts (decayed)",
    "range_bad_10": "bad numbers in the same /10",
    "range_bad_100": "bad numbers in the same /100",
    "calls_1m": "calls in the last minute",
    "calls_1h": "calls in the window",
    "concurrent": "calls at the same time",
    "fanout": "distinct callees in the window",
    "repeat": "calls to the same callee in the window",
    "sweep": "callees dialed in ascending sequence",
    "ended": "recent calls ended",
    "answer_ratio": "share of recent calls answered",
    "short_ratio": "share of recent calls short or unanswered",
    "range_callers": "other callers from the same number range (/10,000) in the window",
    "range_new": "new numbers among them",
    "range_ended": "ended calls from the range in the window",
    "range_short_ratio": "share of the range's ended calls short or unanswered",
}


def reason_code(feature: str) -> str:
    """The reason code a feature's contribution is reported under (peer evidence keeps the code the
    quorum rule knows)."""
    return _PEER_CODE if feature == "peer_bad" else f"model:{feature}"


class ModelScorer:
    """A :class:`callshield.policy.Scorer` backed by a model file. Build with :meth:`load`.

    The score is the model's (its probability through the score map, shared among its strongest
    contributions) plus, when given an ``evidence`` scorer, that scorer's points for the evidence a
    model does not read (reports, screenings, peer verdicts, bad ranges; answered calls are the
    model's). Reason points add up to the score, so the peer quorum rule can tell what is local.
    """

    def __init__(self, model: ModelFile, *, source: str = "model", evidence: Scorer | None = None) -> None:
        self.model = model
        self.source = source
        self._evidence = evidence
        self._index = [F[name] for name in model.features]
        margin_src, contrib_src, self._bias = _sources(model, self._index)
        self._margin: _MarginFn = _compile(margin_src, "margin")
        self._contrib: _ContribFn = _compile(contrib_src, "contributions")
        self._probability = _calibrator(model.calibration)
        self._score_p, self._score_s = model.score_map.probability, model.score_map.score
        anchors = model.score_map.score[1:-1]
        self._reasons_from = max(REASONS_FROM_SCORE, round(anchors[0])) if anchors else REASONS_FROM_SCORE
        self._names = FEATURE_NAMES

    @classmethod
    def load(cls, path: Path | str, *, evidence: Scorer | None = None) -> ModelScorer:
        """Load and compile a model file (raises :class:`ModelError` when it cannot be trusted)."""
        return cls(load(path), source=str(path), evidence=evidence)

    def with_evidence(self, evidence: Scorer | None) -> ModelScorer:
        """This compiled model with another evidence scorer (no recompilation)."""
        twin = copy.copy(self)
        twin._evidence = evidence
        return twin

    @property
    def name(self) -> str:
        return self.model.name

    def margin(self, features: Sequence[float]) -> float:
        """The model's raw output (log-odds before calibration)."""
        return self._margin(features)

    def probability(self, features: Sequence[float]) -> float:
        """Calibrated probability that the call is abusive."""
        return self._probability(self._margin(features))

    def score_of(self, probability: float) -> int:
        """The 0-100 risk score for a probability (the model's score map)."""
        return round(_interp(probability, self._score_p, self._score_s))

    def contributions(self, features: Sequence[float]) -> tuple[float, dict[str, float]]:
        """``(bias, {feature: contribution})`` in log-odds; bias + sum == margin."""
        values = [0.0] * len(FEATURE_NAMES)
        self._contrib(features, values)
        return self._bias, {self._names[i]: values[i] for i in self._index}

    def score(self, features: tuple[float, ...]) -> tuple[int, tuple[Reason, ...]]:
        score = self.score_of(self._probability(self._margin(features)))
        reasons: tuple[Reason, ...] = ()
        if score >= self._reasons_from:
            values = [0.0] * len(FEATURE_NAMES)
            self._contrib(features, values)
            reasons = self._reasons(score, features, values)
        if self._evidence is None or not any(features[i] for i in _EVIDENCE_INDEX):
            return score, reasons
        evidence = self._evidence_reasons(features)
        if not evidence:
            return score, reasons
        if not reasons and score > 0:  # the points must still add up (the quorum rule sums them)
            reasons = (Reason(code="model:score", points=float(score), detail=f"learned model score {score}"),)
        found = sorted((*reasons, *evidence), key=_by_points)
        return max(0, min(100, round(score + sum(r.points for r in evidence)))), tuple(found)

    def _evidence_reasons(self, features: tuple[float, ...]) -> list[Reason]:
        assert self._evidence is not None
        without_calls = list(features)
        without_calls[_LEGIT] = 0.0  # answered calls are the model's evidence, passed screenings are not
        _, found = self._evidence.score(tuple(without_calls))
        return [reason for reason in found if reason.code in EVIDENCE_CODES]

    def _reasons(self, score: int, features: tuple[float, ...], values: list[float]) -> tuple[Reason, ...]:
        positive = sorted(
            ((values[i], i) for i in self._index if values[i] >= MIN_CONTRIBUTION), reverse=True
        )[:MAX_REASONS]
        total = sum(value for value, _ in positive)
        if total <= 0:
            return ()
        names = self._names
        return tuple(
            Reason(
                code=reason_code(names[i]),
                points=score * value / total,
                detail=f"{FEATURE_DESCRIPTIONS[names[i]]}: {features[i]:.3g} (model {value:+.2f} log-odds)",
            )
            for value, i in positive
        )


def _by_points(reason: Reason) -> float:
    return -reason.points


def _interp(x: float, xs: list[float], ys: list[float]) -> float:
    """Piecewise-linear interpolation through (xs, ys), clipped at the ends (numpy.interp's rule)."""
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    hi = bisect.bisect_right(xs, x)
    lo = hi - 1
    span = xs[hi] - xs[lo]
    return ys[lo] + (ys[hi] - ys[lo]) * (x - xs[lo]) / span if span else ys[hi]


def _calibrator(cal: Calibration) -> Callable[[float], float]:
    if cal.kind == "sigmoid":
        a, b = cal.a, cal.b

        def sigmoid(margin: float) -> float:
            z = a * margin + b
            return 1.0 / (1.0 + math.exp(z)) if z < 700 else 0.0

        return sigmoid
    xs, ys = list(cal.x), list(cal.y)
    return lambda margin: _interp(margin, xs, ys)


def _compile(source: str, name: str) -> Callable[..., float]:
    namespace: dict[str, object] = {"log1p": math.log1p}
    exec(compile(source, f"<callshield model {name}>", "exec"), namespace)  # noqa: S102 - numbers only
    function = namespace[name]
    assert callable(function)
    return function


def _sources(model: ModelFile, index: list[int]) -> tuple[str, str, float]:
    if model.linear is not None and model.kind == "linear":
        return _linear_sources(model.linear, index)
    assert model.trees is not None
    return _tree_sources(model.trees, index)


def _transformed(linear: LinearModel, position: int, feature: int) -> str:
    value = f"f[{feature}]"
    return f"log1p(max(0.0, {value}))" if linear.log1p[position] else value


def _linear_sources(linear: LinearModel, index: list[int]) -> tuple[str, str, float]:
    weights = [c / s for c, s in zip(linear.coef, linear.scale, strict=True)]
    offset = linear.intercept - sum(w * m for w, m in zip(weights, linear.mean, strict=True))
    terms = " + ".join(
        f"{w!r} * {_transformed(linear, pos, feat)}" for pos, (w, feat) in enumerate(zip(weights, index, strict=True))
    )
    margin = f"def margin(f):\n    return {offset!r} + {terms}\n"
    lines = ["def contributions(f, c):"]
    for pos, (w, feat) in enumerate(zip(weights, index, strict=True)):
        lines.append(f"    c[{feat}] = {w!r} * ({_transformed(linear, pos, feat)} - {linear.mean[pos]!r})")
    lines.append(f"    return {linear.intercept!r} + " + " + ".join(f"c[{feat}]" for feat in index))
    return margin, "\n".join(lines) + "\n", linear.intercept


def _tree_sources(model: TreeModel, index: list[int]) -> tuple[str, str, float]:
    margin = ["def margin(f):", f"    m = {model.baseline!r}"]
    contrib = ["def contributions(f, c):", f"    m = {model.baseline!r}"]
    bias = model.baseline
    for tree in model.trees:
        _emit_tree(tree, 0, 1, index, margin, attribution=False)
        _emit_tree(tree, 0, 1, index, contrib, attribution=True)
        bias += tree.value[0]
    margin.append("    return m")
    contrib.append("    return m")
    return "\n".join(margin) + "\n", "\n".join(contrib) + "\n", bias


def _emit_tree(tree: Tree, node: int, depth: int, index: list[int], out: list[str], *, attribution: bool) -> None:
    pad = "    " * depth
    left, right = tree.left[node], tree.right[node]
    if left == -1:
        out.append(f"{pad}m += {tree.value[node]!r}")
        return
    feature = index[tree.feature[node]]
    out.append(f"{pad}if f[{feature}] <= {tree.threshold[node]!r}:")
    for child in (left, right):
        if attribution:
            out.append(f"{pad}    c[{feature}] += {tree.value[child] - tree.value[node]!r}")
        _emit_tree(tree, child, depth + 1, index, out, attribution=attribution)
        if child == left:
            out.append(f"{pad}else:")


def score_map_from_thresholds(screen_p: float, block_p: float, *, screen_at: int, block_at: int) -> ScoreMap:
    """A score map placing ``screen_at`` at probability ``screen_p`` and ``block_at`` at ``block_p``."""
    screen_p = min(max(screen_p, 1e-6), 1 - 2e-6)
    block_p = min(max(block_p, screen_p + 1e-6), 1 - 1e-6)
    return ScoreMap(probability=[0.0, screen_p, block_p, 1.0], score=[0.0, float(screen_at), float(block_at), 100.0])
