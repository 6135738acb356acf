"""Reputation mesh benchmark: propagation latency, sustained throughput, decisions under peer traffic.

Two callshield nodes in their own processes (no shared GIL or loop), each a real ``Firewall`` on its own
fresh database with a ``MeshLink`` on uvloop, as ``callshield serve`` runs them: verdicts out through the
outbox (committed, signed at send time, QoS 1), peer verdicts in through the inbox to
``Firewall.peer_verdict``, the server's 0.5 s ``flush_async`` on its writer thread, ``gc.freeze()``
after start-up. They talk only through one Mosquitto (``scripts/mosquitto``, plain listener), on a cluster
name unique to each scenario: by default a private instance (``.cache/mosquitto-bench``, 127.0.0.1:18840)
started here and stopped at the end, because test sessions stop the shared test broker (18830) when
they finish; ``--broker shared`` uses that one (started and stopped here only if it was not running).
This script drives them over pipes (JSON lines) and reads their CPU from /proc.

1. Propagation latency: node A decides calls from new callers, paced at ``--rate`` (default 1,000/s)
   for ``--latency-duration`` s; a deny rule makes every one a block, which A shares. Node B records,
   for each verdict, the time its ``peer_verdict`` returned; latency is that minus A's ``decided_at``
   (both ``time.time()`` on this machine), correlated by the caller number (one new caller per call).
   Split: decided → signed at send (the payload's ``ts``) and send → applied.
2. Sustained throughput: A offers ``--throughput-rate`` (default 5,000/s) for ``--duration`` (60 s);
   B counts what it applied: every sequence number exactly once, the inbox's rejections and
   duplicates, A's outbox depth every second, CPU of A, B and mosquitto. ``--profile`` adds a
   cProfile of both nodes during that run (written to the run directory, top functions printed).
3. Decision slowdown: B decides a warm workload (``--callers`` distinct callers, each decided once
   first; measured decisions with ``record=False``, so the workload stays the same from phase to phase:
   nothing learnt, written or shared) as fast as its loop allows, in phases of ``--phase`` s,
   alternately with A idle and with A sharing 1,000 verdicts/s that B receives on the same loop;
   reported: decisions/s and decide() latency with / without, and the propagation latency to B while
   it is busy.

Run: .venv/bin/python bench/bench_mesh.py [--quick] [--only latency,throughput,decide] [--profile] [--pin]
Raw results: bench/out/mesh-<time>/results.json (and the profiles).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import random
import subprocess
import sys
import threading
import time
import uuid
from array import array
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "bench" / "out"
KEY = "42" * 32
A_CALLERS = "+1718"
"""A's callers: +1 718 EEE LLLL, one new number per call (index i <-> exchange 200 + i // 10000)."""
DIDS = 2000
CHUNK = 100
"""B's decisions between two yields to its event loop (~3-5 ms of work)."""
CLK_TCK = os.sysconf("SC_CLK_TCK")
PRIVATE_PORT = 18840
"""--broker private: scripts/mosquitto's plain listener here (+1 password, +2 TLS: unused)."""


def a_caller(i: int) -> str:
    return f"{A_CALLERS}{200 + i // 10_000:03d}{i % 10_000:04d}"


def a_index(subject: str) -> int:
    if not subject.startswith(A_CALLERS) or len(subject) != 12:
        return -1
    return (int(subject[5:8]) - 200) * 10_000 + int(subject[8:])


# ---------------------------------------------------------------------------------------------------
# A node (child process)
# ---------------------------------------------------------------------------------------------------


def emit(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


class BenchNode:
    """One node: Firewall + MeshLink + the server's writer task, driven by commands on stdin."""

    def __init__(self, args: argparse.Namespace) -> None:
        from callshield import db
        from callshield.config import parse_config
        from callshield.engine import Firewall
        from callshield.meshlink import MeshLink
        from callshield.outbox import Outbox

        self.args = args
        self.path = Path(args.db)
        deny = '[[rules]]\naction = "deny"\npattern = "+1718*"\n' if args.child == "a" else ""
        config = parse_config(
            f"""
[node]
name = "{args.child}"
[mesh]
enabled = true
cluster = "{args.cluster}"
host = "{args.host}"
port = {args.port}
keys = [{{ id = "k1", secret = "{KEY}" }}]
{deny}"""
        )
        self.config = config
        self.firewall = Firewall(config=config, conn=db.connect(self.path))
        self.outbox = Outbox.open(self.path)  # its own file, as in service.Node
        self.link = MeshLink(firewall=self.firewall, config=config, outbox=self.outbox)
        self.firewall.on_shared = self.link.on_verdict
        # B: what arrived and when (peer_verdict wrapped; MeshLink calls it on the instance).
        self.raw: list[tuple[float, str, int, float]] = []
        """(applied at, subject, seq, ts) per verdict applied: as little work as possible while receiving."""
        self.other = 0
        original = self.firewall.peer_verdict
        clock = time.time
        raw = self.raw

        def recording(**kw: Any) -> bool:
            added = original(**kw)
            raw.append((clock(), kw["subject"], kw["seq"], kw["at"]))
            return added

        setattr(self.firewall, "peer_verdict", recording)  # noqa: B010
        self.calls: list[Any] = []
        self.profile: cProfile.Profile | None = None
        self.flushes: list[float] = []
        self.gc_pauses: list[tuple[int, float]] = []
        """(generation, seconds) of each collection of the cyclic GC (a pause of the loop)."""
        self._gc_start = 0.0
        """Durations of the writer thread's transactions (the outbox cannot commit meanwhile)."""
        self.sampler: CpuSampler | None = None

    async def run(self) -> None:
        from callshield import db

        writer = db.connect(self.path)  # as callshield serve: one connection, one writer thread
        write_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="callshield-writer")
        stop = asyncio.Event()
        link_task = asyncio.create_task(self.link.run(stop))
        flush_task = asyncio.create_task(self._flush_loop(writer, write_thread))
        async with asyncio.timeout(20):
            await self.link.connected.wait()
        await asyncio.sleep(0.5)  # the receiver's SUBSCRIBE
        if self.args.callers:
            self._warm_up(self.args.callers)
        gc.collect()
        gc.freeze()
        gc.callbacks.append(self._gc_timer)
        if self.args.cpu is not None:
            os.sched_setaffinity(0, {self.args.cpu})
        commands: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def read_stdin() -> None:
            for line in sys.stdin:
                loop.call_soon_threadsafe(commands.put_nowait, json.loads(line))
            loop.call_soon_threadsafe(commands.put_nowait, {"cmd": "quit"})

        threading.Thread(target=read_stdin, daemon=True).start()
        emit({"event": "ready", "pid": os.getpid(), "warm": self.args.callers})
        while True:
            cmd = await commands.get()
            if cmd["cmd"] == "quit":
                break
            handler = getattr(self, f"cmd_{cmd['cmd']}")
            emit(await handler(**{k: v for k, v in cmd.items() if k != "cmd"}))
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(link_task, 5.0)
        flush_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flush_task
        await self.firewall.flush_async(writer, write_thread)
        write_thread.shutdown(wait=True)
        writer.close()
        self.firewall.close()

    async def _flush_loop(self, writer: Any, write_thread: ThreadPoolExecutor) -> None:
        from callshield import db

        def timed(conn: Any, statements: Any) -> None:  # the writer thread's transaction, timed
            t = time.perf_counter()
            db.apply(conn, statements)
            self.flushes.append(time.perf_counter() - t)

        pool = _TimedWriter(write_thread, timed)
        while True:
            await asyncio.sleep(float(self.config.storage.flush_interval))
            await self.firewall.flush_async(writer, pool)  # type: ignore[arg-type]

    def _gc_timer(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.gc_pauses.append((info["generation"], time.perf_counter() - self._gc_start))

    def gc_summary(self) -> dict[str, Any]:
        """Collections per generation and the longest pause (ms), since the last call."""
        pauses, self.gc_pauses = self.gc_pauses, []
        out: dict[str, Any] = {}
        for gen in (0, 1, 2):
            times = [t for g, t in pauses if g == gen]
            out[f"gen{gen}"] = {"count": len(times), "max_ms": round(max(times, default=0.0) * 1000, 2)}
        return out

    def _warm_up(self, callers: int) -> None:
        from callshield.verdict import Call

        rng = random.Random(3)
        areas = (212, 213, 305, 312, 404, 415, 503, 512, 617, 702, 713, 808, 917, 949)
        seen: set[str] = set()
        while len(seen) < callers:
            seen.add(f"+1{rng.choice(areas)}{rng.randint(200, 999)}{rng.randrange(10_000):04d}")
        pool = sorted(seen)
        rng.shuffle(pool)
        # One DID per caller: repeated calls in the measured phases look like a caller's usual line,
        # not a dialer sweeping DIDs (which the pattern tracker would flag more and more as phases go on).
        self.calls = [Call(caller=c, callee=f"+1312555{i % DIDS:04d}") for i, c in enumerate(pool)]
        for call in self.calls:
            self.firewall.decide(call)
        self.firewall.flush(snapshot=True)

    # -- commands ------------------------------------------------------------------------------------

    async def cmd_send(self, rate: float, duration: float, start: int, out: str, drain: float = 60.0) -> dict[str, Any]:
        """A: decide calls from new callers at ``rate`` for ``duration`` s; every one is a shared block."""
        from callshield.verdict import Action, Call

        fw, link = self.firewall, self.link
        decided = array("d")
        depth: list[tuple[float, int, int]] = []
        blocks = 0
        published0 = link.counters["published"]
        self.flushes = []
        self.gc_summary()
        first_seq = self.outbox.last_seq() + 1
        if self.profile is not None:
            self.profile.enable()
        perf = time.perf_counter
        t0 = perf()
        next_sample = 1.0
        i = 0
        lag_max = 0.0
        thread_time = time.thread_time
        decide_cpu = 0.0
        loop_cpu = thread_time()
        while True:
            elapsed = perf() - t0
            if elapsed >= duration:
                break
            if elapsed >= next_sample:
                depth.append((round(elapsed, 2), self.outbox.depth(), len(link._fresh)))
                next_sample += 1.0
            due = min(int(rate * elapsed) + 1, int(rate * duration))
            lag_max = max(lag_max, (due - i) / rate)
            c0 = thread_time()
            for _ in range(min(due - i, CHUNK)):
                verdict = fw.decide(Call(caller=a_caller(start + i), callee=f"+1312555{i % DIDS:04d}"))
                decided.append(verdict.decided_at)
                blocks += verdict.action is Action.BLOCK
                i += 1
            decide_cpu += thread_time() - c0
            # 1 ms: libuv's timers count whole milliseconds, a shorter sleep polls without blocking (A's
            # CPU was then mostly this loop spinning, once it had a core to itself).
            await asyncio.sleep(0.001 if i >= due else 0)
        offered_wall = perf() - t0
        t_drain = perf()
        while link.backlog() and perf() - t_drain < drain:
            await asyncio.sleep(0.01)
        drained = perf() - t_drain
        loop_cpu = thread_time() - loop_cpu
        if self.profile is not None:
            self.profile.disable()
        with open(out, "wb") as f:
            decided.tofile(f)
        return {
            "event": "sent",
            "start": start,
            "count": i,
            "blocks": blocks,
            "offered_wall": offered_wall,
            "offered_rate": i / offered_wall,
            "drain_s": drained,
            "left_in_outbox": link.backlog(),
            "decide_cpu_s": decide_cpu,
            "loop_cpu_s": loop_cpu,
            "writer_ms": sorted(round(f * 1000, 1) for f in self.flushes)[-5:],
            "writer_count": len(self.flushes),
            "gc": self.gc_summary(),
            "published": link.counters["published"] - published0,
            "first_seq": first_seq,
            "last_seq": self.outbox.last_seq(),
            "max_behind_s": lag_max,
            "depth": depth,
            "counters": dict(link.counters),
            "outbox_dropped": self.outbox.dropped,
        }

    async def cmd_collect(self, expect: int, out: str, idle: float = 5.0, timeout: float = 120.0) -> dict[str, Any]:
        """B: wait for ``expect`` verdicts of A (or ``idle`` s without one), write them, start afresh."""
        perf = time.perf_counter
        t0 = last_change = perf()
        seen = len(self.raw)
        while len(self.raw) < expect and perf() - last_change < idle and perf() - t0 < timeout:
            await asyncio.sleep(0.02)
            if len(self.raw) != seen:
                seen, last_change = len(self.raw), perf()
        idx, seqs, sent_at, applied_at = array("q"), array("q"), array("d"), array("d")
        for applied, subject, seq, at in self.raw:
            i = a_index(subject)
            if i < 0:
                self.other += 1
                continue
            idx.append(i)
            seqs.append(seq)
            sent_at.append(at)
            applied_at.append(applied)
        got = len(idx)
        with open(out, "wb") as f:
            for arr in (idx, seqs, sent_at, applied_at):
                arr.tofile(f)
        result = {
            "event": "collected",
            "records": got,
            "other": self.other,
            "inbox": dict(self.link.inbox.stats),
            "counters": dict(self.link.counters),
            "peer_subjects": self.firewall.peers.subjects(),
            "fw_counters": {str(k): v for k, v in self.firewall.counters.items() if str(k).startswith("peer")},
            "gc": self.gc_summary(),
        }
        self.raw.clear()
        return result

    async def cmd_decide(self, duration: float, label: str) -> dict[str, Any]:
        """B: decide the warm workload as fast as the loop allows for ``duration`` s."""
        fw, calls = self.firewall, self.calls
        rng = random.Random(len(label) * 7919 + int(duration * 1000))
        order = [rng.randrange(len(calls)) for _ in range(200_000)]
        latencies = array("d")
        perf = time.perf_counter
        actions: Counter[str] = Counter()
        applied0 = len(self.raw)
        cpu0 = time.process_time()
        loop_cpu0 = time.thread_time()
        t0 = perf()
        end = t0 + duration
        n = 0
        while perf() < end:
            for _ in range(CHUNK):
                call = calls[order[n % len(order)]]
                t = perf()
                verdict = fw.decide(call, record=False)  # a stationary workload: nothing learnt or shared
                latencies.append(perf() - t)
                actions[verdict.action] += 1
                n += 1
            await asyncio.sleep(0)
        wall = perf() - t0
        cpu = time.process_time() - cpu0
        loop_cpu = time.thread_time() - loop_cpu0
        lat = sorted(latencies)
        return {
            "event": "decided",
            "label": label,
            "decisions": n,
            "wall": wall,
            "rate": n / wall,
            "cpu": cpu,
            "loop_cpu": loop_cpu,
            "cpu_rate": n / loop_cpu,
            "decide_rate": n / sum(lat),
            "mean_us": sum(lat) / n * 1e6,
            "p50_us": lat[n // 2] * 1e6,
            "p99_us": lat[int(n * 0.99)] * 1e6,
            "p999_us": lat[int(n * 0.999)] * 1e6,
            "peer_applied": len(self.raw) - applied0,
            "actions": dict(actions),
        }

    async def cmd_profile(self, on: bool, out: str = "") -> dict[str, Any]:
        """Start (``on``) a cProfile, or stop it and write it to ``out`` with the top functions."""
        if on:
            self.profile = cProfile.Profile()
            if self.args.child == "b":
                self.profile.enable()
            return {"event": "profile", "on": True}
        text = ""
        if self.profile is not None:
            self.profile.disable()
            self.profile.dump_stats(out)
            buffer = io.StringIO()
            pstats.Stats(self.profile, stream=buffer).sort_stats("tottime").print_stats(35)
            text = buffer.getvalue()
            self.profile = None
        return {"event": "profile", "on": False, "top": text}


    async def cmd_sample(self, on: bool) -> dict[str, Any]:
        """Start (``on``) the CPU-time sampler, or stop it and return its top lines and functions."""
        if on:
            self.sampler = CpuSampler()
            return {"event": "sample", "on": True}
        text = self.sampler.stop() if self.sampler is not None else ""
        self.sampler = None
        return {"event": "sample", "on": False, "top": text}


class CpuSampler:
    """A sampling profiler on CPU time (SIGPROF every ``interval`` s of the process's CPU, all threads):
    preemption by other processes on a shared machine costs no samples, unlike cProfile's wall clock.
    Each sample is the main thread's Python stack; the self line includes the C calls it makes."""

    def __init__(self, interval: float = 0.0005) -> None:
        import signal

        self.own: Counter[str] = Counter()
        self.inclusive: Counter[str] = Counter()
        self.samples = 0
        self.interval = interval
        signal.signal(signal.SIGPROF, self._sample)
        signal.setitimer(signal.ITIMER_PROF, interval, interval)

    def _sample(self, signum: int, frame: Any) -> None:
        self.samples += 1
        if frame is None:
            return
        code = frame.f_code
        self.own[f"{_short(code.co_filename)}:{frame.f_lineno} {code.co_name}"] += 1
        seen: set[str] = set()
        while frame is not None:
            code = frame.f_code
            name = f"{_short(code.co_filename)}:{code.co_firstlineno} {code.co_name}"
            if name not in seen:
                seen.add(name)
                self.inclusive[name] += 1
            frame = frame.f_back

    def stop(self, top: int = 40) -> str:
        import signal

        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, signal.SIG_DFL)
        n = max(1, self.samples)
        lines = [f"{self.samples} samples, one per {self.interval * 1e6:.0f} us of CPU (all threads)"]
        lines.append("-- self (line) --")
        lines += [f"{c / n * 100:5.1f}%  {k}" for k, c in self.own.most_common(top)]
        lines.append("-- inclusive (function) --")
        lines += [f"{c / n * 100:5.1f}%  {k}" for k, c in self.inclusive.most_common(top)]
        return "\n".join(lines)


def _short(filename: str) -> str:
    for marker in ("site-packages/", "callshield/", "python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename.rsplit("/", 1)[-1]


class _TimedWriter:
    """An executor that runs ``db.apply`` as ``timed`` (the bench's measure of the writer's transactions)."""

    def __init__(self, pool: ThreadPoolExecutor, timed: Any) -> None:
        self.pool, self.timed = pool, timed

    def submit(self, fn: Any, *args: Any) -> Any:
        from callshield import db

        return self.pool.submit(self.timed if fn is db.apply else fn, *args)


def child_main(args: argparse.Namespace) -> None:
    import uvloop

    node = BenchNode(args)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(node.run())


# ---------------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------------


class Child:
    def __init__(self, role: str, cluster: str, workdir: Path, host: str, port: int, callers: int, cpu: int | None):
        cmd = [sys.executable, __file__, "--child", role, "--cluster", cluster]
        cmd += ["--db", str(workdir / f"{role}.sqlite3"), "--host", host, "--port", str(port)]
        cmd += ["--callers", str(callers)]
        if cpu is not None:
            cmd += ["--cpu", str(cpu)]
        self.role = role
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        ready = self.read()
        self.pid = int(ready["pid"])

    def send(self, **cmd: Any) -> None:
        stdin: IO[str] | None = self.proc.stdin
        assert stdin is not None
        stdin.write(json.dumps(cmd) + "\n")
        stdin.flush()

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"node {self.role} exited ({self.proc.wait()})")
        result: dict[str, Any] = json.loads(line)
        return result

    def ask(self, **cmd: Any) -> dict[str, Any]:
        self.send(**cmd)
        return self.read()

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self.send(cmd="quit")
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def cpu_ticks(pid: int, *, system: bool = False) -> int:
    """utime + stime (fields 14, 15) of all the process's threads, or stime alone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[12]) if system else int(fields[11]) + int(fields[12])


class CpuMeter:
    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.t0 = time.perf_counter()
        self.start = {name: cpu_ticks(pid) for name, pid in pids.items()}
        self.start_sys = {name: cpu_ticks(pid, system=True) for name, pid in pids.items()}

    def percent(self) -> dict[str, float]:
        wall = time.perf_counter() - self.t0
        return {name: round(seconds / wall * 100, 1) for name, seconds in self.seconds().items()}

    def seconds(self, *, system: bool = False) -> dict[str, float]:
        start = self.start_sys if system else self.start
        return {name: (cpu_ticks(pid, system=system) - start[name]) / CLK_TCK for name, pid in self.pids.items()}


def quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


def read_records(path: Path) -> tuple[array[int], array[int], array[float], array[float]]:
    data = path.read_bytes()
    n = len(data) // 32
    idx, seqs, sent, applied = array("q"), array("q"), array("d"), array("d")
    idx.frombytes(data[: 8 * n])
    seqs.frombytes(data[8 * n : 16 * n])
    sent.frombytes(data[16 * n : 24 * n])
    applied.frombytes(data[24 * n :])
    return idx, seqs, sent, applied


def analyse(sent: dict[str, Any], decided_file: Path, collected: dict[str, Any], records: Path) -> dict[str, Any]:
    decided = array("d")
    decided.frombytes(decided_file.read_bytes())
    idx, seqs, sent_at, applied = read_records(records)
    count, start = int(sent["count"]), int(sent["start"])
    idx = array("q", (i - start for i in idx))
    total, to_send, wire = [], [], []
    for i, ts, t in zip(idx, sent_at, applied, strict=True):
        if 0 <= i < count:
            total.append((t - decided[i]) * 1000)
            to_send.append((ts - decided[i]) * 1000)
            wire.append((t - ts) * 1000)
    got = set(idx)
    seq_set = set(seqs)
    first, last = int(sent["first_seq"]), int(sent["last_seq"])
    result: dict[str, Any] = {
        "decided": count,
        "applied": len(idx),
        "distinct": len(got),
        "missing": count - len(got & set(range(count))),
        "applied_twice": len(idx) - len(got),
        "seq_distinct": len(seq_set),
        "seq_missing": (last - first + 1) - len(seq_set & set(range(first, last + 1))) if last >= first else 0,
        "inbox": collected["inbox"],
    }
    for name, values in (("latency_ms", total), ("to_send_ms", to_send), ("wire_ms", wire)):
        values.sort()
        result[name] = {
            "p50": quantile(values, 0.5),
            "p95": quantile(values, 0.95),
            "p99": quantile(values, 0.99),
            "p999": quantile(values, 0.999),
            "max": values[-1] if values else float("nan"),
        }
    if applied:
        result["applied_span_s"] = applied[-1] - applied[0]
        result["applied_rate"] = len(applied) / max(1e-9, applied[-1] - applied[0])
    return result


def broker_settings(environ: dict[str, str]) -> tuple[str, int, int | None]:
    script = ROOT / "scripts" / "mosquitto"
    out = subprocess.run([script, "env"], capture_output=True, text=True, check=True, env=environ).stdout
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    pidfile = Path(env.get("CALLSHIELD_MQTT_DIR", ROOT / ".cache" / "mosquitto")) / "mosquitto.pid"
    pid = int(pidfile.read_text().strip()) if pidfile.exists() else None
    return env.get("CALLSHIELD_MQTT_HOST", "127.0.0.1"), int(env.get("CALLSHIELD_MQTT_PORT", "18830")), pid


class Run:
    def __init__(self, args: argparse.Namespace, workdir: Path, host: str, port: int, broker_pid: int | None):
        self.args, self.workdir, self.host, self.port, self.broker_pid = args, workdir, host, port, broker_pid
        self.results: dict[str, Any] = {}

    def nodes(self, name: str, callers: int = 0) -> tuple[Child, Child]:
        cluster = f"bench{uuid.uuid4().hex[:12]}"
        workdir = self.workdir / name
        workdir.mkdir()
        pin_b, pin_a = (0, 1) if self.args.pin else (None, None)
        b = Child("b", cluster, workdir, self.host, self.port, callers, pin_b)
        a = Child("a", cluster, workdir, self.host, self.port, 0, pin_a)
        return a, b

    def pids(self, a: Child, b: Child) -> dict[str, int]:
        pids = {"a": a.pid, "b": b.pid}
        if self.broker_pid:
            pids["mosquitto"] = self.broker_pid
        return pids

    def propagate(self, name: str, a: Child, b: Child, rate: float, duration: float, start: int) -> dict[str, Any]:
        decided_file = self.workdir / name / f"decided-{start}.bin"
        records = self.workdir / name / f"records-{start}.bin"
        meter = CpuMeter(self.pids(a, b))
        sent = a.ask(cmd="send", rate=rate, duration=duration, start=start, out=str(decided_file))
        collected = b.ask(cmd="collect", expect=sent["count"], out=str(records))
        cpu = meter.percent()
        seconds = meter.seconds()
        system = meter.seconds(system=True)
        result = analyse(sent, decided_file, collected, records)
        result.update(sent=sent, cpu=cpu, rate=rate, duration=duration, gc_b=collected["gc"])
        count = max(1, int(sent["count"]))
        # CPU per verdict (µs): whole processes over the run, A's decide() calls (with on_verdict) apart.
        result["cpu_us_per_verdict"] = {name: round(used / count * 1e6, 1) for name, used in seconds.items()}
        result["cpu_us_per_verdict"]["a_decide"] = round(float(sent["decide_cpu_s"]) / count * 1e6, 1)
        result["cpu_us_per_verdict"]["a_mesh"] = round((seconds["a"] - float(sent["decide_cpu_s"])) / count * 1e6, 1)
        loop_rest = float(sent["loop_cpu_s"]) - float(sent["decide_cpu_s"])
        result["cpu_us_per_verdict"]["a_loop_rest"] = round(loop_rest / count * 1e6, 1)
        result["cpu_us_per_verdict"]["a_threads"] = round((seconds["a"] - float(sent["loop_cpu_s"])) / count * 1e6, 1)
        result["sys_us_per_verdict"] = {name: round(used / count * 1e6, 1) for name, used in system.items()}
        return result

    def latency(self) -> None:
        a, b = self.nodes("latency")
        try:
            a.ask(cmd="send", rate=200, duration=1.0, start=900_000, out=str(self.workdir / "latency" / "w.bin"))
            b.ask(cmd="collect", expect=200, out=str(self.workdir / "latency" / "w.rec"), idle=2.0)
            self.start_profiles("latency", a, b)
            r = self.propagate("latency", a, b, self.args.rate, self.args.latency_duration, 0)
            self.stop_profiles("latency", r, a, b)
        finally:
            a.close()
            b.close()
        self.results["latency"] = r
        print_propagation("propagation latency", r)

    def throughput(self) -> None:
        a, b = self.nodes("throughput")
        try:
            self.start_profiles("throughput", a, b)
            r = self.propagate("throughput", a, b, self.args.throughput_rate, self.args.duration, 0)
            self.stop_profiles("throughput", r, a, b)
        finally:
            a.close()
            b.close()
        self.results["throughput"] = r
        print_propagation("sustained throughput", r)
        depth = r["sent"]["depth"]
        print(
            "  A's outbox depth (committed / not yet committed) every 5 s: "
            + ", ".join(f"{t:.0f}s {d}/{f}" for t, d, f in depth[4::5])
        )

    def start_profiles(self, scenario: str, a: Child, b: Child) -> None:
        for node in (a, b):
            if scenario in self.args.profile.split(","):
                node.ask(cmd="profile", on=True)
            if scenario in self.args.sample.split(","):
                node.ask(cmd="sample", on=True)

    def stop_profiles(self, scenario: str, r: dict[str, Any], a: Child, b: Child) -> None:
        for node in (a, b):
            if scenario in self.args.profile.split(","):
                out = self.workdir / f"profile-{scenario}-{node.role}.prof"
                top = node.ask(cmd="profile", on=False, out=str(out))["top"]
                r[f"profile_{node.role}"] = str(out)
                print(f"--- cProfile of node {node.role} during the {scenario} run ({out}) ---")
                print(top)
            if scenario in self.args.sample.split(","):
                top = node.ask(cmd="sample", on=False)["top"]
                r[f"samples_{node.role}"] = top
                print(f"--- CPU samples of node {node.role} during the {scenario} run ---")
                print(top)

    def decide(self) -> None:
        a, b = self.nodes("decide", callers=self.args.callers)
        phases: list[dict[str, Any]] = []
        try:
            print(f"decision slowdown: B warm with {self.args.callers:,} callers; phases of {self.args.phase} s")
            start = 0
            for k, label in enumerate(["off-empty", "on", "off", "on", "off", "on", "off"]):
                if label == "on":
                    decided_file = self.workdir / "decide" / f"decided-{k}.bin"
                    a.send(cmd="send", rate=1000, duration=self.args.phase + 1.0, start=start, out=str(decided_file))
                    time.sleep(0.5)
                    meter = CpuMeter(self.pids(a, b))
                    sampled = k == 1 and "decide" in self.args.sample.split(",")
                    if sampled:
                        b.ask(cmd="sample", on=True)
                    phase = b.ask(cmd="decide", duration=self.args.phase, label=label)
                    phase["cpu"] = meter.percent()
                    if sampled:
                        print("--- CPU samples of node b during its first busy phase with peer traffic ---")
                        print(b.ask(cmd="sample", on=False)["top"])
                    sent = a.read()
                    records = self.workdir / "decide" / f"rec-{k}.bin"
                    collected = b.ask(cmd="collect", expect=sent["count"], out=str(records))
                    phase["propagation"] = analyse(sent, decided_file, collected, records)
                    start += int(sent["count"]) + 10
                else:
                    meter = CpuMeter(self.pids(a, b))
                    phase = b.ask(cmd="decide", duration=self.args.phase, label=label)
                    phase["cpu"] = meter.percent()
                phases.append(phase)
                print(
                    f"  {label:9s} {phase['rate']:8,.0f} decisions/s (decide() alone {phase['decide_rate']:,.0f}/s) "
                    f"p50 {phase['p50_us']:.1f} us p99 {phase['p99_us']:.1f} us; "
                    f"{phase['cpu_rate']:,.0f} per CPU-second of the loop thread; peer verdicts applied "
                    f"{phase['peer_applied']:,}; CPU {phase['cpu']}"
                )
        finally:
            a.close()
            b.close()
        off = [p for p in phases if p["label"] == "off"]
        on = [p for p in phases if p["label"] == "on"]

        def mean(rows: list[dict[str, Any]], key: str) -> float:
            return sum(float(r[key]) for r in rows) / len(rows)

        summary = {
            key: {"off": mean(off, key), "on": mean(on, key), "ratio": mean(on, key) / mean(off, key)}
            for key in ("rate", "cpu_rate", "decide_rate", "p50_us", "p99_us", "p999_us")
        }
        lat = sorted(p["propagation"]["latency_ms"]["p99"] for p in on)
        # What receiving cost B's loop thread, per wall second: its CPU in the phases with peer traffic
        # minus what their decisions cost at the CPU price of decisions without (an upper bound: under
        # contention decisions cost more, and that is counted here as receiving). On an otherwise idle
        # core the decision rate would drop by about this fraction.
        per_decision = 1 / summary["cpu_rate"]["off"]
        receive = [(p["loop_cpu"] - p["decisions"] * per_decision) / p["wall"] for p in on]
        applied = [p["peer_applied"] / p["wall"] for p in on]
        summary["receive_share"] = sum(receive) / len(receive)
        summary["receive_us_per_verdict"] = sum(r / a * 1e6 for r, a in zip(receive, applied, strict=True)) / len(on)
        self.results["decide"] = {"phases": phases, "summary": summary, "callers": self.args.callers}
        print(
            f"  => with 1,000 peer verdicts/s: decisions/s x{summary['rate']['ratio']:.3f} "
            f"(slowdown {100 * (1 - summary['rate']['ratio']):.1f}%), "
            f"per CPU-second of B's loop thread x{summary['cpu_rate']['ratio']:.3f}, "
            f"decide() alone x{summary['decide_rate']['ratio']:.3f}, "
            f"p50 x{summary['p50_us']['ratio']:.3f}, p99 x{summary['p99_us']['ratio']:.3f}; "
            f"propagation p99 to the busy node {', '.join(f'{v:.2f}' for v in lat)} ms; receiving took at most "
            f"{summary['receive_share'] * 100:.1f}% of a core on B's loop thread "
            f"({summary['receive_us_per_verdict']:.0f} us per verdict applied)"
        )


def _gc_text(gc_info: dict[str, Any]) -> str:
    return ", ".join(f"{gen} {v['count']} ({v['max_ms']:.1f} ms)" for gen, v in gc_info.items())


def print_propagation(title: str, r: dict[str, Any]) -> None:
    s = r["sent"]
    print(
        f"{title}: A offered {r['rate']:,.0f}/s for {r['duration']} s -> decided {s['count']:,} "
        f"({s['offered_rate']:,.0f}/s, {s['blocks']:,} blocks; at most {s['max_behind_s']:.2f} s behind the pace), "
        f"outbox drained {s['drain_s']:.2f} s after the last decision, {s['left_in_outbox']} left"
    )
    print(
        f"  B applied {r['applied']:,} ({r.get('applied_rate', 0):,.0f}/s over {r.get('applied_span_s', 0):.1f} s); "
        f"missing {r['missing']}, applied twice {r['applied_twice']}, seq distinct {r['seq_distinct']:,} "
        f"missing {r['seq_missing']}; inbox {r['inbox']}"
    )
    for name in ("latency_ms", "to_send_ms", "wire_ms"):
        q = r[name]
        print(
            f"  {name:11s} p50 {q['p50']:.2f}  p95 {q['p95']:.2f}  p99 {q['p99']:.2f}  p99.9 {q['p999']:.2f}  "
            f"max {q['max']:.1f} ms"
        )
    print(f"  CPU % (100 = one core): {r['cpu']}; A's link counters {s['counters']}")
    print(
        f"  A's writer: {s['writer_count']} transactions, the longest {s['writer_ms']} ms "
        f"(the outbox waits meanwhile: {s['counters'].get('outbox:busy', 0)} busy retries)"
    )
    print(f"  GC (collections, longest pause): A {_gc_text(s['gc'])}; B {_gc_text(r['gc_b'])}")
    per = r["cpu_us_per_verdict"]
    print(
        f"  CPU per verdict: A {per['a']:.0f} us (decide() {per['a_decide']:.0f} + the rest of the loop thread "
        f"{per['a_loop_rest']:.0f}: the mesh link, the bench's pacing + the writer thread {per['a_threads']:.0f}), "
        f"B {per['b']:.0f} us, mosquitto {per.get('mosquitto', float('nan')):.0f} us; of which in the kernel "
        + ", ".join(f"{k} {v:.0f} us" for k, v in r["sys_us_per_verdict"].items())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short phases (~1.5 min in all)")
    parser.add_argument("--only", default="latency,throughput,decide", help="comma-separated scenarios")
    parser.add_argument("--rate", type=float, default=1000.0, help="latency run: verdicts/s")
    parser.add_argument("--latency-duration", type=float, default=20.0)
    parser.add_argument("--throughput-rate", type=float, default=5000.0)
    parser.add_argument("--duration", type=float, default=60.0, help="throughput run: seconds")
    parser.add_argument("--phase", type=float, default=8.0, help="decision slowdown: seconds per phase")
    parser.add_argument("--callers", type=int, default=100_000, help="decision slowdown: distinct callers")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="throughput",
        default="",
        help="cProfile both nodes during these runs (comma-separated: latency,throughput; default throughput)",
    )
    parser.add_argument(
        "--sample",
        nargs="?",
        const="throughput",
        default="",
        help="CPU-time sampling profile (SIGPROF) of both nodes during these runs (as --profile)",
    )
    parser.add_argument(
        "--broker",
        choices=("private", "shared"),
        default="private",
        help="private (default): scripts/mosquitto in .cache/mosquitto-bench on port 18840, started and stopped "
        "here, so test sessions that stop the shared test broker (18830) cannot cut a run; shared: the test broker",
    )
    parser.add_argument("--pin", action="store_true", help="pin B to CPU 0 and A to CPU 1")
    # child processes
    parser.add_argument("--child", choices=("a", "b"), help=argparse.SUPPRESS)
    parser.add_argument("--cluster", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=18830, help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return
    if args.quick:
        args.latency_duration = min(args.latency_duration, 5.0)
        args.duration = min(args.duration, 10.0)
        args.phase = min(args.phase, 3.0)
        args.callers = min(args.callers, 20_000)
    script = ROOT / "scripts" / "mosquitto"
    env = dict(os.environ)
    if args.broker == "private":
        env.update(
            CALLSHIELD_MQTT_DIR=str(ROOT / ".cache" / "mosquitto-bench"),
            CALLSHIELD_MQTT_PORT=str(PRIVATE_PORT),
            CALLSHIELD_MQTT_AUTH_PORT=str(PRIVATE_PORT + 1),
            CALLSHIELD_MQTT_TLS_PORT=str(PRIVATE_PORT + 2),
            CALLSHIELD_MQTT_FRESH="1",
        )
    was_running = subprocess.run([script, "status"], check=False, capture_output=True, env=env).returncode == 0
    if not was_running:
        subprocess.run([script, "start"], check=True, env=env)
    try:
        host, port, broker_pid = broker_settings(env)
        OUT.mkdir(parents=True, exist_ok=True)
        workdir = OUT / f"mesh-{time.strftime('%Y%m%d-%H%M%S')}"
        workdir.mkdir()
        print(
            f"bench_mesh: python {platform.python_version()}, {os.cpu_count()} cores, broker {host}:{port} "
            f"(pid {broker_pid}), load average {os.getloadavg()[0]:.2f}; run directory {workdir}"
        )
        run = Run(args, workdir, host, port, broker_pid)
        for name in args.only.split(","):
            getattr(run, name.strip())()
        run.results["args"] = vars(args)
        (workdir / "results.json").write_text(json.dumps(run.results, indent=1, default=str))
        for leftover in workdir.glob("*/*.sqlite3*"):
            leftover.unlink()
        print_summary(run.results)
    finally:
        if not was_running:
            subprocess.run([script, "stop"], check=False, env=env)


def print_summary(results: dict[str, Any]) -> None:
    print("\n=== results (issue 4 targets) ===")
    if "latency" in results:
        r = results["latency"]
        p99 = r["latency_ms"]["p99"]
        print(
            f"propagation at {r['rate']:,.0f}/s: p50 {r['latency_ms']['p50']:.2f} / p95 {r['latency_ms']['p95']:.2f} / "
            f"p99 {p99:.2f} / max {r['latency_ms']['max']:.1f} ms, lost {r['missing']}: "
            f"{'MET' if p99 <= 5 and r['missing'] == 0 else 'NOT MET'} (p99 <= 5 ms)"
        )
    if "throughput" in results:
        r = results["throughput"]
        rate = r["applied"] / r["sent"]["offered_wall"]
        ok = r["missing"] == 0 and r["applied_twice"] == 0 and r["seq_missing"] == 0
        met = ok and r["sent"]["offered_rate"] >= 0.99 * 5000 and r.get("applied_rate", 0) >= 0.99 * 5000
        print(
            f"throughput: offered {r['sent']['offered_rate']:,.0f}/s for {r['duration']} s, B applied "
            f"{r['applied']:,} ({r.get('applied_rate', 0):,.0f}/s while arriving; {rate:,.0f}/s over the offered "
            f"time), lost {r['missing']}, twice {r['applied_twice']}: "
            f"{'MET' if met else 'NOT MET'} (>= 5,000/s for 60 s, zero loss)"
        )
    if "decide" in results:
        s = results["decide"]["summary"]
        ratio = s["rate"]["ratio"]
        print(
            f"decisions under 1,000 peer verdicts/s: {s['rate']['on']:,.0f} vs {s['rate']['off']:,.0f} decisions/s "
            f"(x{ratio:.3f}), p99 {s['p99_us']['on']:.1f} vs {s['p99_us']['off']:.1f} us: "
            f"{'MET' if ratio >= 0.9 else 'NOT MET'} (slowdown <= 10%); per CPU-second of B's loop thread "
            f"x{s['cpu_rate']['ratio']:.3f}; receiving took at most {s['receive_share'] * 100:.1f}% of a core of B's "
            f"loop thread ({s['receive_us_per_verdict']:.0f} us per verdict): the slowdown on an otherwise idle core"
        )


if __name__ == "__main__":
    main()
