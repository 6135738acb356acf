"""Per-decision cost of the learned scorer.

1. The scorer alone on 20,000 recorded feature vectors: the compiled margin and the full ``score()``
   (margin, calibration, score map, reasons when the score is 20 or more). ``callshield train``
   prints scikit-learn's single-row ``predict_proba`` cost beside the compiled model's.
2. ``Firewall.decide()`` on the same stream of 200,000 calls (random callers in a few hundred
   exchanges to 2,000 DIDs, with hangup feedback), once with the rules scorer and once with the model.

Run: .venv/bin/python bench/bench_model.py [--model FILE] [--calls N]
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from callshield.clock import ManualClock  # noqa: E402
from callshield.config import Config, ModelConfig  # noqa: E402
from callshield.engine import Firewall  # noqa: E402
from callshield.model import SHIPPED_MODEL, ModelScorer  # noqa: E402
from callshield.verdict import Call, CallOutcome  # noqa: E402

NOW = 1_795_000_000.0


def calls(count: int, seed: int) -> list[tuple[Call, float, float]]:
    rng = random.Random(seed)
    exchanges = [f"+1{rng.randint(201, 989)}{rng.randint(200, 999)}" for _ in range(300)]
    out = []
    t = NOW
    for _ in range(count):
        t += rng.expovariate(50.0)
        caller = f"{rng.choice(exchanges)}{rng.randint(0, 9999):04d}"
        callee = f"+1312555{rng.randint(0, 1999):04d}"
        billsec = rng.choice((0.0, 0.0, 5.0, 45.0, 180.0))
        out.append((Call(caller=caller, callee=callee, started_at=t), billsec, t + 20 + billsec))
    return out


def run_decide(
    config: Config, stream: list[tuple[Call, float, float]]
) -> tuple[float, list[float], list[tuple[float, ...]]]:
    with tempfile.TemporaryDirectory() as tmp:
        fw = Firewall.open(config, clock=ManualClock(NOW), path=Path(tmp) / "bench.sqlite3")
        latencies: list[float] = []
        vectors: list[tuple[float, ...]] = []
        pending: list[tuple[float, str, float]] = []
        gc.collect()
        started = time.perf_counter()
        for index, (call, billsec, ended) in enumerate(stream):
            t0 = time.perf_counter()
            verdict = fw.decide(call)
            latencies.append(time.perf_counter() - t0)
            if index % 10 == 0:
                vectors.append(verdict.features)
            pending.append((ended, verdict.id, billsec))
            if len(pending) >= 200:
                for end, decision, sec in pending:
                    fw.feedback(CallOutcome(decision_id=decision, dialstatus="ANSWER" if sec else "NOANSWER",
                                            billsec=sec, ended_at=end))  # fmt: skip
                pending.clear()
            if index % 10_000 == 9_999:
                fw.flush()
        fw.flush()
        elapsed = time.perf_counter() - started
        fw.close()
    return len(stream) / elapsed, latencies, vectors


def per_call(fn: object, rows: list[tuple[float, ...]]) -> float:
    assert callable(fn)
    start = time.perf_counter()
    for row in rows:
        fn(row)
    return (time.perf_counter() - start) / len(rows) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL)
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    scorer = ModelScorer.load(args.model)
    print(f"python {platform.python_version()}, model {scorer.name} ({scorer.model.kind}) from {args.model}")
    stream = calls(args.calls, seed=11)
    rules_rate, rules_lat, vectors = run_decide(Config(), stream)
    model_config = Config(model=ModelConfig(scorer="model", path=str(args.model)))
    model_rate, model_lat, _ = run_decide(model_config, stream)
    rows = vectors[:20_000]
    print(f"scorer alone, per call over {len(rows)} recorded vectors:")
    print(f"  compiled margin        {per_call(scorer.margin, rows):7.1f} us")
    print(f"  compiled score()       {per_call(scorer.score, rows):7.1f} us")
    for name, rate, lat in (("rules", rules_rate, rules_lat), ("model", model_rate, model_lat)):
        q = statistics.quantiles(lat, n=100)
        print(
            f"decide() with {name:<5}: {rate:8.0f} calls/s incl. writes; decide p50 {q[49] * 1e6:6.1f} us, "
            f"p99 {q[98] * 1e6:6.1f} us, mean {statistics.fmean(lat) * 1e6:6.1f} us"
        )


if __name__ == "__main__":
    main()
