"""Replay throughput: CDR rows per second through `callshield replay`, end to end.

Data: a synthetic labelled Master.csv (cdr_csv, 18 columns) shaped like generated traffic: a PBX
with 2,000 DIDs over a few days; 80% of calls from a pool of 20,000 legitimate callers (repeat
callers, answered calls of 20 s to 10 min, some unanswered), the rest from abusive campaigns
(robocalls from a fresh random number per call, sequential sweeps through the DID range, snowshoe
over a few hundred numbers, wangiri one-ring calls from premium ranges). 0.1% of rows are broken
on purpose (bad times, missing columns). It is a load, not a realistic model of abuse: the
traffic generator (`callshield simulate`) is the realistic one.

Measured, in-process and single-threaded: read_cdr (parse, validate, sort), replay (decide +
feedback + database writes), the verdicts CSV, build_report; the replay's own work alone (a stub
engine); then the engine alone on the same calls, decide / feedback / writes timed apart (after the
replay, so phonenumbers' caches are warm); and with --cli the whole `callshield replay` command in
a subprocess (imports and report included), without and with --report (plots).
--cdr FILE --labels FILE replays another CDR (e.g. `callshield simulate`'s output) instead.

Run: .venv/bin/python bench/bench_replay.py [--rows N] [--cli]
"""

from __future__ import annotations

import argparse
import csv
import gc
import io
import os
import platform
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from callshield.config import Config  # noqa: E402
from callshield.replay import VerdictWriter, build_report, read_cdr, read_labels, replay  # noqa: E402

OUT = ROOT / "bench" / "out" / "replay"
START = 1_795_000_000  # 2026-11-18 08:26:40 UTC
DIDS = [f"+1312555{i:04d}" for i in range(2000)]
AREAS = (201, 202, 212, 213, 305, 310, 312, 404, 415, 503, 512, 602, 617, 702, 713, 718, 805, 818, 917, 972)


def _number(rng: random.Random) -> str:
    """A valid-looking NANP number: a real area code, an exchange 200-999 that is not N11."""
    exchange = rng.randint(200, 999)
    while exchange % 100 == 11:
        exchange = rng.randint(200, 999)
    return f"+1{rng.choice(AREAS)}{exchange}{rng.randint(0, 9999):04d}"


def _ts(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def synthetic(rows: int, seed: int = 1) -> tuple[list[list[str]], list[tuple[str, str, str, str]]]:
    """CDR rows (unsorted by start, as a PBX writes them at hangup) and their labels."""
    rng = random.Random(seed)
    span = max(3600.0, rows / 1.5)  # ~1.5 calls/s on average
    legit_pool = [_number(rng) for _ in range(20_000)]
    cdr: list[list[str]] = []
    labels: list[tuple[str, str, str, str]] = []

    def add(
        caller: str, did: str, start: float, answered: bool, billsec: int, label: str, family: str, camp: str
    ) -> None:
        ring = rng.randint(1, 25)
        end = start + ring + (billsec if answered else 0)
        uid = f"{int(start)}.{len(cdr)}"
        cdr.append(
            [
                "",
                caller,
                did,
                "from-trunk",
                f'"" <{caller}>',
                f"PJSIP/carrier-{len(cdr):08x}",
                f"PJSIP/{rng.randint(100, 999)}-{len(cdr):08x}",
                "Dial",
                "PJSIP/100,30",
                _ts(start),
                _ts(start + ring) if answered else "",
                _ts(end),
                str(int(end - start)),
                str(billsec if answered else 0),
                "ANSWERED" if answered else rng.choice(("NO ANSWER", "BUSY")),
                "DOCUMENTATION",
                uid,
                "",
            ]
        )
        labels.append((uid, label, family, camp))

    legit_rows = int(rows * 0.8)
    for _ in range(legit_rows):
        frequent = rng.random() < 0.5  # half the calls from a tenth of the callers
        caller = legit_pool[rng.randrange(len(legit_pool) // 10 if frequent else len(legit_pool))]
        answered = rng.random() < 0.8
        add(
            caller,
            rng.choice(DIDS),
            START + rng.random() * span,
            answered,
            rng.randint(20, 600),
            "legit",
            "personal",
            "",
        )
    campaign = 0
    while len(cdr) < rows:
        campaign += 1
        family = rng.choice(("robocall", "sweep", "snowshoe", "wangiri"))
        name = f"{family}-{campaign}"
        start = START + rng.random() * span
        size = rng.randint(20, 400)
        base = rng.randrange(len(DIDS) - size) if family == "sweep" else 0
        numbers = [_number(rng) for _ in range(300)]
        caller = numbers[0]
        for i in range(min(size, rows - len(cdr))):
            if family == "robocall":
                caller = _number(rng)
                did = rng.choice(DIDS)
            elif family == "sweep":
                did = DIDS[base + i]
            elif family == "snowshoe":
                caller, did = rng.choice(numbers), rng.choice(DIDS)
            else:
                caller, did = f"+882{rng.randint(10**8, 10**9 - 1)}", rng.choice(DIDS)
            start += rng.expovariate(1 / 20.0)
            add(caller, did, start, rng.random() < 0.25, rng.randint(1, 40), "abusive", family, name)
    for row in cdr[:: max(1, rows // (rows // 1000 + 1))][1:]:  # 0.1% broken rows
        if rng.random() < 0.5:
            row[9] = "2026-13-45 99:00:00"
        else:
            del row[3]
    cdr.sort(key=lambda r: r[11])  # cdr_csv appends a row when a call ends
    return cdr, labels


def write(rows: int) -> tuple[Path, Path]:
    OUT.mkdir(parents=True, exist_ok=True)
    cdr_path, labels_path = OUT / f"Master-{rows}.csv", OUT / f"labels-{rows}.csv"
    if cdr_path.exists() and labels_path.exists():
        return cdr_path, labels_path
    cdr, labels = synthetic(rows)
    with cdr_path.open("w", newline="") as out:
        csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(cdr)
    with labels_path.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("uniqueid", "label", "family", "campaign"))
        writer.writerows(labels)
    return cdr_path, labels_path


def in_process(cdr_path: Path, labels_path: Path) -> None:
    perf = time.perf_counter
    gc.collect()
    cpu = time.process_time()
    t0 = perf()
    read = read_cdr(cdr_path)
    t1 = perf()
    labels = read_labels(labels_path)
    t2 = perf()
    config = Config()
    out = io.StringIO()
    writer = VerdictWriter(out, labels)
    cpu_replay = time.process_time()
    rows = [writer.write(record) for record in replay(read.calls, config=config)]
    cpu_replay = (time.process_time() - cpu_replay) / len(rows)
    t3 = perf()
    report = build_report(rows, labels, policy=config.policy, rejected=read.rejected)
    t4 = perf()
    cpu = time.process_time() - cpu
    n = read.rows
    print(f"rows read {n:,}: {len(read.calls):,} calls, rejected {dict(read.rejected)}")
    print(f"read_cdr        {t1 - t0:6.2f} s  {n / (t1 - t0):>10,.0f} rows/s")
    print(f"read_labels     {t2 - t1:6.2f} s")
    print(f"replay + CSV    {t3 - t2:6.2f} s  {len(rows) / (t3 - t2):>10,.0f} calls/s")
    print(f"build_report    {t4 - t3:6.2f} s")
    print(f"total           {t4 - t0:6.2f} s  {n / (t4 - t0):>10,.0f} rows/s end to end (in-process)")
    print(f"CPU time        {cpu:6.2f} s  {n / cpu:>10,.0f} rows per CPU-second")
    first = next(iter(replay(read.calls[:1], config=config))).verdict
    harness = harness_only(read.calls, first)
    print(
        f"per call, CPU: replay + CSV {cpu_replay * 1e6:.1f} us, of which the replay's own work (stub engine) "
        f"{harness * 1e6:.1f} us and the engine (decide, feedback, writes) {(cpu_replay - harness) * 1e6:.1f} us"
    )
    assert report.labelled is not None
    print(
        f"verdicts {report.decided}; abusive caught {report.labelled.abusive.caught_share:.1%}, "
        f"legit screened {report.labelled.legit.screened_share:.2%} blocked {report.labelled.legit.blocked_share:.2%}"
    )
    deciding, feeding, writing = engine_split(read.calls)
    print(
        f"engine alone, CPU per call: decide {deciding * 1e6:.1f} us, feedback {feeding * 1e6:.1f} us, "
        f"writes {writing * 1e6:.1f} us"
    )
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


class _StubEngine:
    """Stands in for the Firewall to time the replay's own work (events, mapping, records, CSV)."""

    def __init__(self, verdict: object) -> None:
        self._verdict = verdict

    def decide(self, call: object) -> object:
        return self._verdict

    def feedback(self, outcome: object) -> bool:
        return True

    def flush(self) -> int:
        return 0


def harness_only(calls: list, verdict: object) -> float:
    """CPU seconds per call of replay's own work, with a stub engine."""
    from callshield.clock import ManualClock
    from callshield.replay._runner import _run

    clock = ManualClock(calls[0].start)
    writer = VerdictWriter(io.StringIO(), None)
    started = time.process_time()
    for record in _run(calls, _StubEngine(verdict), clock, 20_000):  # type: ignore[arg-type]
        writer.write(record)
    return (time.process_time() - started) / len(calls)


def engine_split(calls: list) -> tuple[float, float, float]:
    """CPU seconds per call of decide(), feedback() and the writes, timed apart: each batch of 20,000
    calls is decided, then fed back, then flushed (the replay interleaves them by time instead)."""
    import tempfile

    from callshield import db
    from callshield.clock import ManualClock
    from callshield.engine import Firewall
    from callshield.replay import call_of, outcome_of
    from callshield.replay._runner import SCRATCH_PRAGMAS, replay_config

    with tempfile.TemporaryDirectory() as folder:
        conn = db.connect(Path(folder) / "split.sqlite3")
        for pragma in SCRATCH_PRAGMAS:
            conn.execute(pragma)
        clock = ManualClock(calls[0].start)
        firewall = Firewall(config=replay_config(Config()), conn=conn, clock=clock)
        cpu = time.process_time
        deciding = feeding = writing = 0.0
        for first in range(0, len(calls), 20_000):
            batch = calls[first : first + 20_000]
            t0 = cpu()
            verdicts = []
            for cdr in batch:
                clock.set(cdr.start)
                verdicts.append(firewall.decide(call_of(cdr)))
            t1 = cpu()
            for cdr, verdict in zip(batch, verdicts, strict=True):
                firewall.feedback(outcome_of(cdr, verdict.id))
            t2 = cpu()
            firewall.flush()
            t3 = cpu()
            deciding, feeding, writing = deciding + t1 - t0, feeding + t2 - t1, writing + t3 - t2
        conn.close()
    n = len(calls)
    return deciding / n, feeding / n, writing / n


def command(cdr_path: Path, labels_path: Path, report: bool) -> None:
    args = [sys.executable, "-m", "callshield", "replay", str(cdr_path), "--out", str(OUT / "verdicts.csv")]
    args += ["--labels", str(labels_path)]
    if report:
        args += ["--report", str(OUT / "report")]
    env = {k: v for k, v in os.environ.items() if k != "CALLSHIELD_CONFIG"}
    t0 = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        print(done.stderr)
        raise SystemExit(done.returncode)
    rows = sum(1 for _ in cdr_path.open())
    print(f"callshield replay{' --report' if report else ''}: {wall:.2f} s wall -> {rows / wall:,.0f} rows/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--cli", action="store_true", help="Also time the command in a subprocess.")
    parser.add_argument("--cdr", type=Path, help="Replay this Master.csv (with --labels) instead of synthetic data.")
    parser.add_argument("--labels", type=Path, help="The labels.csv of --cdr.")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.cdr and not args.labels:
        parser.error("--cdr needs --labels")
    cdr_path, labels_path = (args.cdr, args.labels) if args.cdr else write(args.rows)
    print(f"data: {cdr_path} ({cdr_path.stat().st_size / 1e6:.0f} MB, made in {time.perf_counter() - started:.0f} s)")
    print(f"python {platform.python_version()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    in_process(cdr_path, labels_path)
    if args.cli:
        command(cdr_path, labels_path, report=False)
        command(cdr_path, labels_path, report=True)


if __name__ == "__main__":
    main()
