"""Per-decision cost of the learned scorer, on generated traffic replayed through the engine.

A day of `callshield simulate` traffic (seed 7, default mix; generated into bench/out/ once) is
replayed through the real engine twice: with the rules scorer and with the shipped model (which
adds the rules' evidence points). For each run: the scorer's own time per call (a timing wrapper
around ``score()``), and the replay's CPU time per call (decide + feedback + writes), so the
difference is what the model costs a decision. The compiled margin alone is timed on the recorded
feature vectors. CPU times (``process_time``) are used: they hold on a busy machine where wall
clocks do not. ``callshield train`` prints scikit-learn's single-row ``predict_proba`` cost beside
the compiled model's.

Run: .venv/bin/python bench/bench_model.py [--model FILE] [--hours H]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from callshield.config import Config  # noqa: E402
from callshield.model import SHIPPED_MODEL, ModelScorer  # noqa: E402
from callshield.policy import ExpertScorer, Scorer  # noqa: E402
from callshield.replay import read_cdr, replay  # noqa: E402
from callshield.verdict import Reason  # noqa: E402

OUT = ROOT / "bench" / "out"


class TimedScorer:
    """Wraps a scorer and keeps the CPU time of every ``score()`` call."""

    def __init__(self, inner: Scorer) -> None:
        self.inner = inner
        self.times: list[float] = []

    def score(self, features: tuple[float, ...]) -> tuple[int, tuple[Reason, ...]]:
        start = time.perf_counter()
        result = self.inner.score(features)
        self.times.append(time.perf_counter() - start)
        return result


def traffic(hours: int) -> Path:
    folder = OUT / f"model-traffic-{hours}h"
    if not (folder / "Master.csv").exists():
        command = [sys.executable, "-m", "callshield", "simulate", "--out", str(folder), "--seed", "7"]
        subprocess.run([*command, "--hours", str(hours)], check=True, capture_output=True)
    return folder / "Master.csv"


def run(cdr: Path, scorer: TimedScorer) -> tuple[float, list[tuple[float, ...]]]:
    calls = read_cdr(cdr).calls
    vectors: list[tuple[float, ...]] = []
    start = time.process_time()
    for record in replay(calls, config=Config(), scorer=scorer):
        if len(vectors) < 20_000:
            vectors.append(record.verdict.features)
    return (time.process_time() - start) / len(calls), vectors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL)
    parser.add_argument("--hours", type=int, default=12)
    args = parser.parse_args()
    config = Config()
    rules = ExpertScorer(config.scoring, config.patterns, config.reputation)
    model = ModelScorer.load(args.model).with_evidence(rules)
    cdr = traffic(args.hours)
    trees = len(model.model.trees.trees) if model.model.trees else 0
    print(f"python {platform.python_version()}; model {model.name} ({trees} trees); {cdr}")
    results = {}
    for name, inner in (("rules", rules), ("model", model)):
        timed = TimedScorer(inner)
        per_call, vectors = run(cdr, timed)
        results[name] = (per_call, timed.times, vectors)
    vectors = results["rules"][2]
    start = time.process_time()
    for row in vectors:
        model.margin(row)
    margin = (time.process_time() - start) / len(vectors)
    print(f"compiled margin alone: {margin * 1e6:.1f} us per call ({len(vectors)} recorded vectors)")
    for name, (per_call, times, _) in results.items():
        q = statistics.quantiles(times, n=100)
        print(
            f"{name:<5}: score() mean {statistics.fmean(times) * 1e6:6.1f} us, p50 {q[49] * 1e6:6.1f}, "
            f"p99 {q[98] * 1e6:6.1f}; replay CPU per call {per_call * 1e6:6.1f} us "
            f"({1 / per_call:,.0f} calls per CPU-s)"
        )
    added = results["model"][0] - results["rules"][0]
    print(f"the model adds {added * 1e6:.1f} us of CPU per replayed call")


if __name__ == "__main__":
    main()
