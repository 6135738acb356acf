"""simulate → train → replay and explain with the model, as a user runs them (real processes)."""

from __future__ import annotations

import json
from pathlib import Path

from callshield.model import ModelScorer
from tests.integration.test_cli import cs


def test_a_model_trained_from_the_cli_decides_and_explains(tmp_path: Path) -> None:
    for seed, folder in ((5, "train"), (6, "held")):
        made = cs(tmp_path, "simulate", "--out", folder, "--seed", str(seed), "--hours", "3", "--dids", "400",
                  "--synthetic-pool")  # fmt: skip
        assert made.returncode == 0, made.stderr
    trained = cs(tmp_path, "train", "train/Master.csv", "train/labels.csv", "--out", "m.json", "--rounds", "1",
                 "--json")  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    report = json.loads(trained.stdout)
    assert set(report["candidates"]) == {"linear", "trees"} and report["chosen"] in report["candidates"]
    for figures in report["candidates"].values():
        assert figures["roc_auc"] is None or 0.5 < figures["roc_auc"] <= 1.0
        assert figures["compiled_score_us"] < figures["sklearn_predict_proba_us"]
    scorer = ModelScorer.load(tmp_path / "m.json")  # the saved file passes every check
    assert scorer.model.trained["calls"] == report["calls"]

    (tmp_path / "model.toml").write_text('[model]\nscorer = "model"\npath = "m.json"\n')
    replayed = cs(tmp_path, "--config", "model.toml", "replay", "held/Master.csv", "--labels", "held/labels.csv",
                  "--out", "v.csv", "--json")  # fmt: skip
    assert replayed.returncode == 0, replayed.stderr
    figures = json.loads(replayed.stdout)
    assert any(code.startswith("model:") for code in figures["reasons"])  # the model decided

    explained = cs(tmp_path, "--config", "model.toml", "explain", "+13125550123", "--json")
    assert explained.returncode == 0, explained.stderr
    model = json.loads(explained.stdout)["model"]
    assert model["name"] == scorer.name and len(model["contributions"]) == 8
    strengths = [abs(c["log_odds"]) for c in model["contributions"]]
    assert strengths == sorted(strengths, reverse=True)
    text = cs(tmp_path, "--config", "model.toml", "explain", "+13125550123")
    assert "model    callshield-" in text.stdout and "log-odds" in text.stdout


def test_train_refuses_unusable_input(tmp_path: Path) -> None:
    (tmp_path / "cdr.csv").write_text("not,a,cdr\n")
    (tmp_path / "labels.csv").write_text("uniqueid,label,family,campaign\n")
    result = cs(tmp_path, "train", "cdr.csv", "labels.csv")
    assert result.returncode in (2, 5) and "Traceback" not in result.stderr
    assert result.stderr.strip()
