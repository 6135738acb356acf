"""Rebuild the shipped model and its evaluation (``make model``; numbers go into models/MODEL.md).

1. Generate the training traffic: four days of a 2,000-DID node, seeds 1-4, three mixes.
2. ``train_rounds``: replay, fit a logistic regression and gradient-boosted trees, calibrate and
   threshold on held-out campaigns, a second round with the first model deciding; keep the better.
3. Generate held-out traffic with other seeds (101-105), including two mixes never trained on
   (``quiet`` and ``models/eval-shifted.toml``), and replay each with the rules scorer and with the
   model deciding (enforce mode). Write every report and a Markdown summary under build/model/.

Run: .venv/bin/python models/build.py [--out build/model] [--install]
(--install copies the model over callshield/model/shipped/callshield-model.json.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from callshield.config import Config  # noqa: E402
from callshield.model import SHIPPED_MODEL  # noqa: E402
from callshield.model.train import Budgets, save, train_rounds  # noqa: E402

CLI = [sys.executable, "-m", "callshield"]

TRAIN = [(1, "default"), (2, "spoof-heavy"), (3, "snowshoe-heavy"), (4, "default")]
EVAL = [
    (101, "default"),
    (102, "spoof-heavy"),
    (103, "snowshoe-heavy"),
    (104, "quiet"),
    (105, str(ROOT / "models" / "eval-shifted.toml")),
]


def generate(out: Path, seed: int, mix: str) -> Path:
    name = Path(mix).stem if mix.endswith(".toml") else mix
    folder = out / f"sim-{seed}-{name}"
    if not (folder / "labels.csv").exists():
        subprocess.run([*CLI, "simulate", "--out", str(folder), "--seed", str(seed), "--mix", mix], check=True)  # noqa: S603 - our own CLI
    return folder


def evaluate(folder: Path, config: Path | None, name: str, out: Path) -> dict[str, object]:
    """``callshield replay`` with labels and a report directory; its JSON report."""
    report_dir = out / f"report-{folder.name}-{name}"
    report_dir.mkdir(parents=True, exist_ok=True)
    command = [*CLI, *(["--config", str(config)] if config else []), "replay", str(folder / "Master.csv")]
    command += ["--labels", str(folder / "labels.csv"), "--out", str(report_dir / "verdicts.csv")]
    command += ["--report", str(report_dir), "--json"]
    started = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True)  # noqa: S603
    data: dict[str, object] = json.loads(done.stdout)
    data["seconds"] = time.perf_counter() - started
    return data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "model")
    parser.add_argument("--install", action="store_true")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--evaluate-only", action="store_true", help="Evaluate the model already in --out.")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    train_sets = [generate(out, seed, mix) for seed, mix in TRAIN]
    eval_sets = [generate(out, seed, mix) for seed, mix in EVAL]
    model_path = out / "callshield-model.json"
    summary: dict[str, object] = {"trained_on": [f.name for f in train_sets]}
    if not args.evaluate_only:
        best, candidates, data = train_rounds(
            [(f / "Master.csv", f / "labels.csv") for f in train_sets],
            config=Config(),
            budgets=Budgets(),
            rounds=args.rounds,
            progress=print,
        )
        save(best, model_path)
        summary.update(calls=data.size, chosen=best.name, candidates={c.name: c.metrics for c in candidates})
        for c in candidates:
            print(c.name, json.dumps(c.metrics))
    model_config = out / "model.toml"
    model_config.write_text(f'[model]\nscorer = "model"\npath = "{model_path}"\n')
    evaluation: dict[str, object] = {}
    for folder in eval_sets:
        evaluation[folder.name] = {
            "rules": evaluate(folder, None, "rules", out),
            "model": evaluate(folder, model_config, "model", out),
        }
        print(f"evaluated {folder.name}")
    summary["evaluation"] = evaluation
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"model {model_path}; summary {out / 'summary.json'}")
    if args.install:
        shutil.copyfile(model_path, SHIPPED_MODEL)
        print(f"installed as {SHIPPED_MODEL}")


if __name__ == "__main__":
    main()
