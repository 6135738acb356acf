"""FastAGI protocol benchmark: `callshield serve` against a bare server that answers `connect`.

A load client speaks Asterisk's side of FastAGI (header block, `200 result=1` to every command: the
server sets its five variables with one `EXEC MSet`, as with the default `agi.mset = true`) with
N concurrent sessions, against (a) a bare FastAGI server (the same transport, an engine that returns a
fixed verdict without deciding) and (b) `callshield serve` on a fresh database with the real engine,
each in its own process, in the same run. Then a paced run at a fixed rate for session latency.
Callers are drawn from 200,000 valid-looking numbers; DIDs from 2,000.

The server process is pinned to CPU 0 and the load client to CPU 1 (``--no-pin`` to share): the figures
are per server core.

Run: .venv/bin/python bench/bench_agi.py [--sessions N] [--concurrency C] [--rate R] [--no-pin]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parents[1]
SERVER_CPU, CLIENT_CPU = 0, 1
HEADER = (
    "agi_network: yes\nagi_network_script: inbound\nagi_request: agi://127.0.0.1/inbound\n"
    "agi_channel: PJSIP/callshield-trunk-{n:08x}\nagi_language: en\nagi_type: PJSIP\nagi_uniqueid: {n}\n"
    "agi_version: 22.10.1\nagi_callerid: {caller}\nagi_calleridname: Bench\nagi_callingpres: 0\n"
    "agi_callingani2: 0\nagi_callington: 0\nagi_callingtns: 0\nagi_dnid: {did}\nagi_rdnis: unknown\n"
    "agi_context: callshield-check\nagi_extension: {did}\nagi_priority: 1\nagi_enhanced: 0.0\n"
    "agi_accountcode: \nagi_threadid: 1\n\n"
)
BARE_SERVER = """
import asyncio, sys
sys.path.insert(0, {root!r})
from callshield.agi.server import AgiServerSettings, run_server
from callshield.verdict import Action, Mode, Verdict

VERDICT = Verdict(id="0", action=Action.CONNECT, decided=Action.CONNECT, score=0, reason="clean", reasons=(),
                  cause=21, mode=Mode.ENFORCE, caller="", callee="", decided_at=0.0)

class Bare:
    def decide(self, call):
        return VERDICT
    def feedback(self, outcome):
        return None

async def main():
    import signal
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await run_server(Bare(), AgiServerSettings(port={port}), stop=stop)

import uvloop
uvloop.run(main())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"server on {port} did not start")


class AsteriskSide(asyncio.Protocol):
    """Asterisk's side of one FastAGI session: the header, then ``200 result=1`` to every command line.

    A raw protocol rather than streams: the client must cost less than the server it measures.
    """

    def __init__(self, header: bytes, done: asyncio.Future[float]) -> None:
        self._header = header
        self._done = done
        self._lines = 0
        self._started = time.perf_counter()
        self.transport: asyncio.Transport | None = None
        self.timed_out = False
        self.action_set = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write(self._header)

    def data_received(self, data: bytes) -> None:
        lines = data.count(b"\n")  # commands arrive whole: the server writes one line and waits
        self._lines += lines
        if b"CALLSHIELD_ACTION" in data:
            self.action_set = True
        if b"CALLSHIELD_REASON timeout" in data:
            self.timed_out = True
        assert self.transport is not None
        self.transport.write(REPLY * lines)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._done.done():
            return
        if self.timed_out:
            FAIL_OPEN.append(1)
            self._done.set_result(time.perf_counter() - self._started)
        elif not self.action_set:
            self._done.set_exception(RuntimeError(f"closed after {self._lines} commands without an action"))
        else:
            self._done.set_result(time.perf_counter() - self._started)


REPLY = b"200 result=1\n"
FAIL_OPEN: list[int] = []
"""Sessions the server answered connect/timeout (its decision_timeout expired): counted, not errors."""


async def session(port: int, n: int, caller: str, did: str) -> float:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    header = HEADER.format(n=n, caller=caller, did=did).encode()
    started = time.perf_counter()
    # Sources spread over 250 loopback addresses: ~25,000 sessions a run leave as many TIME_WAIT
    # sockets on the server (it closes first, as FastAGI wants), and one source address's 28,000
    # ports would start landing on them (a refused SYN costs a retransmission: ~200 ms stalls).
    source = (f"127.0.1.{n % 250 + 2}", 0)
    transport, _ = await loop.create_connection(
        lambda: AsteriskSide(header, done), "127.0.0.1", port, local_addr=source
    )
    try:
        await done
    finally:
        transport.close()
    return time.perf_counter() - started


def workload(count: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    callers = [
        f"+1{rng.randint(2, 9)}{rng.randint(0, 99):02d}{rng.randint(2, 9)}{rng.randint(0, 999_999):06d}"
        for _ in range(200_000)
    ]
    dids = [f"+1312555{i:04d}" for i in range(2000)]
    return [(rng.choice(callers), rng.choice(dids)) for _ in range(count)]


async def saturate(port: int, calls: list[tuple[str, str]], concurrency: int) -> tuple[float, list[float]]:
    queue = iter(enumerate(calls))
    latencies: list[float] = []

    async def worker() -> None:
        for n, (caller, did) in queue:
            latencies.append(await session(port, n, caller, did))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


async def paced(port: int, calls: list[tuple[str, str]], rate: float) -> list[float]:
    tasks = []
    start = time.perf_counter()
    for n, (caller, did) in enumerate(calls):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(session(port, n, caller, did)))
    return list(await asyncio.gather(*tasks))


def quiet_client() -> None:
    """Keep the client's own garbage collector out of the latencies: the workloads are large."""
    gc.collect()
    gc.freeze()


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary(latencies: list[float]) -> str:
    q = statistics.quantiles(latencies, n=100)
    timeouts = f", {len(FAIL_OPEN)} answered connect/timeout" if FAIL_OPEN else ""
    FAIL_OPEN.clear()
    return f"p50 {q[49] * 1e3:.2f} ms, p99 {q[98] * 1e3:.2f} ms, max {max(latencies) * 1e3:.1f} ms{timeouts}"


def run_target(name: str, argv: list[str], port: int, env: dict[str, str], args: argparse.Namespace) -> None:
    if args.pin:
        argv = ["taskset", "-c", str(SERVER_CPU), *argv]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        import uvloop

        warm = workload(2000, 1)
        uvloop.run(saturate(port, warm, args.concurrency))
        quiet_client()
        cpu_before = process_cpu(proc.pid)
        wall, latencies = uvloop.run(saturate(port, workload(args.sessions, 2), args.concurrency))
        cpu = process_cpu(proc.pid) - cpu_before
        print(
            f"{name}: {args.sessions:,} sessions, {args.concurrency} concurrent: {args.sessions / wall:,.0f} "
            f"sessions/s; {summary(latencies)}; server CPU {cpu / args.sessions * 1e6:.0f} µs/session "
            f"(all threads; {args.sessions / cpu:,.0f} sessions per CPU-second)"
        )
        paced_calls = workload(args.rate * 10, 3)
        time.sleep(2)  # let the server's writer catch up with the saturation run
        quiet_client()
        paced_latencies = uvloop.run(paced(port, paced_calls, args.rate))
        print(f"{name}: paced {args.rate}/s for 10 s: {summary(paced_latencies)}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--config", help="config file for callshield serve (default: embedded defaults)")
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="do not pin the server to CPU 0 and the client to CPU 1"
    )
    args = parser.parse_args()
    args.pin = args.pin and len(os.sched_getaffinity(0)) >= 2
    if args.pin:
        os.sched_setaffinity(0, {CLIENT_CPU})
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "XDG_DATA_HOME": scratch}
        env.pop("CALLSHIELD_CONFIG", None)
        if args.config:
            env["CALLSHIELD_CONFIG"] = str(Path(args.config).resolve())
        port = free_port()
        bare = Path(scratch) / "bare.py"
        bare.write_text(BARE_SERVER.format(root=str(ROOT), port=port))
        run_target("bare server", [sys.executable, str(bare)], port, env, args)
        port = free_port()
        run_target(
            "callshield serve", [sys.executable, "-m", "callshield", "serve", "--port", str(port)], port, env, args
        )
    where = f"server on CPU {SERVER_CPU}, client on CPU {CLIENT_CPU}" if args.pin else "client and server share them"
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; {where}")


if __name__ == "__main__":
    main()
