"""Real-stack benchmark: SIPp -> Asterisk 22 -> callshield, against the same dialplan without the check.

    make bench-stack                                  # the full run (about 6 minutes; needs root)
    .venv/bin/python bench/bench_stack.py --quick     # a short smoke run (about 1 minute)
    .venv/bin/python bench/bench_stack.py --rates 100,200,400,600 --duration 60 --other-duration 20

What it does, in one run:

1. Builds (or restores) and starts its own Asterisk sandbox (``scripts/asterisk-sandbox``) in
   ``.cache/asterisk/root-bench`` with SIP on 127.0.0.1:5090, HTTP on 8092 and the dialplan's FastAGI
   pointed at 127.0.0.1:4590, so it does not collide with the e2e sandbox. Raises the open-files limit
   first (Asterisk inherits it; without CAP_SYS_RESOURCE only up to the hard limit, logged at start).
   The sandbox's rtp.conf gives 10,000 RTP ports. At 400 calls/s and a 500 ms hold about 200 calls
   are up at once; descriptors and ports only run out once Asterisk falls behind and calls pile up.
2. Starts ``callshield serve`` on 4590 with a fresh database and config in a temporary directory,
   seeded for a realistic mix: a config deny rule (``+1213555*``), a CLI deny entry (``+1646555*``)
   and 20,000 imported reported numbers. Screening is left to the dialplan (``in_session = false``,
   and the sample dialplan does not run it), so "screen" verdicts connect: every call ends in 200 or 403.
   Callers: 86% unknown numbers, 8% reported numbers, 3% + 3% in the two denied exchanges.
3. For each offered rate, places calls with SIPp (``bench/sipp/uac_bench.xml``: INVITE, final
   response, ACK; answered calls hold ``--hold-ms`` then BYE) twice: from 127.0.0.2, which the
   test-only endpoint ``bench-noagi`` (``asterisk_conf/sandbox/pjsip.conf``) sends straight to the
   stand-in phones (``context=phones``: the sample dialplan without the callshield Gosub), and from
   127.0.0.1, the sample trunk (``from-trunk``: Gosub(callshield-check) -> AGI -> phones, plus the
   hangup-feedback AGI). Same SIPp, same Asterisk, same phones; only the check differs.
4. Per step: offered and achieved calls/s, failed calls (a status other than 200/403 — 403 only
   expected with callshield —, no final response within 8 s, a BYE not answered, or a call SIPp
   aborted), SIPp retransmissions, INVITE -> final response p50/p95/p99/max (SIPp timestamps, us),
   Asterisk fail-open notices (AGI errors), and the CPU of asterisk, sipp, callshield and everything
   else (``/proc``, sampled every second; 200% = both cores).

Asterisk's full log is cut to notice/warning/error during the run (``--asterisk-log quiet``, the
default): with the sandbox's ``verbose(3)`` every dialplan priority is a log line, which costs the
check's ~25 priorities more than the baseline's few. ``--asterisk-log full`` keeps it.

Raw results (per-call SIPp logs, SIPp stats, CPU samples, results.json, summary.md) go to
``bench/out/stack-<time>/`` (git-ignored). Needs root (chroot) and SIPp (``sip-tester``; the sandbox
script installs it). Everything shares the machine's cores: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SANDBOX = ROOT / "scripts" / "asterisk-sandbox"
SCENARIO = ROOT / "bench" / "sipp" / "uac_bench.xml"
OUT = ROOT / "bench" / "out"
CLK_TCK = os.sysconf("SC_CLK_TCK")

AGI_IP = "127.0.0.1"  # the sample trunk callshield-trunk (context from-trunk: with the check)
NOAGI_IP = "127.0.0.2"  # the test-only endpoint bench-noagi (context phones: without it)
VARIANTS = {"noagi": NOAGI_IP, "agi": AGI_IP}
LABEL = {"noagi": "without AGI", "agi": "with callshield"}
EXPECTED = {"noagi": {"200"}, "agi": {"200", "403"}}
OK_ENDS = {"done", "rejected"}

CONFIG = """\
[agi]
host = "127.0.0.1"
port = {port}

[logging]
level = "warning"

[screening]
# "screen" verdicts go back to the dialplan, which (sample dialplan) connects them: no media in the bench.
in_session = false

[[rules]]
action = "deny"
pattern = "+1213555*"
note = "bench: denied exchange (config rule)"
"""


# -- small helpers -------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[bench-stack {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks; ``q`` in 0..100."""
    if not sorted_values:
        return float("nan")
    pos = (len(sorted_values) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


def nanp(rng: random.Random, prefix: str = "") -> str:
    """A valid-looking NANP number (area code and exchange 2-9), optionally with a fixed +1NPANXX prefix."""
    if prefix:
        return f"{prefix}{rng.randint(0, 9999):04d}"
    npa = f"{rng.randint(2, 9)}{rng.randint(0, 99):02d}"
    return f"+1{npa}{rng.randint(2, 9)}{rng.randint(0, 99):02d}{rng.randint(0, 9999):04d}"


# -- CPU from /proc --------------------------------------------------------------------------------


def proc_ticks(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


def thread_ticks(pid: int) -> dict[str, int]:
    """CPU ticks per thread name (threads of the same name summed)."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                text = (task / "stat").read_text()
            except OSError:
                continue
            name = text[text.index("(") + 1 : text.rindex(")")]
            fields = text[text.rindex(")") + 2 :].split()
            out[name] = out.get(name, 0) + int(fields[11]) + int(fields[12])
    return out


def system_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal
    return total - values[3] - values[4], total


class CpuSampler:
    """Samples, every ``interval`` s, the CPU used by named processes and by the whole machine."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.pids: dict[str, int] = {}
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _snapshot(self) -> tuple[float, dict[str, int], tuple[int, int]]:
        ticks = {name: t for name, pid in list(self.pids.items()) if (t := proc_ticks(pid)) is not None}
        return time.monotonic(), ticks, system_ticks()

    def _run(self) -> None:
        last = self._snapshot()
        while not self._stop.wait(self.interval):
            now = self._snapshot()
            wall = now[0] - last[0]
            sample: dict[str, float] = {"t": now[0]}
            ours = 0.0
            for name, ticks in now[1].items():
                if name in last[1]:
                    pct = 100.0 * (ticks - last[1][name]) / CLK_TCK / wall
                    sample[name] = pct
                    ours += pct
            busy = now[2][0] - last[2][0]
            total = now[2][1] - last[2][1]
            cores = os.cpu_count() or 1
            sample["machine"] = 100.0 * cores * busy / total if total else 0.0
            sample["other"] = max(0.0, sample["machine"] - ours)
            self.samples.append(sample)
            last = now

    def summary(self, start: float, end: float) -> dict[str, dict[str, float]]:
        """Mean and max (1-s samples) per name between two monotonic times."""
        window = [s for s in self.samples if start < s["t"] <= end]
        names = sorted({k for s in window for k in s if k != "t"})
        out: dict[str, dict[str, float]] = {}
        for name in names:
            values = [s[name] for s in window if name in s]
            if values:
                out[name] = {"mean": sum(values) / len(values), "max": max(values)}
        return out


# -- the Asterisk sandbox and callshield ---------------------------------------------------------------


class Sandbox:
    def __init__(self, root: Path, sip_port: int, agi_port: int, http_port: int) -> None:
        self.root = root
        self.sip_port = sip_port
        self.env = {
            **os.environ,
            "CALLSHIELD_ASTERISK_ROOT": str(root),
            "CALLSHIELD_SIP_PORT": str(sip_port),
            "CALLSHIELD_AGI_HOST": "127.0.0.1",
            "CALLSHIELD_AGI_PORT": str(agi_port),
            "CALLSHIELD_HTTP_PORT": str(http_port),
        }

    def script(self, *args: str, timeout: float = 300.0) -> str:
        proc = subprocess.run(
            [str(SANDBOX), *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise SystemExit(f"asterisk-sandbox {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return proc.stdout

    def cli(self, command: str) -> str:
        return self.script("cli", command, timeout=30)

    @property
    def pid(self) -> int:
        return int((self.root / ".sandbox" / "asterisk.pid").read_text().strip())

    @property
    def full_log(self) -> Path:
        return self.root / "var" / "log" / "asterisk" / "full"

    def quiet_log(self) -> None:
        """Cut the full log to notice/warning/error in this sandbox's installed copy (repo files untouched)."""
        conf = self.root / "etc" / "asterisk" / "logger.conf"
        text = conf.read_text()
        conf.write_text(text.replace("full => notice,warning,error,verbose(3),dtmf", "full => notice,warning,error"))
        self.cli("logger reload")

    def active_calls(self) -> int:
        try:
            text = self.cli("core show channels count")
        except (SystemExit, subprocess.TimeoutExpired):
            return 1 << 30  # no answer: as bad as calls left up
        for line in text.splitlines():
            if "active call" in line:
                return int(line.split()[0])
        return 0

    def drain(self, timeout: float = 20.0) -> bool:
        """Wait until Asterisk has no call up; False if some are still up after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while (up := self.active_calls()) > 0:
            if time.monotonic() > deadline:
                log(f"warning: {up} calls still up after {timeout:g} s")
                return False
            time.sleep(0.5)
        return True


class Callshield:
    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.config = workdir / "callshield.toml"
        self.database = workdir / "callshield.sqlite3"
        self.log = workdir / "serve.log"
        self.config.write_text(CONFIG.format(port=port))
        self.env = {k: v for k, v in os.environ.items() if k != "CALLSHIELD_CONFIG"}
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "callshield", "--config", str(self.config), "--db", str(self.database), *args]

    def cli(self, *args: str) -> str:
        proc = subprocess.run(
            self.argv(*args), cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=300, check=False
        )
        if proc.returncode != 0:
            raise SystemExit(f"callshield {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
        return proc.stdout

    def seed(self, reported: Sequence[str]) -> None:
        listing = self.workdir / "reported.txt"
        listing.write_text("".join(f"{n}\n" for n in reported))
        self.cli("import", str(listing), "--format", "list", "--dates", "now")
        self.cli("deny", "+1646555*", "--note", "bench: denied exchange (CLI entry)")

    def start(self) -> int:
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen(
                self.argv("serve", "--host", "127.0.0.1", "--port", str(self.port)),
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"callshield serve exited at start:\n{self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self.proc.pid
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("callshield serve did not listen within 30 s") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# -- workload and one SIPp step ---------------------------------------------------------------------


@dataclass
class Mix:
    clean: list[str]
    reported: list[str]
    dids: list[str]

    @classmethod
    def build(cls, seed: int = 7) -> Mix:
        rng = random.Random(seed)
        clean = [nanp(rng) for _ in range(200_000)]
        reported = [nanp(rng) for _ in range(20_000)]
        # Stand-in phones: every DID answers except tails 0480-0489 (see extensions.conf [phones]).
        dids = [f"+1312555{i:04d}" for i in range(1000, 3000)]
        return cls(clean, reported, dids)

    def calls(self, count: int, seed: int) -> list[tuple[str, str]]:
        rng = random.Random(seed)
        out = []
        for _ in range(count):
            r = rng.random()
            if r < 0.03:
                caller = nanp(rng, "+1213555")  # config deny rule
            elif r < 0.06:
                caller = nanp(rng, "+1646555")  # CLI deny entry
            elif r < 0.14:
                caller = rng.choice(self.reported)
            else:
                caller = rng.choice(self.clean)
            out.append((caller, rng.choice(self.dids)))
        return out


@dataclass
class StepResult:
    name: str
    variant: str
    rate: int
    duration: float
    planned: int
    recorded: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    ends: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    achieved: float = 0.0
    retransmissions: int = 0
    sipp_failed: int = 0
    dead_call_msgs: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)
    latency_200_ms: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    threads: dict[str, dict[str, float]] = field(default_factory=dict)
    fail_open: int = 0
    asterisk_warnings: dict[str, int] = field(default_factory=dict)
    sipp_rc: int = 0
    wall_s: float = 0.0
    left_up: int = 0  # calls Asterisk still had up 3 s after SIPp ended (should be 0)


def parse_calls(text: str) -> list[tuple[str, float, float, str]]:
    """(code, t0, t1, end) per BENCH line; t0/t1 in seconds (nan when not set)."""
    out = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 8 or parts[0] != "BENCH":
            continue

        def when(sec: str, usec: str) -> float:
            try:
                return float(sec) + float(usec) / 1e6
            except ValueError:
                return float("nan")

        out.append((parts[2], when(parts[3], parts[4]), when(parts[5], parts[6]), parts[7]))
    return out


def last_stats(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return {}
    if len(lines) < 2:
        return {}
    return dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))


def quantiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    if not values:
        return {}
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": values[-1],
    }


def log_tail(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def thread_usage(before: dict[str, int], after: dict[str, int], wall: float, top: int = 4) -> dict[str, float]:
    usage = {name: 100.0 * (t - before.get(name, 0)) / CLK_TCK / wall for name, t in after.items()}
    return dict(sorted(usage.items(), key=lambda kv: -kv[1])[:top])


def run_step(
    name: str,
    variant: str,
    rate: int,
    duration: float,
    calls: list[tuple[str, str]],
    args: argparse.Namespace,
    sandbox: Sandbox,
    sampler: CpuSampler,
    cs_pid: int,
    outdir: Path,
) -> StepResult:
    planned = len(calls)
    result = StepResult(name=name, variant=variant, rate=rate, duration=duration, planned=planned)
    stem = outdir / name
    inf = stem.with_suffix(".calls.csv")
    inf.write_text("SEQUENTIAL\n" + "".join(f"{c};{d}\n" for c, d in calls))
    calls_log = stem.with_suffix(".sipp.log")
    stat_file = stem.with_suffix(".stat.csv")
    err_file = stem.with_suffix(".errors.log")
    ip = VARIANTS[variant]
    cmd = [
        args.sipp,
        f"127.0.0.1:{args.sip_port}",
        "-sf", str(SCENARIO),
        "-inf", str(inf),
        "-m", str(planned),
        "-r", str(rate),
        "-rp", "1000",
        "-l", str(max(2000, rate * 10)),
        "-d", str(args.hold_ms),
        "-i", ip,
        "-p", str(free_udp_port(ip)),
        "-mp", str(free_udp_port(ip)),
        "-buff_size", "4194304",
        "-nostdin",
        "-trace_logs", "-log_file", str(calls_log),
        "-trace_stat", "-stf", str(stat_file), "-fd", "1",
        "-trace_err", "-error_file", str(err_file),
    ]  # fmt: skip
    log_offset = sandbox.full_log.stat().st_size if sandbox.full_log.exists() else 0
    ast_threads = thread_ticks(sandbox.pid)
    cs_threads = thread_ticks(cs_pid)
    started = time.monotonic()
    with (outdir / f"{name}.sipp.out").open("wb") as sink:
        proc = subprocess.Popen(cmd, cwd=outdir, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT)
        sampler.pids["sipp"] = proc.pid
        try:
            result.sipp_rc = proc.wait(timeout=duration + 60)
        except subprocess.TimeoutExpired:
            log(f"{name}: SIPp still running {duration + 60:g} s after start; killing it")
            proc.kill()
            result.sipp_rc = proc.wait()
        finally:
            if proc.poll() is None:  # interrupted: do not leave SIPp calling
                proc.kill()
                proc.wait()
    ended = time.monotonic()
    result.wall_s = ended - started
    time.sleep(3.0)
    result.left_up = sandbox.active_calls()
    wall = max(ended - started, 1e-6)
    result.threads = {
        "asterisk": thread_usage(ast_threads, thread_ticks(sandbox.pid), wall),
        "callshield": thread_usage(cs_threads, thread_ticks(cs_pid), wall),
    }
    sampler.pids.pop("sipp", None)
    # CPU over the sending window only (the first and last second are partial).
    result.cpu = sampler.summary(started + 1.0, started + duration)

    records = parse_calls(calls_log.read_text(errors="replace") if calls_log.exists() else "")
    result.recorded = len(records)
    ok_latency: list[float] = []
    latency_200: list[float] = []
    t0s: list[float] = []
    for code, t0, t1, end in records:
        result.codes[code] = result.codes.get(code, 0) + 1
        result.ends[end] = result.ends.get(end, 0) + 1
        t0s.append(t0)
        if code in EXPECTED[variant] and end in OK_ENDS:
            ms = (t1 - t0) * 1e3
            ok_latency.append(ms)
            if code == "200":
                latency_200.append(ms)
    ok = len(ok_latency)
    result.failed = planned - ok
    t0s = sorted(t for t in t0s if t == t)
    if len(t0s) > 1:
        span = t0s[-1] - t0s[0] + 1.0 / rate
        result.achieved = ok / span
    result.latency_ms = quantiles(ok_latency)
    result.latency_200_ms = quantiles(latency_200)
    stats = last_stats(stat_file)
    result.retransmissions = int(stats.get("Retransmissions(C)", "0") or 0)
    result.sipp_failed = int(stats.get("FailedCall(C)", "0") or 0)
    result.dead_call_msgs = int(stats.get("DeadCallMsgs(C)", "0") or 0)
    text = log_tail(sandbox.full_log, log_offset)
    (outdir / f"{name}.asterisk.log").write_text(text)
    result.fail_open = text.count("callshield: fail open")
    for line in text.splitlines():
        if ("WARNING" in line or "ERROR" in line) and "No SIP authenticator registered" not in line:
            key = line.split("]", 2)[-1].strip()[:100] if "]" in line else line[:100]
            result.asterisk_warnings[key] = result.asterisk_warnings.get(key, 0) + 1
    return result


# -- reporting ------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:.{digits}f}"


def cpu_cell(result: StepResult, name: str) -> str:
    cpu = result.cpu.get(name)
    return f"{cpu['mean']:.0f} ({cpu['max']:.0f})" if cpu else "-"


def render(results: list[StepResult], args: argparse.Namespace, machine: str) -> str:
    lines = [
        f"Machine: {machine}",
        f"Command: {args.command}",
        f"Hold {args.hold_ms} ms per answered call; Asterisk log: {args.asterisk_log}; "
        "latency = INVITE sent -> final response received, at SIPp, ms.",
        "",
        "| offered/s | path | s | calls | achieved/s | 200 | 403 | failed | retrans | p50 | p95 | p99 | max "
        "| p99 200s | CPU % asterisk | sipp | callshield | other |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lat = r.latency_ms
        lines.append(
            f"| {r.rate} | {LABEL[r.variant]}{' (warm-up)' if r.name.startswith('warmup') else ''} | {r.duration:g} "
            f"| {r.planned:,} | {r.achieved:,.1f} | {r.codes.get('200', 0):,} | {r.codes.get('403', 0):,} "
            f"| {r.failed:,} | {r.retransmissions:,} | {fmt(lat.get('p50'))} | {fmt(lat.get('p95'))} "
            f"| {fmt(lat.get('p99'))} | {fmt(lat.get('max'), 1)} | {fmt(r.latency_200_ms.get('p99'))} "
            f"| {cpu_cell(r, 'asterisk')} | {cpu_cell(r, 'sipp')} | {cpu_cell(r, 'callshield')} "
            f"| {cpu_cell(r, 'other')} |"
        )
    lines += ["", "CPU: mean (max of 1-s samples) over the sending window; 200% = both cores.", ""]
    lines += [
        "| offered/s | p99 without AGI | p99 with callshield | p99 added | p99 added, 200s only | p50 added "
        "| failed (with) | fail-open |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_key = {(r.rate, r.variant): r for r in results if not r.name.startswith("warmup")}
    verdicts: list[str] = []
    for rate in args.rates:
        base, with_cs = by_key.get((rate, "noagi")), by_key.get((rate, "agi"))
        if base is None or with_cs is None:
            continue
        added = with_cs.latency_ms.get("p99", float("nan")) - base.latency_ms.get("p99", float("nan"))
        added_200 = with_cs.latency_200_ms.get("p99", float("nan")) - base.latency_200_ms.get("p99", float("nan"))
        added_50 = with_cs.latency_ms.get("p50", float("nan")) - base.latency_ms.get("p50", float("nan"))
        lines.append(
            f"| {rate} | {fmt(base.latency_ms.get('p99'))} | {fmt(with_cs.latency_ms.get('p99'))} | {fmt(added)} "
            f"| {fmt(added_200)} | {fmt(added_50)} | {with_cs.failed} | {with_cs.fail_open} |"
        )
        if rate == args.headline:
            met = (
                with_cs.failed == 0
                and base.failed == 0
                and with_cs.retransmissions == 0
                and with_cs.fail_open == 0
                and with_cs.left_up == 0
                and with_cs.achieved >= rate * 0.99
                and with_cs.duration >= 60
                and added <= 2.0
            )
            verdicts.append(
                f"Target at {rate} calls/s for {with_cs.duration:g} s (zero failed calls, no retransmissions, "
                f"no fail-open, achieved >= 99% of offered, p99 added <= 2 ms): "
                f"{'MET' if met else 'NOT MET'} (achieved {with_cs.achieved:,.1f}/s, failed {with_cs.failed}, "
                f"retrans {with_cs.retransmissions}, fail-open {with_cs.fail_open}, p99 added {fmt(added)} ms"
                f"{'' if with_cs.duration >= 60 else '; step shorter than 60 s'})."
            )
    lines += ["", *verdicts]
    lines += [
        "",
        "CPU per call (ms of CPU per call: mean CPU / achieved rate; steps without failures). The last column is",
        "what the machine's cores would carry at that cost if nothing else ran on them:",
        "",
        "| offered/s | path | asterisk | sipp | callshield | total | cores / total |",
        "|---|---|---|---|---|---|---|",
    ]
    cores = os.cpu_count() or 1
    for r in results:
        if r.name.startswith("warmup") or r.failed or r.achieved <= 0:
            continue
        per_call = {n: 10.0 * r.cpu[n]["mean"] / r.achieved for n in ("asterisk", "sipp", "callshield") if n in r.cpu}
        total = sum(per_call.values())
        lines.append(
            f"| {r.rate} | {LABEL[r.variant]} | {fmt(per_call.get('asterisk'))} | {fmt(per_call.get('sipp'))} "
            f"| {fmt(per_call.get('callshield'))} | {fmt(total)} | {cores * 1000 / total:,.0f} calls/s |"
        )
    threads = [r for r in results if r.variant == "agi" and not r.name.startswith("warmup")]
    if threads:
        lines += ["", "Busiest threads with callshield (% of one core over the step):"]
        for r in threads:
            parts = [
                f"{proc}: " + ", ".join(f"{n} {v:.0f}" for n, v in r.threads.get(proc, {}).items())
                for proc in ("asterisk", "callshield")
            ]
            lines.append(f"- {r.rate}/s: " + "; ".join(parts))
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------------------


def machine_line() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    sipp_version = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["sipp", "-v"], capture_output=True, text=True, timeout=10, check=False).stdout
        sipp_version = next((w for w in out.split() if w.startswith("v3")), "?")
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} vCPUs ({model}), {mem}, Python {sys.version.split()[0]}, SIPp {sipp_version}; "
        f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def raise_nofile(limit: int) -> int:
    """Raise the open-files limit (soft and, as root, hard) to ``limit``; Asterisk inherits it."""
    with contextlib.suppress(OSError, ValueError):
        limit = min(limit, int(Path("/proc/sys/fs/nr_open").read_text()))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < limit and os.geteuid() != 0:
        limit = hard
    if soft < limit:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, max(limit, hard)))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def plan(args: argparse.Namespace) -> Iterator[tuple[int, float]]:
    for rate in args.rates:
        yield rate, (args.duration if rate == args.headline else args.other_duration)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rates", default="100,200,400,600", help="offered calls/s, rising (default 100,200,400,600)")
    parser.add_argument("--headline", type=int, default=400, help="the target rate, run for --duration (400)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds at the headline rate (60)")
    parser.add_argument("--other-duration", type=float, default=20.0, help="seconds at the other rates (20)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of warm-up at 50 calls/s per path (5)")
    parser.add_argument("--hold-ms", type=int, default=500, help="answered calls stay up this long (500)")
    parser.add_argument("--variants", default="noagi,agi", help="paths and their order per rate (noagi,agi)")
    parser.add_argument("--asterisk-log", choices=("quiet", "full"), default="quiet")
    parser.add_argument("--quick", action="store_true", help="smoke run: rates 100,400 for 5 s, 2 s warm-up")
    parser.add_argument("--root", default=str(ROOT / ".cache" / "asterisk" / "root-bench"))
    parser.add_argument("--sip-port", type=int, default=5090)
    parser.add_argument("--agi-port", type=int, default=4590)
    parser.add_argument("--http-port", type=int, default=8092)
    parser.add_argument("--sipp", default=shutil.which("sipp") or "sipp")
    parser.add_argument("--out", default="", help="output directory (default bench/out/stack-<time>)")
    parser.add_argument("--keep", action="store_true", help="leave the sandbox running at the end")
    parser.add_argument("--report", default="", metavar="DIR", help="only print the summary of an earlier run's DIR")
    args = parser.parse_args(argv)
    args.command = " ".join([Path(sys.executable).name, *sys.argv]) if argv is None else " ".join(argv)
    if args.quick:
        args.rates = "100,400"
        args.duration = args.other_duration = 5.0
        args.warmup = 2.0
    args.rates = [int(r) for r in str(args.rates).split(",") if r]
    args.variants = [v for v in str(args.variants).split(",") if v]
    for v in args.variants:
        if v not in VARIANTS:
            parser.error(f"unknown variant {v!r} (noagi, agi)")
    return args


def on_signal(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        saved = json.loads((Path(args.report) / "results.json").read_text())
        vars(args).update(saved.get("args", {}), command=saved["command"])
        print(render([StepResult(**step) for step in saved["steps"]], args, saved["machine"]))
        return 0
    # Also when started in the background (SIGINT ignored there): clean up SIPp, callshield and Asterisk.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if os.geteuid() != 0:
        raise SystemExit("needs root: the Asterisk sandbox runs in a chroot")
    outdir = Path(args.out) if args.out else OUT / time.strftime("stack-%Y%m%d-%H%M%S")
    outdir.mkdir(parents=True, exist_ok=True)
    machine = machine_line()
    nofile = raise_nofile(1_048_576)
    sandbox = Sandbox(Path(args.root), args.sip_port, args.agi_port, args.http_port)
    log(f"building/starting the sandbox in {args.root} (SIP {args.sip_port}, FastAGI {args.agi_port})")
    sandbox.script("build", timeout=900)
    if shutil.which(args.sipp) is None:
        raise SystemExit(f"{args.sipp} not found (apt-get install sip-tester)")
    sandbox.script("stop")
    sandbox.script("start")
    results: list[StepResult] = []
    with tempfile.TemporaryDirectory(prefix="callshield-bench-stack-") as scratch:
        callshield = Callshield(Path(scratch), args.agi_port)
        try:
            if args.asterisk_log == "quiet":
                sandbox.quiet_log()
            limits = Path(f"/proc/{sandbox.pid}/limits").read_text()
            ast_nofile = next((ln.split()[3] for ln in limits.splitlines() if ln.startswith("Max open files")), "?")
            log(f"Asterisk pid {sandbox.pid}, open files limit {ast_nofile} (ours {nofile})")
            mix = Mix.build()
            log("seeding callshield: 20,000 reported numbers, one CLI deny entry, one config deny rule")
            callshield.seed(mix.reported)
            cs_pid = callshield.start()
            with CpuSampler() as sampler:
                sampler.pids.update({"asterisk": sandbox.pid, "callshield": cs_pid})
                steps: list[tuple[str, str, int, float]] = []
                if args.warmup > 0:
                    steps += [(f"warmup-{v}", v, 50, args.warmup) for v in args.variants]
                for rate, duration in plan(args):
                    steps += [(f"{rate}-{v}", v, rate, duration) for v in args.variants]
                collapsed: dict[int, list[bool]] = {}
                for n, (name, variant, rate, duration) in enumerate(steps):
                    lower = [r for r in collapsed if r < rate]
                    if lower and all(collapsed[lower[-1]]):
                        log(f"{name}: skipped (every path failed >= 5% of its calls at {lower[-1]}/s)")
                        continue
                    calls = mix.calls(int(rate * duration), seed=1000 + n)
                    log(f"{name}: {rate} calls/s for {duration:g} s ({len(calls):,} calls, {LABEL[variant]})")
                    result = run_step(name, variant, rate, duration, calls, args, sandbox, sampler, cs_pid, outdir)
                    results.append(result)
                    lat = result.latency_ms
                    log(
                        f"{name}: achieved {result.achieved:,.1f}/s, failed {result.failed}, retrans "
                        f"{result.retransmissions}, codes {result.codes}, p50 {fmt(lat.get('p50'))} p99 "
                        f"{fmt(lat.get('p99'))} ms, CPU ast {cpu_cell(result, 'asterisk')} sipp "
                        f"{cpu_cell(result, 'sipp')} cs {cpu_cell(result, 'callshield')} other "
                        f"{cpu_cell(result, 'other')}; left up {result.left_up}, fail-open {result.fail_open}, "
                        f"Asterisk warnings {sum(result.asterisk_warnings.values())}"
                    )
                    for warning, count in sorted(result.asterisk_warnings.items(), key=lambda kv: -kv[1])[:3]:
                        log(f"  {count} x {warning}")
                    if not name.startswith("warmup"):
                        collapsed.setdefault(rate, []).append(result.failed >= 0.05 * result.planned)
                    if not sandbox.drain():
                        # Calls SIPp gave up on stay up in Asterisk (the phones wait an hour): start afresh.
                        log("restarting Asterisk and callshield so that the next step starts clean")
                        callshield.stop()
                        sandbox.script("restart")
                        if args.asterisk_log == "quiet":
                            sandbox.quiet_log()
                        cs_pid = callshield.start()
                        sampler.pids.update({"asterisk": sandbox.pid, "callshield": cs_pid})
                    time.sleep(2.0)
                (outdir / "cpu_samples.json").write_text(json.dumps(sampler.samples))
            stats = callshield.cli("stats", "--json")
            (outdir / "callshield_stats.json").write_text(stats)
        finally:
            callshield.stop()
            with contextlib.suppress(OSError):
                shutil.copy(callshield.log, outdir / "serve.log")
            if not args.keep:
                sandbox.script("stop")
    report = render(results, args, machine)
    (outdir / "results.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "command": args.command,
                "args": {k: getattr(args, k) for k in ("rates", "headline", "hold_ms", "asterisk_log")},
                "steps": [asdict(r) for r in results],
            },
            indent=1,
        )
    )
    (outdir / "summary.md").write_text(report + "\n")
    print(report)
    print(f"\nraw results: {outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
