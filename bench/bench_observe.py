"""Observability overhead (issue 6, section 4): the decision path with metrics and decision logs on vs off.

1. In-process, robust to a busy machine (CPU time): the cost each decision pays for observability — the
   two ``perf_counter()`` calls, :meth:`DecisionMetrics.observe` and :meth:`DecisionLog.write` (JSON and
   text, numbers masked, batched to a file as the server does) — on verdicts of real decisions; one
   scrape; and ``decide()`` through :class:`ObservedEngine` vs the bare engine, alternating.
2. Side by side: an "off" server (``[metrics] enabled = false``, ``logging.decisions = false``) and an
   "on" server (``--on``: metrics and JSON decision lines to a file, a scraper every ``--scrape-every``
   seconds) at the same time on the same CPU, FastAGI sessions alternating between them at ``--rate``
   for 10 s: server CPU per session of each, under the same outside load. ``--on none`` is an A/A control.
3. Saturated: each server alone, 100 concurrent sessions (bench/bench_agi.py's client), alternating
   rounds: sessions/s and server CPU per session. Server pinned to CPU 0, client to CPU 1.

Run: .venv/bin/python bench/bench_observe.py [--rounds R] [--sessions N] [--on both|metrics|logs|none]
     [--side-by-side-only] [--skip-serve] [--no-pin]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_agi
from prometheus_client import generate_latest

from callshield.clock import SystemClock
from callshield.config import Config
from callshield.decisionlog import DecisionLog
from callshield.engine import Firewall
from callshield.metrics import DecisionMetrics, NodeCollector, node_registry
from callshield.observed import ObservedEngine
from callshield.verdict import Call, Verdict

OFF = "[metrics]\nenabled = false\n[logging]\ndecisions = false\n"
ON = '[metrics]\nenabled = true\nlisten = "127.0.0.1:{port}"\n[logging]\nformat = "json"\ndecisions = true\n'
ON_VARIANTS = {
    "both": ON,
    "metrics": '[metrics]\nenabled = true\nlisten = "127.0.0.1:{port}"\n[logging]\ndecisions = false\n',
    "logs": '[metrics]\nenabled = false\n[logging]\nformat = "json"\ndecisions = true\n',
    "none": OFF,  # an A/A control: what the side-by-side design shows for no difference
}
CPU = time.process_time
"""In-process timings count this process's CPU time: a shared machine's other load does not inflate them
(it still shares caches and the core's other hyperthread)."""
SCRAPER = """
import sys, time, urllib.request
url = sys.argv[1]
while True:
    try:
        urllib.request.urlopen(url, timeout=2).read()
    except OSError:
        pass
    time.sleep(float(sys.argv[2]))
"""


class _NoRecord:
    """The engine's decide() without remembering anything: rounds see the same state."""

    def __init__(self, firewall: Firewall) -> None:
        self._firewall = firewall
        self.screening = None

    def decide(self, call: Call) -> Verdict:
        return self._firewall.decide(call, record=False)

    def feedback(self, outcome: Any) -> None:
        return None

    def screened(self, decision_id: str, result: Any) -> None:
        return None


def in_process(count: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        firewall = Firewall.open(Config(), path=Path(scratch) / "cs.sqlite3", clock=SystemClock())
        calls = [Call(caller=c, callee=d) for c, d in bench_agi.workload(count, 2)]
        verdicts = [firewall.decide(call) for call in calls]  # warm: numbers normalized, windows seen
        firewall.flush()
        n = len(verdicts)

        def per_call(label: str, run: Any, repeat: int = 5) -> float:
            best = min(timeit.Timer(run, timer=CPU).repeat(repeat, 1)) / n * 1e6
            print(f"  {label:<58} {best:6.2f} µs/decision")
            return best

        print(f"in-process, {n:,} verdicts of real decisions (CPU time, best of 5 passes):")
        perf = time.perf_counter
        per_call("2 x perf_counter()", lambda: [(perf(), perf()) for _ in verdicts])
        metrics = DecisionMetrics()
        observe = per_call("DecisionMetrics.observe()", lambda: [metrics.observe(v, 4e-5) for v in verdicts])
        sink = open(Path(scratch) / "decisions.log", "w")  # noqa: SIM115  a real file, like journald's pipe
        costs = {}
        for fmt in ("json", "text"):
            log = DecisionLog(fmt=fmt, numbers="masked", stream=sink)  # type: ignore[arg-type]

            async def write_all(log: DecisionLog = log) -> None:
                for v in verdicts:
                    log.write(v, 4e-5)  # on a loop: batched (256 lines or 0.2 s), as in the server
                log.flush()

            costs[fmt] = per_call(
                f"DecisionLog.write() {fmt}, masked, to a file", lambda w=write_all: asyncio.run(w()), repeat=3
            )
        sink.close()
        stdlib = logging_cost(verdicts[:20_000], Path(scratch))
        print(f"  {'(for comparison) logging.info() + JSON formatter, to a file':<58} {stdlib:6.2f} µs/decision")

        registry = node_registry(NodeCollector(firewall=firewall, decisions=metrics))
        scrape = min(timeit.Timer(lambda: generate_latest(registry), timer=CPU).repeat(5, 20)) / 20 * 1e3
        size = len(generate_latest(registry))
        print(f"  one scrape (generate_latest, engine + decisions + process metrics): {scrape:.2f} ms, {size:,} bytes")

        bare = _NoRecord(firewall)
        devnull = open(os.devnull, "w")  # noqa: SIM115
        observed = ObservedEngine(bare, metrics=DecisionMetrics(), log=DecisionLog(fmt="json", stream=devnull))
        plain_times, observed_times = [], []
        for _ in range(7):  # alternating, the same loop for both
            plain_times.append(
                timeit.Timer(lambda: asyncio.run(_decide_all(bare, calls)), timer=CPU).timeit(1) / n * 1e6
            )
            observed_times.append(
                timeit.Timer(lambda: asyncio.run(_decide_all(observed, calls)), timer=CPU).timeit(1) / n * 1e6
            )
        plain, with_obs = statistics.median(plain_times), statistics.median(observed_times)
        print(
            f"  decide(record=False): bare {plain:.1f} µs (min {min(plain_times):.1f}), through ObservedEngine "
            f"(metrics + JSON log) {with_obs:.1f} µs (min {min(observed_times):.1f}); medians of 7 alternating "
            f"passes, difference {with_obs - plain:+.1f} µs"
        )
        print(
            f"  sum of the added calls: {observe + costs['json']:.2f} µs (JSON) per decision, "
            f"plus 2 perf_counter() calls"
        )
        firewall.close()


async def _decide_all(engine: Any, calls: list[Call]) -> None:
    for call in calls:
        engine.decide(call)


def logging_cost(verdicts: list[Verdict], scratch: Path) -> float:
    """What the standard library's logging with the node's JsonFormatter costs for the same fields."""
    import logging

    from callshield.service import JsonFormatter

    with open(scratch / "stdlib.log", "w") as sink:
        handler = logging.StreamHandler(sink)
        handler.setFormatter(JsonFormatter())
        logger = logging.getLogger("bench.observe")
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(logging.INFO)

        def run() -> None:
            for v in verdicts:
                logger.info(
                    "decision %s %s score %d %s [%s] %.0fµs",
                    v.id,
                    v.action,
                    v.score,
                    v.reason,
                    ",".join(r.code for r in v.reasons),
                    40.0,
                )

        return min(timeit.Timer(run, timer=CPU).repeat(3, 1)) / len(verdicts) * 1e6


def end_to_end(args: argparse.Namespace) -> None:
    saturated: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    paired: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as scratch:
        for round_no in range(args.rounds):
            order = ("off", "on") if round_no % 2 == 0 else ("on", "off")  # neither always goes first
            for name in order:
                if not args.side_by_side_only:
                    saturated[name].append(saturated_round(name, round_no, Path(scratch), args))
            for name, cpu in paired_round(round_no, Path(scratch), args).items():
                paired[name].append(cpu)
    print("end to end (callshield serve, FastAGI, one EXEC MSet per session):")
    medians = {}
    for name, rows in saturated.items():
        rates, cpus = [r for r, _ in rows] or [float("nan")], [c for _, c in rows] or [float("nan")]
        medians[name] = (statistics.median(rates), statistics.median(cpus), statistics.median(paired[name]))
        print(
            f"  {name:<3}: saturated sessions/s {', '.join(f'{r:,.0f}' for r in rates)} "
            f"(median {medians[name][0]:,.0f}),"
            f" server CPU µs/session {', '.join(f'{c:.0f}' for c in cpus)} (median {medians[name][1]:.0f}); "
            f"side by side at {args.rate // 2}/s each: {', '.join(f'{c:.0f}' for c in paired[name])} µs/session "
            f"(median {medians[name][2]:.0f})"
        )
    (off_rate, off_cpu, off_pair), (on_rate, on_cpu, on_pair) = medians["off"], medians["on"]
    diffs = [on - off for on, off in zip(paired["on"], paired["off"], strict=True)]
    print(
        f"  on vs off: saturated throughput {100 * (on_rate / off_rate - 1):+.1f}%, CPU per session "
        f"{100 * (on_cpu / off_cpu - 1):+.1f}% ({on_cpu - off_cpu:+.0f} µs); side by side "
        f"{100 * (on_pair / off_pair - 1):+.1f}% (per round {', '.join(f'{d:+.0f}' for d in diffs)} µs)"
    )


class _Server:
    """``callshield serve`` with the "off" or "on" configuration, pinned to the server CPU."""

    def __init__(self, name: str, tag: str, scratch: Path, args: argparse.Namespace) -> None:
        self.name = name
        self.on = args.on
        self.port, metrics_port = bench_agi.free_port(), bench_agi.free_port()
        config = scratch / f"{tag}.toml"
        config.write_text(OFF if name == "off" else ON_VARIANTS[args.on].format(port=metrics_port))
        env = {**os.environ, "XDG_DATA_HOME": str(scratch / tag), "CALLSHIELD_CONFIG": str(config)}
        argv = [sys.executable, "-m", "callshield", "serve", "--port", str(self.port)]
        if args.pin:
            argv = ["taskset", "-c", str(bench_agi.SERVER_CPU), *argv]
        self.log_path = scratch / f"{tag}.log"
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log)
        self.scraper: subprocess.Popen[bytes] | None = None
        bench_agi.wait_port(self.port)
        if name == "on" and args.scrape_every > 0:
            url = f"http://127.0.0.1:{metrics_port}/metrics"
            scraper_argv = [sys.executable, "-c", SCRAPER, url, str(args.scrape_every)]
            if args.pin:
                scraper_argv = ["taskset", "-c", str(bench_agi.CLIENT_CPU), *scraper_argv]
            self.scraper = subprocess.Popen(scraper_argv)

    def cpu(self) -> float:
        return bench_agi.process_cpu(self.proc.pid)

    def stop(self, sessions: int) -> None:
        if self.scraper is not None:
            self.scraper.terminate()
            self.scraper.wait()
        self.proc.terminate()
        self.proc.wait(timeout=30)
        lines = sum(1 for line in self.log_path.open() if '"callshield.decision"' in line)
        expected = 0 if self.name == "off" or self.on in ("metrics", "none") else sessions
        if lines != expected:
            raise SystemExit(f"{self.name}: {lines} decision log lines, expected {expected}")


def saturated_round(name: str, round_no: int, scratch: Path, args: argparse.Namespace) -> tuple[float, float]:
    import uvloop

    server = _Server(name, f"{name}-{round_no}", scratch, args)
    try:
        uvloop.run(bench_agi.saturate(server.port, bench_agi.workload(2000, 1), args.concurrency))
        bench_agi.quiet_client()
        before = server.cpu()
        wall, _ = uvloop.run(
            bench_agi.saturate(server.port, bench_agi.workload(args.sessions, 2 + round_no), args.concurrency)
        )
        cpu = server.cpu() - before
    finally:
        server.stop(args.sessions + 2000)
    rate, cpu_per = args.sessions / wall, cpu / args.sessions * 1e6
    print(f"  round {round_no + 1} {name}: {rate:,.0f} sessions/s, server CPU {cpu_per:.0f} µs/session", flush=True)
    return rate, cpu_per


def paired_round(round_no: int, scratch: Path, args: argparse.Namespace) -> dict[str, float]:
    """Both servers at once on the same CPU, sessions alternating between them at a fixed rate: whatever
    else runs on the machine weighs on both alike, and both batch their writes alike."""
    import uvloop

    servers = [_Server(name, f"pair-{name}-{round_no}", scratch, args) for name in ("off", "on")]
    calls = bench_agi.workload(args.rate * 10, 200 + round_no)
    try:
        for server in servers:
            uvloop.run(bench_agi.saturate(server.port, bench_agi.workload(2000, 1), args.concurrency))
        time.sleep(2)
        bench_agi.quiet_client()
        before = [server.cpu() for server in servers]
        uvloop.run(_paced_pair([s.port for s in servers], calls, args.rate))
        time.sleep(1)  # the last flush (1 s of idling included: a few ms for each)
        cpu = [server.cpu() - b for server, b in zip(servers, before, strict=True)]
    finally:
        for server in servers:
            server.stop(2000 + len(calls) // 2)
    result = {server.name: c / (len(calls) / 2) * 1e6 for server, c in zip(servers, cpu, strict=True)}
    print(
        f"  round {round_no + 1} side by side: off {result['off']:.0f}, on {result['on']:.0f} µs/session",
        flush=True,
    )
    return result


async def _paced_pair(ports: list[int], calls: list[tuple[str, str]], rate: float) -> None:
    tasks = []
    start = time.perf_counter()
    for n, (caller, did) in enumerate(calls):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(bench_agi.session(ports[n % 2], n, caller, did)))
    await asyncio.gather(*tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rate", type=int, default=1000, help="sessions/s of the side-by-side run (10 s; half each)")
    parser.add_argument("--scrape-every", type=float, default=1.0, help="seconds between scrapes (0: none)")
    parser.add_argument("--on", choices=sorted(ON_VARIANTS), default="both", help="what 'on' turns on")
    parser.add_argument("--side-by-side-only", action="store_true", help="skip the saturated rounds")
    parser.add_argument("--decisions", type=int, default=50_000, help="in-process verdicts")
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    parser.add_argument("--skip-serve", action="store_true", help="only the in-process part")
    args = parser.parse_args()
    args.pin = args.pin and len(os.sched_getaffinity(0)) >= 2
    in_process(args.decisions)
    if not args.skip_serve:
        if args.pin:
            os.sched_setaffinity(0, {bench_agi.CLIENT_CPU})
        end_to_end(args)
    where = "server on CPU 0, client on CPU 1" if args.pin else "not pinned"
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; {where}; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
