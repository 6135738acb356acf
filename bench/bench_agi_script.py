"""Per-call cost of the classic AGI script ``callshield-agi`` (one process per call), start-up included.

Self-contained: builds its own warm database in a temporary directory (a small PBX's week of history:
decisions with outcomes, reputation, a deny list, dialing-pattern snapshots of the last hour), then
plays Asterisk: spawns ``callshield-agi inbound`` N times one after the other, writes a recorded-style
Asterisk 22 AGI header on its stdin and answers ``200 result=1`` to each command, and times each run
from spawn to exit. Then the same with several scripts at once (calls/s on all cores), the hangup
feedback mode, and baselines that split the time: a bare interpreter, the interpreter plus the
script's imports, ``-X importtime`` of those imports, and the script's own phase timings
(``CALLSHIELD_AGI_TIMINGS=1``: header, config, database open, decision, variables, commit).

Run: .venv/bin/python bench/bench_agi_script.py [--calls 300] [--concurrency 4] [--history 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = Path(sys.executable)
SCRIPT = PYTHON.with_name("callshield-agi")
HEADER = (
    "agi_request: callshield-agi\nagi_channel: PJSIP/callshield-trunk-{n:08x}\nagi_language: en\n"
    "agi_type: PJSIP\nagi_uniqueid: 1795831244.{n}\nagi_version: 22.10.1+dfsg+~cs6.17.60671434-1\n"
    "agi_callerid: {caller}\nagi_calleridname: Bench Caller\nagi_callingpres: 0\nagi_callingani2: 0\n"
    "agi_callington: 0\nagi_callingtns: 0\nagi_dnid: {did}\nagi_rdnis: unknown\nagi_context: callshield-check\n"
    "agi_extension: {did}\nagi_priority: 14\nagi_enhanced: 0.0\nagi_accountcode: \nagi_threadid: 140288934663872\n"
    "agi_arg_1: inbound\n\n"
)
DIDS = [f"+1800555{1000 + i:04d}" for i in range(40)]


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


# --- the database ---------------------------------------------------------------------------------


def build_database(path: Path, history: int, callers: int, seed: int) -> dict[str, list[str]]:
    """A week of history ending now; returns caller pools (known, unknown, denied) for the runs."""
    sys.path.insert(0, str(ROOT))
    from callshield.clock import ManualClock
    from callshield.config import Config
    from callshield.engine import Firewall
    from callshield.verdict import Call, CallOutcome

    rng = random.Random(seed)
    now = time.time()
    clock = ManualClock(now - 7 * 86400)
    fw = Firewall.open(Config(), clock=clock, path=path)  # the server's view: pattern snapshots written
    known = [f"+1{rng.randint(201, 989)}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}" for _ in range(callers)]
    step = 7 * 86400 / history
    for i in range(history):
        clock.advance(step)
        caller = rng.choice(known)
        verdict = fw.decide(Call(caller=caller, callee=rng.choice(DIDS), channel=str(i)))
        answered = verdict.action.value == "connect" and rng.random() < 0.7
        fw.feedback(
            CallOutcome(
                decision_id=verdict.id,
                dialstatus="ANSWER" if answered else "NOANSWER",
                billsec=rng.uniform(5, 400) if answered else 0.0,
                hangup_cause=16,
                ended_at=clock.now() + 30,
            )
        )
        if i % 997 == 0:
            fw.report(rng.choice(known))
        if i % 5000 == 4999:
            fw.flush(snapshot=True)
    denied_prefixes = [f"+1{rng.randint(201, 989)}555" for _ in range(50)]
    for prefix in denied_prefixes:
        fw.connection.execute(
            "INSERT INTO list_entries (action, pattern, created, note) VALUES ('deny', ?, ?, 'bench')",
            (prefix + "*", now),
        )
    fw.close()
    unknown = [f"+1{rng.randint(201, 989)}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}" for _ in range(2000)]
    denied = [f"{p}{rng.randint(0, 9999):04d}" for p in denied_prefixes]
    return {"known": known, "unknown": unknown, "denied": denied}


# --- playing Asterisk -----------------------------------------------------------------------------


def run_script(args: Sequence[str], env: dict[str, str], header: str) -> tuple[float, list[str], dict[str, float]]:
    """One AGI script run: (wall seconds, commands, the script's phase timings in ms)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(SCRIPT), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(header.encode())
    proc.stdin.flush()
    commands = []
    while line := proc.stdout.readline():
        commands.append(line.decode().rstrip("\n"))
        proc.stdin.write(b"200 result=1\n")
        proc.stdin.flush()
    proc.stdin.close()
    err = proc.stderr.read().decode()
    proc.wait()
    wall = time.perf_counter() - started
    timings: dict[str, float] = {}
    for line in err.splitlines():
        if line.startswith("callshield-agi timings "):
            timings = json.loads(line.split(" ", 2)[2])
        elif "no verdict within agi.decision_timeout" in line:
            timings["timeout"] = 1.0  # answered connect/timeout (counted in the results)
        elif line.strip():
            raise RuntimeError(f"callshield-agi said: {line}")
    return wall, commands, timings


def time_command(argv: Sequence[str], runs: int, env: dict[str, str]) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdin=subprocess.DEVNULL)
        out.append(time.perf_counter() - started)
    return out


def importtime(env: dict[str, str], runs: int) -> tuple[dict[str, float], list[tuple[str, float]], float]:
    """Best-of-``runs`` self time (ms) per module group for importing the script, and the total."""
    best: dict[str, float] = {}
    for _ in range(runs):
        proc = subprocess.run(
            [str(PYTHON), "-X", "importtime", "-c", "import callshield.agi.script"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        for line in proc.stderr.splitlines():
            match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
            if match:
                name = match.group(4)
                value = int(match.group(1)) / 1000
                best[name] = min(best.get(name, value), value)
    groups: dict[str, float] = defaultdict(float)
    for name, value in best.items():
        top = name.split(".")[0]
        if name.startswith("callshield.agi"):
            key = name if name in ("callshield.agi.server", "callshield.agi.protocol") else "callshield.agi"
        elif top in ("callshield", "msgspec", "phonenumbers", "typing_extensions", "asyncio", "asterisk", "six"):
            key = top
        elif top.startswith("__editable__") or top in ("_distutils_hack", "sitecustomize", "site"):
            key = "site (venv, editable install)"
        else:
            key = "stdlib (other)"
        groups[key] += value
    top = sorted(best.items(), key=lambda kv: -kv[1])[:15]
    return dict(groups), top, sum(best.values())


def summarize(walls: Sequence[float]) -> str:
    return (
        f"mean {ms(statistics.fmean(walls))} / p50 {ms(pct(walls, 50))} / p99 {ms(pct(walls, 99))} / "
        f"max {ms(max(walls))} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="sequential inbound runs (default 300)")
    parser.add_argument("--concurrency", type=int, default=4, help="scripts at once in the parallel run")
    parser.add_argument("--history", type=int, default=20_000, help="decisions in the week of history")
    parser.add_argument("--callers", type=int, default=5_000, help="distinct callers in the history")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if not SCRIPT.exists():
        sys.exit(f"{SCRIPT} is missing: pip install -e . first")

    with tempfile.TemporaryDirectory(prefix="bench-agi-script-") as tmp:
        database = Path(tmp) / "callshield.sqlite3"
        t0 = time.perf_counter()
        pools = build_database(database, args.history, args.callers, args.seed)
        built = time.perf_counter() - t0
        # As installed: bytecode cached (here under a private prefix, whatever PYTHONDONTWRITEBYTECODE
        # says outside). `raw_env` is the caller's environment as is, for the "no .pyc" row.
        raw_env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSHIELD_")}
        raw_env.update(CALLSHIELD_DB=str(database), CALLSHIELD_AGI_TIMINGS="1", XDG_DATA_HOME=tmp)
        env = {k: v for k, v in raw_env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        rng = random.Random(args.seed + 1)

        def header(n: int) -> str:
            pool = rng.choices(["known", "unknown", "denied"], weights=[6, 3, 1])[0]
            return HEADER.format(n=n, caller=rng.choice(pools[pool]), did=rng.choice(DIDS))

        for n in range(10):  # warm the page cache and the .pyc files
            run_script(["inbound"], env, header(n))

        # Baselines interleaved with the script runs, so that a noisy neighbour weighs on all alike.
        # Each ends with os._exit(0) as the script does: no interpreter teardown ("teardown" has it).
        baselines: dict[str, list[str]] = {
            "bare": [str(PYTHON), "-I", "-S", "-c", "import os; os._exit(0)"],
            "site": [str(PYTHON), "-c", "import os; os._exit(0)"],
            "imports": [str(PYTHON), "-c", "import callshield.agi.script, os; os._exit(0)"],
            "teardown": [str(PYTHON), "-c", "import callshield.agi.script"],
        }
        base: dict[str, list[float]] = defaultdict(list)
        walls, phases, actions, ids, timeouts = [], defaultdict(list), defaultdict(int), [], 0
        for n in range(args.calls):
            wall, commands, timings = run_script(["inbound"], env, header(n))
            walls.append(wall)
            for name, value in timings.items():
                if name not in ("mode", "timeout"):
                    phases[name].append(value)
            timeouts += "timeout" in timings
            actions[commands[-1].split('"')[-2]] += 1
            if commands[0].startswith('SET VARIABLE "CALLSHIELD_ID"'):
                ids.append(commands[0].split('"')[-2])
            for name, argv in baselines.items():
                if n % 2 == 0:
                    base[name] += time_command(argv, 1, env)
        sequential = args.calls / sum(walls)

        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            parallel_runs = list(pool.map(lambda n: run_script(["inbound"], env, header(n)), range(args.calls)))
        parallel_walls = [w for w, _, _ in parallel_runs]
        parallel_timeouts = sum("timeout" in t for _, _, t in parallel_runs)
        parallel = args.calls / (time.perf_counter() - started)

        hangup_walls = []
        for decision_id in ids[: max(1, args.calls // 3)]:
            wall, _, _ = run_script(["hangup", decision_id, "ANSWER", "42", "16"], env, header(0))
            hangup_walls.append(wall)

        # Without cached bytecode for callshield (an editable install under PYTHONDONTWRITEBYTECODE=1,
        # or a package directory the asterisk user cannot write): its sources are compiled every call.
        nopyc_env = dict(raw_env, PYTHONDONTWRITEBYTECODE="1")
        compiling = not (ROOT / "callshield" / "__pycache__").exists()
        nopyc_walls = [run_script(["inbound"], nopyc_env, header(n))[0] for n in range(max(10, args.calls // 3))]

        bare, site, imports, teardown = base["bare"], base["site"], base["imports"], base["teardown"]
        groups, top, import_total = importtime(env, 7)

    # --- the results block ------------------------------------------------------------------------
    mean = statistics.median  # the breakdown: medians, robust to a noisy neighbour's spikes
    in_main = mean(phases["total"])
    start_imports = mean(imports)
    print(f"## callshield-agi per call — bench/bench_agi_script.py ({time.strftime('%Y-%m-%d')})\n")
    print(
        f"Database: {args.history:,} decisions of a week from {args.callers:,} callers (outcomes, reports, 50 deny "
        f"prefixes, pattern snapshots), built in {built:.1f} s, {database.name}; warm page cache. Callers: 60% "
        f"known, 30% new, 10% denylisted; verdicts {dict(actions)}. CPython {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs.\n"
    )
    print("| run | per call (spawn to exit) | calls/s |")
    print("|---|---|---|")
    print(
        f"| inbound, one at a time ({args.calls}; {timeouts} past decision_timeout) | {summarize(walls)} | "
        f"{sequential:.1f} |"
    )
    print(
        f"| inbound, {args.concurrency} at a time ({args.calls}; {parallel_timeouts} past decision_timeout) | "
        f"{summarize(parallel_walls)} | {parallel:.1f} |"
    )
    if compiling:
        print(
            f"| inbound, one at a time, callshield's sources compiled at each start (no .pyc) "
            f"| {summarize(nopyc_walls)} | {len(nopyc_walls) / sum(nopyc_walls):.1f} |"
        )
    print(
        f"| hangup feedback, one at a time ({len(hangup_walls)}) | {summarize(hangup_walls)} | "
        f"{len(hangup_walls) / sum(hangup_walls):.1f} |"
    )
    print()
    print("Where the time of one inbound call goes (medians, ms; bytecode cached):\n")
    print("| part | ms | share |")
    print("|---|---|---|")
    total = mean(walls) * 1000
    rows = [
        ("interpreter start, bare (`python -I -S`)", mean(bare) * 1000),
        ("+ site: venv, editable-install finder (`python`)", (mean(site) - mean(bare)) * 1000),
        ("+ imports of the script (`python -c 'import callshield.agi.script'`)", (start_imports - mean(site)) * 1000),
    ]
    labels = {
        "header": "read the AGI header (pyst2)",
        "config": "load the config",
        "open": "open the database (`Firewall.open`: schema check, lists, pattern and pass restore)",
        "decide": "decide (the first decision of a process: cold caches, phonenumbers metadata)",
        "variables": "5 x SET VARIABLE (pipe round trips to the stand-in Asterisk)",
        "flush": "commit (audit row, reputation, the caller's pattern window)",
        "end": "close the database (the last connection checkpoints the WAL)",
    }
    rows += [(label, mean(phases[name])) for name, label in labels.items() if name in phases]
    rows.append(
        ("process exit and pipes, spawn overhead of the driver (the rest)", total - start_imports * 1000 - in_main)
    )
    for label, value in rows:
        print(f"| {label} | {value:.1f} | {value / total:.0%} |")
    print(f"| **total (median wall time per call)** | **{total:.1f}** | |")
    print(
        f"\nInterpreter teardown that the script skips with os._exit(0) once the database is closed: "
        f"{(mean(teardown) - start_imports) * 1000:.1f} ms per call (`import` with and without it)."
    )
    print()
    print(f"Import self time by group (`-X importtime`, best of 7, total {import_total:.1f} ms):\n")
    for key, value in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"- {key}: {value:.1f} ms")
    print("\nLargest single modules (self ms): " + ", ".join(f"{name} {value:.1f}" for name, value in top))


if __name__ == "__main__":
    main()
