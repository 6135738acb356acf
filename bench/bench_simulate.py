"""Traffic generator benchmark: rows/s of `callshield simulate` after the caller pool is loaded.

Measures, in this process: loading the FTC pool (cold: parsing the gzip file into a fresh cache
directory; warm: from that cache), then for each run generating the calls and writing Master.csv,
labels.csv and simulation.json into a temporary directory. Wall time and CPU time (process_time) are
both reported: on a shared machine CPU time is the steadier figure.

Run: .venv/bin/python bench/bench_simulate.py [--runs 5] [--dids 2000] [--hours 24] [--mix default]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from callshield.simulate import (
    NumberPool,
    SimulationOptions,
    load_mix,
    load_pool,
    metadata,
    simulate,
    synthetic_pool,
    write_cdr,
    write_labels,
    write_simulation,
)

ROOT = Path(__file__).resolve().parents[1]
FTC_DIR = ROOT.parent / "shared" / "data" / "ftc"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dids", type=int, default=2000)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--mix", default="default")
    parser.add_argument("--skip-cold", action="store_true", help="do not time parsing the FTC file")
    parser.add_argument("--parts", type=int, default=5, help="repetitions of the in-memory parts measurement")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(scratch) / "cache"
        if FTC_DIR.exists():
            if not args.skip_cold:
                began = time.perf_counter()
                pool = load_pool(FTC_DIR, cache_dir=cache)
                print(f"pool cold (parse {pool.description['rows']:,} rows, write cache): "
                      f"{time.perf_counter() - began:.2f} s")  # fmt: skip
            began = time.perf_counter()
            pool = load_pool(FTC_DIR, cache_dir=cache if not args.skip_cold else None)
            print(f"pool warm (from cache): {time.perf_counter() - began:.2f} s, "
                  f"{len(pool.numbers):,} numbers, same-area share {pool.same_npa_share():.3f}")  # fmt: skip
        else:
            print(f"{FTC_DIR} not found: synthetic pool", file=sys.stderr)
            pool = synthetic_pool()

        mix = load_mix(args.mix)
        results = []
        for run in range(args.runs):
            options = SimulationOptions(seed=run + 1, hours=args.hours, dids=args.dids, mix=mix)
            wall, cpu = time.perf_counter(), time.process_time()
            simulation = simulate(options, pool)
            gen_wall, gen_cpu = time.perf_counter() - wall, time.process_time() - cpu
            wall, cpu = time.perf_counter(), time.process_time()
            write_simulation(Path(scratch) / f"run{run}", simulation)
            write_wall, write_cpu = time.perf_counter() - wall, time.process_time() - cpu
            rows = len(simulation.calls)
            results.append((rows, gen_wall, gen_cpu, write_wall, write_cpu))
            print(
                f"seed {run + 1}: {rows:,} rows; generate {gen_wall:.3f} s wall / {gen_cpu:.3f} s CPU; "
                f"write {write_wall:.3f} s wall / {write_cpu:.3f} s CPU; "
                f"{rows / (gen_wall + write_wall):,.0f} rows/s wall, {rows / (gen_cpu + write_cpu):,.0f} rows/s CPU"
            )
        parts = measure_parts(pool, SimulationOptions(seed=1, hours=args.hours, dids=args.dids, mix=mix), args.parts)
    wall_rates = [rows / (g + w) for rows, g, _, w, _ in results]
    cpu_rates = [rows / (g + w) for rows, _, g, _, w in results]
    print(
        f"median over {len(results)} runs: {statistics.median(wall_rates):,.0f} rows/s wall, "
        f"{statistics.median(cpu_rates):,.0f} rows/s CPU (generate + write all three files); "
        f"best {max(wall_rates):,.0f} rows/s wall"
    )
    median_rows = statistics.median(r[0] for r in results)
    best_generate, best_write = min(r[2] for r in results), min(r[4] for r in results)
    rate = median_rows / (best_generate + best_write)
    print(
        f"least CPU over the runs: generate {best_generate:.3f} s ({best_generate / median_rows * 1e6:.1f} µs/row), "
        f"write {best_write:.3f} s ({best_write / median_rows * 1e6:.1f} µs/row): {rate:,.0f} rows/s "
        "(the least disturbed figures on a shared machine)"
    )
    if parts:
        rows_1, timings = parts
        total = sum(timings.values())
        print(
            f"parts in memory, seed 1, least CPU of {args.parts}: "
            + ", ".join(f"{name} {seconds:.3f} s" for name, seconds in timings.items())
            + f" for {rows_1:,} rows: {rows_1 / total:,.0f} rows/s (no file system)"
        )
    print(f"python {platform.python_version()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")


def measure_parts(pool: NumberPool, options: SimulationOptions, repeat: int) -> tuple[int, dict[str, float]] | None:
    """Least CPU time of each part (generate, CDR, labels, metadata) over ``repeat`` runs, in memory."""
    if repeat <= 0:
        return None
    best: dict[str, float] = {}
    rows = 0
    for _ in range(repeat):
        began = time.process_time()
        simulation = simulate(options, pool)
        spent = {"generate": time.process_time() - began}
        began = time.process_time()
        write_cdr(io.StringIO(), simulation.calls, simulation.dids, simulation.first_channel)
        spent["cdr"] = time.process_time() - began
        began = time.process_time()
        write_labels(io.StringIO(), simulation)
        spent["labels"] = time.process_time() - began
        began = time.process_time()
        metadata(simulation)
        spent["metadata"] = time.process_time() - began
        rows = len(simulation.calls)
        for name, seconds in spent.items():
            best[name] = min(best.get(name, seconds), seconds)
    return rows, best


if __name__ == "__main__":
    main()
