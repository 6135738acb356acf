"""In-process decision benchmark: throughput and latency of Firewall.decide() on a big database.

Database: the FTC complaint file (2.18 million numbers) plus synthetic listed numbers up to
3 million numbers. Traffic: 1 million distinct callers (a quarter of them numbers in the database, the rest unknown
numbers in the same exchanges)
to 2,000 DIDs; the clock advances 1/20,000 s per call. Warm (default): every caller is decided once
with caches big enough for all of them, then N calls from callers drawn at random are measured.
Cold (--cold): default cache sizes and no warm-up pass, so most callers miss every cache.
Writes are flushed synchronously every 10,000 decisions and that time is included in the
throughput (in the server they run on the writer task). Latency percentiles are of decide() alone.

Run: .venv/bin/python bench/bench_decide.py [--calls N] [--cold]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import resource
import shutil
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from callshield import db  # noqa: E402
from callshield.clock import ManualClock  # noqa: E402
from callshield.config import Config, PatternsConfig, Seconds, StorageConfig  # noqa: E402
from callshield.engine import Firewall  # noqa: E402
from callshield.importer import import_file  # noqa: E402
from callshield.numbers import Normalizer  # noqa: E402
from callshield.reputation import ReputationStore  # noqa: E402
from callshield.verdict import Call  # noqa: E402

OUT = ROOT / "bench" / "out"
FTC = ROOT.parent / "shared" / "data" / "ftc" / "ftc_dnc_api_complaints_2020-02-14_2021-04-21.csv.gz"
TARGET_NUMBERS = 3_000_000
NOW = 1_795_000_000.0
FLUSH_EVERY = 10_000
"""Decisions per write batch: at 20,000 calls/s, the default flush_interval (0.5 s)."""


def build_database(path: Path) -> int:
    conn = db.connect(path)
    store = ReputationStore(conn, half_life=30 * 86400, now=NOW)
    if store.count() >= TARGET_NUMBERS:
        return store.count()
    normalizer = Normalizer()
    import_file(conn, store, FTC, fmt="ftc", region="US", normalizer=normalizer, now=NOW, dates="now", force=True)
    missing = TARGET_NUMBERS - store.count()
    rng = random.Random(7)
    extra = OUT / "extra.txt"
    with extra.open("w") as out:
        for _ in range(missing + missing // 20):
            out.write(f"+1{rng.randint(2_000_000_000, 9_999_999_999)}\n")
    import_file(conn, store, extra, fmt="list", region="US", normalizer=normalizer, now=NOW, force=True)
    count = store.count()
    conn.close()
    return count


def known_numbers(path: Path, n: int) -> list[int]:
    conn = db.connect(path)
    rows = conn.execute("SELECT number FROM reputation ORDER BY random() LIMIT ?", (n,)).fetchall()
    conn.close()
    return [r[0] for r in rows]


def caller_pool(path: Path, callers: int) -> list[str]:
    """A quarter numbers from the database, the rest unknown numbers in the same exchanges (valid
    area code and exchange, random line number), as real callers are."""
    rng = random.Random(11)
    known = known_numbers(path, callers // 4)
    pool = [f"+{k}" for k in known]
    while len(pool) < callers:
        pool.append(f"+{rng.choice(known) // 10_000}{rng.randrange(10_000):04d}")
    rng.shuffle(pool)
    return pool


def traffic(pool: list[str], picks: list[int], seed: int) -> list[Call]:
    rng = random.Random(seed)
    dids = [f"+1312555{i:04d}" for i in range(2000)]
    return [Call(caller=pool[i], callee=rng.choice(dids)) for i in picks]


def run(calls: int, cold: bool) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    base = OUT / "reputation-3m.sqlite3"
    started = time.perf_counter()
    numbers = build_database(base)
    path = OUT / "bench.sqlite3"
    for leftover in OUT.glob("bench.sqlite3*"):
        leftover.unlink()
    shutil.copyfile(base, path)  # every run starts from the same 3-million-number database
    print(f"database: {numbers:,} numbers, {path.stat().st_size / 1e6:.0f} MB ({time.perf_counter() - started:.0f} s)")
    pool = caller_pool(path, 1_000_000)
    rng = random.Random(5)
    warm = [] if cold else traffic(pool, list(range(len(pool))), 1)
    measured = traffic(pool, [rng.randrange(len(pool)) for _ in range(calls)], 2)
    print(
        f"traffic: {len(pool):,} distinct callers; warm-up {len(warm):,} calls, measured {len(measured):,} calls "
        f"({'cold caches' if cold else 'warm caches'})"
    )
    clock = ManualClock(NOW)
    cache = 262_144 if cold else 1_500_000
    # Snapshots are taken explicitly below (once after the warm-up, once at the end) and timed apart.
    config = Config(
        storage=StorageConfig(path=str(path), number_cache=cache, reputation_cache=cache),
        patterns=PatternsConfig(snapshot_interval=Seconds(10**9), max_callers=1_500_000),
    )
    fw = Firewall(config=config, conn=db.connect(path), clock=clock)
    for i, call in enumerate(warm):
        clock.advance(1 / 20_000)
        fw.decide(call)
        if i % 10_000 == 0:
            fw.flush()
    fw.flush(snapshot=True)
    gc.collect()
    gc.freeze()
    gc_time = [0.0, 0]
    gc_started = [0.0]

    def gc_watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            gc_time[0] += time.perf_counter() - gc_started[0]
            gc_time[1] += info["generation"] == 2

    gc.callbacks.append(gc_watch)
    loads_before = fw.store.loads
    hits_before = fw.normalizer.cache_stats()
    latencies = []
    perf = time.perf_counter
    flush_time = 0.0
    actions: Counter[str] = Counter()
    notable = 0
    cpu_start, wall_start = time.process_time(), perf()
    for i, call in enumerate(measured):
        clock.advance(1 / 20_000)
        t = perf()
        verdict = fw.decide(call)
        latencies.append(perf() - t)
        actions[verdict.action] += 1
        notable += verdict.action != "connect" or verdict.score >= 20
        if i % FLUSH_EVERY == 0:
            flush_start = perf()
            fw.flush()
            flush_time += perf() - flush_start
    flush_start = perf()
    fw.flush()
    flush_time += perf() - flush_start
    wall, cpu = perf() - wall_start, time.process_time() - cpu_start
    latencies.sort()
    q = statistics.quantiles(latencies, n=1000)
    hits, misses = (a - b for a, b in zip(fw.normalizer.cache_stats(), hits_before, strict=True))
    print(
        f"decisions: {len(measured):,} in {wall:.2f} s wall, {cpu:.2f} s CPU -> {len(measured) / wall:,.0f}/s "
        f"({len(measured) / cpu:,.0f}/s per CPU-second, flushes included)"
    )
    deciding = sum(latencies)
    print(
        f"decide() alone: {len(measured) / deciding:,.0f}/s on one core ({deciding:.2f} s); writes every "
        f"{FLUSH_EVERY:,} decisions: {flush_time:.2f} s, {flush_time / len(measured) * 1e6:.1f} us per decision"
    )
    print(
        f"decide() latency: p50 {q[499] * 1e6:.1f} us, p90 {q[899] * 1e6:.1f} us, p99 {q[989] * 1e6:.1f} us, "
        f"p99.9 {q[998] * 1e6:.1f} us, max {latencies[-1] * 1e6:.0f} us"
    )
    print(f"verdicts: {dict(actions)}; notable (indexed by caller): {notable / len(measured):.0%}")
    print(f"garbage collection: {gc_time[0]:.2f} s in total, {gc_time[1]} full collections")
    print(
        f"reputation block loads from SQLite: {fw.store.loads - loads_before:,}; "
        f"number cache hit rate {hits / max(1, hits + misses):.1%}"
    )
    print(
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; "
        f"python {platform.python_version()}, {os.cpu_count()} cores"
    )
    snapshot_start = perf()
    written = fw.flush(snapshot=True)
    snapshot = perf() - snapshot_start
    print(
        f"snapshot of the windows and sightings of the {len(measured):,} measured calls: {snapshot:.2f} s, "
        f"{snapshot / len(measured) * 1e6:.1f} us per decision ({written} statements)"
    )
    fw.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500_000)
    parser.add_argument("--cold", action="store_true", help="default cache sizes, no warm-up")
    parser.add_argument("--flush-every", type=int, default=FLUSH_EVERY, help="decisions per write batch")
    args = parser.parse_args()
    FLUSH_EVERY = args.flush_every
    run(args.calls, args.cold)
