"""``callshield train``: fit the learned scorer on replayed, labelled CDRs (needs scikit-learn).

The features come from replaying the CDR through the live engine (``callshield.replay``), so the
model sees exactly what a running node computes (no train/serve skew). Steps:

1. replay each training CDR with the rules scorer and keep every call's feature vector and label;
2. split by campaign (an operation's calls never sit on both sides) into a fitting part and a
   held-out part;
3. fit the candidates (a logistic regression on log-scaled, standardized features, and gradient-
   boosted trees), calibrate each on the held-out part (Platt scaling), and place the score map's
   ``screen_at``/``block_at`` at the probabilities where the held-out legitimate calls stay within the
   screening and blocking budgets;
4. keep the candidate that flags most abusive calls within those budgets, and save it.

Evaluation on other seeds and mixes is a replay with the model deciding (``evaluate``).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import sklearn
from numpy.typing import NDArray

from callshield.config import Config
from callshield.errors import ImportFormatError
from callshield.features import F
from callshield.model._compiled import MODEL_FEATURES, ModelScorer, score_map_from_thresholds
from callshield.model._export import linear_from_sklearn, sigmoid_calibration, trees_from_sklearn
from callshield.model._format import FORMAT, VERSION, Calibration, ModelFile, dump, parse
from callshield.policy import ExpertScorer, Scorer
from callshield.verdict import Mode

ABUSIVE = "abusive"


@dataclass
class Dataset:
    """Replayed calls: the full feature vectors and what the labels say about each."""

    features: NDArray[np.float64]
    abusive: NDArray[np.int_]
    family: list[str]
    campaign: list[str]
    rank: NDArray[np.int_]
    """Position of the call within its campaign (0 = its first call)."""
    sources: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.abusive)


@dataclass(frozen=True)
class Budgets:
    """Share of held-out legitimate calls the thresholds may flag (screen or block) and block."""

    flagged: float = 0.0025
    blocked: float = 0.0002


@dataclass
class Candidate:
    name: str
    model: ModelFile
    metrics: dict[str, float]


def replay_dataset(
    cdr: Path, labels: Path, *, config: Config, scorer: Scorer | None = None, mode: Mode = Mode.SHADOW
) -> Dataset:
    """Replay ``cdr`` (rules scorer unless given) and pair every call with its label.

    In shadow mode (the first round) every call is connected, so every real outcome is learned and
    the features do not depend on a scorer's blocks. Later rounds replay in enforce mode with the
    previous round's model deciding, so the model also learns the situations its own blocks create
    (a blocked call teaches nothing live): the DAgger recipe against train/serve skew.
    """
    from callshield.replay import read_cdr, read_labels, replay

    config = msgspec.structs.replace(config, policy=msgspec.structs.replace(config.policy, mode=mode))
    read = read_cdr(cdr)
    known = read_labels(labels)
    rows: list[tuple[float, ...]] = []
    abusive: list[int] = []
    family: list[str] = []
    campaign: list[str] = []
    seen: dict[str, int] = {}
    rank: list[int] = []
    for record in replay(read.calls, config=config, scorer=scorer):
        label = known.get(record.cdr.uniqueid)
        if label is None:
            continue
        rows.append(record.verdict.features)
        abusive.append(int(label.label == ABUSIVE))
        family.append(label.family)
        campaign.append(label.campaign)
        rank.append(seen.get(label.campaign, 0))
        seen[label.campaign] = rank[-1] + 1
    if not rows:
        raise ImportFormatError(f"{cdr}: no call has a label in {labels}")
    return Dataset(
        features=np.asarray(rows, dtype=np.float64),
        abusive=np.asarray(abusive),
        family=family,
        campaign=campaign,
        rank=np.asarray(rank),
        sources=[str(cdr)],
    )


def concat(parts: Sequence[Dataset]) -> Dataset:
    """One dataset from several (campaign ids are prefixed by their source so they stay distinct)."""
    return Dataset(
        features=np.vstack([p.features for p in parts]),
        abusive=np.concatenate([p.abusive for p in parts]),
        family=[f for p in parts for f in p.family],
        campaign=[f"{i}:{c}" for i, p in enumerate(parts) for c in p.campaign],
        rank=np.concatenate([p.rank for p in parts]),
        sources=[s for p in parts for s in p.sources],
    )


def model_columns(data: Dataset) -> NDArray[np.float64]:
    """The columns a model reads (:data:`MODEL_FEATURES`)."""
    return data.features[:, [F[name] for name in MODEL_FEATURES]]


def split_by_campaign(data: Dataset, *, held_out: float, seed: int) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Masks (fit, held out): every campaign entirely on one side."""
    campaigns = sorted(set(data.campaign))
    rng = np.random.default_rng(seed)
    chosen = set(rng.choice(len(campaigns), size=max(1, round(held_out * len(campaigns))), replace=False).tolist())
    held = {campaigns[i] for i in chosen}
    mask = np.fromiter((c in held for c in data.campaign), dtype=bool, count=data.size)
    return ~mask, mask


def thresholds(probability: NDArray[np.float64], abusive: NDArray[np.int_], budgets: Budgets) -> tuple[float, float]:
    """``(screen_p, block_p)``: the lowest probabilities at which the legitimate calls flagged and
    blocked stay within their budgets."""
    legit = np.sort(probability[abusive == 0])[::-1]
    return _cut(legit, budgets.flagged), _cut(legit, budgets.blocked)


def _cut(legit_descending: NDArray[np.float64], budget: float) -> float:
    allowed = math.floor(budget * len(legit_descending))
    if allowed >= len(legit_descending):
        return 0.0
    return float(np.nextafter(legit_descending[allowed], np.inf))


def _calibrated(margins: NDArray[np.float64], calibration: Calibration) -> NDArray[np.float64]:
    z = np.clip(calibration.a * margins + calibration.b, -700, 700)
    return np.asarray(1.0 / (1.0 + np.exp(z)), dtype=np.float64)


def fit_candidates(
    data: Dataset,
    *,
    config: Config,
    budgets: Budgets = Budgets(),
    seed: int = 0,
    kinds: Sequence[str] = ("linear", "trees"),
) -> list[Candidate]:
    """Fit, calibrate and threshold each kind of model on ``data`` (see the module docstring)."""
    fit_mask, held_mask = split_by_campaign(data, held_out=0.3, seed=seed)
    x = model_columns(data)
    y = data.abusive
    out = []
    for kind in kinds:
        margin_fit = _fit_linear if kind == "linear" else _fit_trees
        section, margins, single_row = margin_fit(x[fit_mask], y[fit_mask], x, seed=seed)
        calibration = sigmoid_calibration(margins[held_mask], y[held_mask])
        probability = _calibrated(margins, calibration)
        screen_p, block_p = thresholds(probability[held_mask], y[held_mask], budgets)
        model = ModelFile(
            format=FORMAT,
            version=VERSION,
            name=f"callshield-{kind}",
            kind="linear" if kind == "linear" else "trees",
            features=list(MODEL_FEATURES),
            calibration=calibration,
            score_map=score_map_from_thresholds(
                screen_p, block_p, screen_at=config.policy.screen_at, block_at=config.policy.block_at
            ),
            trained={
                "sklearn": sklearn.__version__,
                "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
                "calls": int(data.size),
                "abusive_calls": int(y.sum()),
                "sources": ", ".join(Path(s).parent.name or s for s in data.sources),
                "seed": seed,
            },
            **section,
        )
        compiled_us = _check_export(model, data.features, margins)
        metrics = held_out_metrics(probability[held_mask], data, held_mask, screen_p, block_p)
        metrics["sklearn_predict_proba_us"] = single_row
        metrics["compiled_score_us"] = compiled_us
        model = msgspec.structs.replace(
            model,
            trained={**model.trained, **{f"held_out_{k}": round(v, 6) for k, v in metrics.items() if math.isfinite(v)}},
        )
        out.append(Candidate(name=kind, model=model, metrics=metrics))
    return out


def held_out_metrics(
    probability: NDArray[np.float64], data: Dataset, mask: NDArray[np.bool_], screen_p: float, block_p: float
) -> dict[str, float]:
    """Ranking and threshold figures of one candidate on the held-out calls."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = data.abusive[mask]
    after10 = (data.rank[mask] >= 10) & (y == 1)
    flagged = probability >= screen_p
    blocked = probability >= block_p
    return {
        "roc_auc": float(roc_auc_score(y, probability)) if 0 < y.sum() < len(y) else float("nan"),
        "average_precision": float(average_precision_score(y, probability)) if y.sum() else float("nan"),
        "abusive_flagged": _share(flagged, y == 1),
        "abusive_flagged_after_10": _share(flagged, after10),
        "abusive_blocked": _share(blocked, y == 1),
        "legit_flagged": _share(flagged, y == 0),
        "legit_blocked": _share(blocked, y == 0),
        "screen_probability": screen_p,
        "block_probability": block_p,
    }


def _share(hit: NDArray[np.bool_], among: NDArray[np.bool_]) -> float:
    total = int(among.sum())
    return float((hit & among).sum() / total) if total else float("nan")


def _log1p_flags(x: NDArray[np.float64]) -> list[bool]:
    """Log-scale the counting features (any value above 1), not the flags and ratios."""
    return [bool(x[:, j].max(initial=0.0) > 1.0) for j in range(x.shape[1])]


def _fit_linear(
    x: NDArray[np.float64], y: NDArray[np.int_], every: NDArray[np.float64], *, seed: int
) -> tuple[dict[str, Any], NDArray[np.float64], float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    flags = _log1p_flags(x)

    def transform(values: NDArray[np.float64]) -> NDArray[np.float64]:
        out = values.copy()
        for j, flag in enumerate(flags):
            if flag:
                out[:, j] = np.log1p(np.maximum(out[:, j], 0.0))
        return out

    scaler = StandardScaler().fit(transform(x))
    logistic = LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(scaler.transform(transform(x)), y)
    margins = logistic.decision_function(scaler.transform(transform(every)))
    cost = _single_row_cost(lambda row: logistic.predict_proba(scaler.transform(transform(row))), every)
    return {"linear": linear_from_sklearn(scaler, logistic, flags)}, np.asarray(margins, dtype=np.float64), cost


def _fit_trees(
    x: NDArray[np.float64], y: NDArray[np.int_], every: NDArray[np.float64], *, seed: int
) -> tuple[dict[str, Any], NDArray[np.float64], float]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(
        max_iter=150, max_depth=5, learning_rate=0.1, l2_regularization=1.0, early_stopping=False, random_state=seed
    ).fit(x, y)
    margins = model.decision_function(every)
    cost = _single_row_cost(model.predict_proba, every)
    return {"trees": trees_from_sklearn(model)}, np.asarray(margins, dtype=np.float64), cost


def train_rounds(
    sets: Sequence[tuple[Path, Path]],
    *,
    config: Config,
    budgets: Budgets = Budgets(),
    seed: int = 0,
    kinds: Sequence[str] = ("linear", "trees"),
    rounds: int = 2,
    progress: Callable[[str], None] = lambda _: None,
) -> tuple[Candidate, list[Candidate], Dataset]:
    """Fit over ``rounds`` (see :func:`replay_dataset`); returns the chosen candidate, the last
    round's candidates and the data they were fitted on."""
    parts = [replay_dataset(cdr, labels, config=config) for cdr, labels in sets]
    data = concat(parts)
    if not 0 < int(data.abusive.sum()) < data.size:
        raise ImportFormatError("training needs both legitimate and abusive calls in the labels")
    progress(f"round 1: {data.size} calls replayed in shadow mode")
    candidates = fit_candidates(data, config=config, budgets=budgets, seed=seed, kinds=kinds)
    best = choose(candidates)
    for round_number in range(2, rounds + 1):
        scorer = ModelScorer(best.model).with_evidence(ExpertScorer(config.scoring, config.patterns, config.reputation))
        enforced = [replay_dataset(c, lab, config=config, scorer=scorer, mode=Mode.ENFORCE) for c, lab in sets]
        data = concat([data, *enforced])
        progress(f"round {round_number}: {data.size} calls with the {best.name} model deciding")
        candidates = fit_candidates(data, config=config, budgets=budgets, seed=seed, kinds=kinds)
        best = choose(candidates)
    return best, candidates, data


def choose(candidates: Sequence[Candidate]) -> Candidate:
    """The candidate that flags most abusive calls after a campaign's first ten within the budgets."""
    return max(candidates, key=lambda c: (_finite(c.metrics["abusive_flagged_after_10"]), c.metrics["roc_auc"]))


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -1.0


def save(candidate: Candidate, path: Path) -> None:
    path.write_bytes(dump(candidate.model))


def _check_export(model: ModelFile, features: NDArray[np.float64], margins: NDArray[np.float64]) -> float:
    """The saved file must reproduce the fitted estimator (checked on up to 2,000 calls); returns the
    compiled ``score()``'s cost per call in µs on those calls."""
    scorer = ModelScorer(parse(dump(model)))
    picked = range(0, len(features), max(1, len(features) // 2000))
    rows = [tuple(features[i].tolist()) for i in picked]
    worst = max((abs(scorer.margin(row) - margins[i]) for row, i in zip(rows, picked, strict=True)), default=0.0)
    if worst > 1e-6:
        raise RuntimeError(f"exported {model.name} differs from the fitted model by {worst:g} log-odds")
    start = time.perf_counter()
    for row in rows:
        scorer.score(row)
    return (time.perf_counter() - start) / max(1, len(rows)) * 1e6


def _single_row_cost(predict_proba: Any, x: NDArray[np.float64], rows: int = 200) -> float:
    """scikit-learn's ``predict_proba`` on one row at a time, µs per call (what the compiled form avoids)."""
    start = time.perf_counter()
    for i in range(min(rows, len(x))):
        predict_proba(x[i : i + 1])
    return (time.perf_counter() - start) / max(1, min(rows, len(x))) * 1e6
