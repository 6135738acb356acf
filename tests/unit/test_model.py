"""The learned scorer's file format, compiled scoring, evidence points and fallback."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import msgspec
import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from callshield.config import Config, ModelConfig, PolicyConfig
from callshield.features import FEATURE_NAMES, F
from callshield.model import (
    MODEL_FEATURES,
    SHIPPED_MODEL,
    ModelError,
    ModelFile,
    ModelScorer,
    dump,
    parse,
    score_map_from_thresholds,
    scorer_for,
)
from callshield.model._export import isotonic_calibration, linear_from_sklearn, sigmoid_calibration, trees_from_sklearn
from callshield.model._format import Calibration, Tree, TreeModel, with_digest
from callshield.model.train import Budgets, thresholds
from callshield.policy import ExpertScorer

COLUMNS = [F[name] for name in MODEL_FEATURES]


def _data(seed: int, rows: int = 6000) -> tuple[NDArray[np.float64], NDArray[np.int_]]:
    rng = np.random.default_rng(seed)
    x = np.zeros((rows, len(FEATURE_NAMES)))
    for j in range(len(FEATURE_NAMES)):
        x[:, j] = rng.exponential(1.0, rows) * (rng.random(rows) < 0.5)
    signal = x[:, F["sweep"]] + x[:, F["fanout"]] - x[:, F["legit_calls"]] + rng.normal(0, 0.5, rows)
    return x, (signal > 1.0).astype(int)


def _model(kind: str, **fields: object) -> tuple[ModelFile, object, NDArray[np.float64]]:
    x, y = _data(1)
    xm = x[:, COLUMNS]
    if kind == "trees":
        est = HistGradientBoostingClassifier(max_iter=40, max_depth=4, early_stopping=False, random_state=0).fit(xm, y)
        margins = est.decision_function(xm)
        section: dict[str, object] = {"trees": trees_from_sklearn(est)}
        predict = est.decision_function
    else:
        flags = [True] * len(COLUMNS)
        scaler = StandardScaler().fit(np.log1p(xm))
        est = LogisticRegression(max_iter=1000).fit(scaler.transform(np.log1p(xm)), y)
        margins = est.decision_function(scaler.transform(np.log1p(xm)))
        section = {"linear": linear_from_sklearn(scaler, est, flags)}

        def predict(values: NDArray[np.float64]) -> NDArray[np.float64]:
            return np.asarray(est.decision_function(scaler.transform(np.log1p(values))))

    base: dict[str, object] = {
        "format": "callshield-model",
        "version": 1,
        "name": f"test-{kind}",
        "kind": kind,
        "features": list(MODEL_FEATURES),
        "calibration": sigmoid_calibration(margins, y),
        "score_map": score_map_from_thresholds(0.5, 0.9, screen_at=50, block_at=80),
        **section,
    }
    base.update(fields)
    return ModelFile(**base), predict, x  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["trees", "linear"])
def test_compiled_model_reproduces_scikit_learn(kind: str) -> None:
    model, predict, _ = _model(kind)
    scorer = ModelScorer(parse(dump(model)))
    x, _ = _data(7, rows=3000)  # rows the model never saw
    expected = predict(x[:, COLUMNS])  # type: ignore[operator]
    compiled = np.array([scorer.margin(tuple(row.tolist())) for row in x])
    assert np.max(np.abs(compiled - expected)) < 1e-9


@pytest.mark.parametrize("kind", ["trees", "linear"])
def test_contributions_add_up_to_the_margin(kind: str) -> None:
    model, _, x = _model(kind)
    scorer = ModelScorer(model)
    for row in x[:200]:
        features = tuple(row.tolist())
        bias, contributions = scorer.contributions(features)
        assert set(contributions) == set(MODEL_FEATURES)
        assert bias + sum(contributions.values()) == pytest.approx(scorer.margin(features), abs=1e-9)


def test_reasons_share_the_score_and_name_the_strongest_features() -> None:
    model, _, x = _model("trees")
    scorer = ModelScorer(model)
    features = list(x[0].tolist())
    features[F["sweep"]] = 6.0
    features[F["fanout"]] = 5.0
    score, reasons = scorer.score(tuple(features))
    assert score >= 80
    assert reasons[0].code in {"model:sweep", "model:fanout"}
    assert sum(r.points for r in reasons) == pytest.approx(score)
    assert all(r.code.startswith("model:") for r in reasons)


def test_isotonic_calibration_matches_scikit_learn() -> None:
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(3)
    margins = rng.normal(0, 2, 4000)
    labels = (margins + rng.normal(0, 1, 4000) > 0).astype(int)
    model, _, _ = _model("trees", calibration=isotonic_calibration(margins, labels))
    scorer = ModelScorer(model)
    fit = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(margins, labels)
    probe = np.linspace(-8, 8, 101)
    ours = [scorer._probability(float(m)) for m in probe]
    assert np.max(np.abs(np.array(ours) - fit.predict(probe))) < 1e-12


def _tamper(model: ModelFile, change: dict[str, object], *, redigest: bool = True) -> bytes:
    data = msgspec.to_builtins(with_digest(model))
    for dotted, value in change.items():
        target = data
        *path, last = dotted.split(".")
        for part in path:
            target = target[int(part)] if part.isdigit() else target[part]
        target[last if not last.isdigit() else int(last)] = value
    if redigest:
        data.pop("digest")
        decoded = msgspec.convert(data, ModelFile)
        return msgspec.json.encode(with_digest(decoded))
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "pickle"}, "format"),
        ({"features.0": "caller_number"}, "features"),
        ({"trees.trees.0.left.0": 0}, "children"),
        ({"trees.trees.0.right.0": 1}, "children"),
        ({"trees.trees.0.feature.0": 99}, "feature index"),
        ({"calibration.a": 1.0}, "rise"),
        ({"score_map.score": [0.0, 90.0, 80.0, 100.0]}, "score_map"),
    ],
)
def test_a_broken_model_is_refused_with_the_reason(change: dict[str, object], message: str) -> None:
    model, _, _ = _model("trees")
    with pytest.raises(ModelError, match=message):
        parse(_tamper(model, change))


def test_a_changed_file_fails_its_digest() -> None:
    model, _, _ = _model("trees")
    raw = _tamper(model, {"trees.baseline": 3.0}, redigest=False)
    with pytest.raises(ModelError, match="digest"):
        parse(raw)


@pytest.mark.parametrize("raw", [b"", b"\x80\x04\x95", b"[]", b'{"format": "callshield-model"}', b"nan"])
def test_garbage_is_not_a_model(raw: bytes) -> None:
    with pytest.raises(ModelError):
        parse(raw)


def test_a_tree_with_shared_children_is_refused() -> None:
    model, _, _ = _model("trees")
    dag = Tree(feature=[0, 0, 0, 0], threshold=[0.5, 0.5, 0.5, 0.5], left=[1, 3, -1, -1], right=[2, 2, -1, -1],
               value=[0.0, 0.0, 1.0, 2.0])  # fmt: skip
    bad = msgspec.structs.replace(model, trees=TreeModel(baseline=0.0, trees=[dag]))
    with pytest.raises(ModelError, match=r"not a tree|children"):
        parse(dump(bad))


def test_unusable_model_falls_back_to_the_rules(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = tmp_path / "model.json"
    broken.write_bytes(b'{"format": "callshield-model", "version": 1}')
    config = Config(model=ModelConfig(scorer="model", path=str(broken)))
    with caplog.at_level(logging.WARNING):
        scorer = scorer_for(config)
    assert isinstance(scorer, ExpertScorer)
    assert "scoring with the rules instead" in caplog.text
    missing = Config(model=ModelConfig(scorer="model", path=str(tmp_path / "absent.json")))
    assert isinstance(scorer_for(missing), ExpertScorer)


def test_model_scorer_adds_the_rules_points_for_evidence_it_does_not_read(tmp_path: Path) -> None:
    model, _, _ = _model("linear")
    path = tmp_path / "m.json"
    path.write_bytes(dump(model))
    config = Config(model=ModelConfig(scorer="model", path=str(path)))
    scorer = scorer_for(config)
    assert isinstance(scorer, ModelScorer)
    quiet = [0.0] * len(FEATURE_NAMES)
    quiet[F["known"]] = 1.0
    base, _ = scorer.score(tuple(quiet))
    reported = list(quiet)
    reported[F["reports"]] = 2.0
    score, reasons = scorer.score(tuple(reported))
    assert "reputation:reports" in [r.code for r in reasons]
    assert score > base
    peer = list(quiet)
    peer[F["peer_bad"]] = 1.0
    peer_score, peer_reasons = scorer.score(tuple(peer))
    local = sum(r.points for r in peer_reasons if r.code != "reputation:peer")
    shared = next(r.points for r in peer_reasons if r.code == "reputation:peer")
    assert peer_score == pytest.approx(local + shared, abs=1)
    model_only, _ = scorer.score(tuple(quiet))
    assert local == pytest.approx(model_only, abs=1)  # what the quorum rule sees as this node's own score


def test_thresholds_keep_legitimate_calls_within_budget() -> None:
    rng = np.random.default_rng(0)
    legit = rng.beta(1, 20, 100_000)
    abusive = rng.beta(8, 2, 5_000)
    probability = np.concatenate([legit, abusive])
    labels = np.concatenate([np.zeros(len(legit), dtype=int), np.ones(len(abusive), dtype=int)])
    screen_p, block_p = thresholds(probability, labels, Budgets(flagged=0.005, blocked=0.0005))
    assert (legit >= screen_p).mean() <= 0.005
    assert (legit >= block_p).mean() <= 0.0005
    assert screen_p <= block_p
    assert (legit >= np.nextafter(screen_p, 0) - 1e-3).mean() > 0.004  # not needlessly strict


def test_the_shipped_model_loads_and_scores_fast_enough_to_matter() -> None:
    if not SHIPPED_MODEL.exists():
        pytest.skip("no shipped model in this checkout")
    scorer = ModelScorer.load(SHIPPED_MODEL)
    score, _ = scorer.score(tuple([0.0] * len(FEATURE_NAMES)))
    assert 0 <= score <= 100
    policy = PolicyConfig()
    assert scorer.model.score_map.score[1:3] == [float(policy.screen_at), float(policy.block_at)]


def test_calibration_refuses_a_falling_isotonic_map() -> None:
    model, _, _ = _model("trees", calibration=Calibration(kind="isotonic", x=[0.0, 1.0], y=[0.9, 0.1]))
    with pytest.raises(ModelError, match="non-decreasing"):
        parse(dump(model))


def test_config_check_warns_when_the_model_cannot_be_used(tmp_path: Path) -> None:
    from callshield.admin import config_warnings

    missing = Config(model=ModelConfig(scorer="model", path=str(tmp_path / "absent.json")))
    assert any(w.startswith("model: cannot read model file") for w in config_warnings(missing))
    if SHIPPED_MODEL.exists():
        assert config_warnings(Config(model=ModelConfig(scorer="model"))) == []
    assert config_warnings(Config(model=ModelConfig(scorer="rules", path=str(tmp_path / "absent.json")))) == []
