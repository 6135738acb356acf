"""Place real SIP calls at the Asterisk sandbox with SIPp and report how each one ended.

One SIPp run places every call of a list through ``sipp/uac.xml`` (an INVITE with
``P-Asserted-Identity`` from an injection file) and returns one :class:`Outcome` per call, in the
order of the input::

    outcomes = run_calls([("+14155550123", "+18005550100"), ("+14155550666", "+18005550100")])
    assert outcomes[1].status == 403 and outcomes[1].cause == 21

A call is a :class:`Call` or a tuple ``(caller, did)`` / ``(caller, did, digit)``; with a digit, the
caller sends it once as SIP INFO (``Signal=digit``, ``application/dtmf-relay``) ``dtmf_delay_ms`` after
the 200 OK; without one it stays silent. After the 200 OK (and the digit) the caller stays on for
``hold_ms`` and then hangs up, unless Asterisk hangs up first (``ended == "remote_bye"``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SCENARIO = Path(__file__).resolve().parent / "sipp" / "uac.xml"

Ended = Literal[
    "rejected",  # a non-2xx final response (status, cause)
    "local_bye",  # answered; the caller hung up after hold_ms
    "remote_bye",  # answered; Asterisk hung up first (bye_cause)
    "cancelled",  # the caller cancelled after cancel_after_ms (status 487)
    "no_final",  # no final response within the scenario's limit (120 s); cancelled
    "bye_timeout",  # our BYE got no answer
    "unexpected",  # a message the scenario cannot place, e.g. a final status it does not list
    "aborted",  # no result line: SIPp aborted the call, or the run was cut short (SippTimeout)
]

_FORBIDDEN = set(';"<>\r\n\\')


class SippError(RuntimeError):
    """SIPp is missing, failed to start, or exited with an error before placing the calls."""


class SippTimeout(SippError):
    """SIPp did not finish in time. ``outcomes`` holds what had been recorded (others ``aborted``)."""

    def __init__(self, message: str, outcomes: list[Outcome]) -> None:
        super().__init__(message)
        self.outcomes = outcomes


@dataclass(frozen=True, slots=True)
class Call:
    """One call from the trunk. Fields must not contain ``; " < > \\`` or line breaks."""

    caller: str
    did: str
    digit: str | None = None
    name: str = ""
    privacy: bool = False  # "Privacy: id" (presentation restricted) instead of "Privacy: none"
    dtmf_delay_ms: int = 1500
    hold_ms: int = 1000
    cancel_after_ms: int = 0  # 0: never cancel; else CANCEL when no final response by then

    def __post_init__(self) -> None:
        for field in ("caller", "did", "name"):
            value = getattr(self, field)
            if _FORBIDDEN & set(value):
                raise ValueError(f"Call.{field} contains a character SIPp cannot inject: {value!r}")
        if not self.did:
            raise ValueError("Call.did must not be empty")
        if self.digit is not None and (len(self.digit) != 1 or self.digit not in "0123456789*#ABCD"):
            raise ValueError(f"Call.digit must be one DTMF character, got {self.digit!r}")
        for field in ("dtmf_delay_ms", "hold_ms", "cancel_after_ms"):
            if getattr(self, field) < 0:
                raise ValueError(f"Call.{field} must be >= 0")


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one call ended, as seen by the calling side."""

    call: Call
    status: int | None  # final SIP status of the INVITE (200, 403, 486, 487, ...); None if none
    cause: int | None  # Q.850 cause from the final response's "Reason:" header, when present
    ended: Ended
    bye_cause: int | None = None  # Q.850 cause from Asterisk's BYE (remote_bye), when present
    dtmf_status: int | None = None  # SIP status of the response to our INFO (None: not sent)
    call_id: str | None = None

    @property
    def answered(self) -> bool:
        return self.status == 200

    @property
    def rejected(self) -> bool:
        return self.status is not None and self.status >= 300


CallLike = Call | tuple[str, str] | tuple[str, str, str | None]


def as_call(item: CallLike) -> Call:
    if isinstance(item, Call):
        return item
    if len(item) == 2:
        return Call(caller=item[0], did=item[1])
    return Call(caller=item[0], did=item[1], digit=item[2])


def _free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _ms(value: int) -> int:
    """The scenario waits in 100 ms ticks."""
    return (value + 99) // 100 * 100


def _csv(calls: Sequence[Call]) -> str:
    lines = ["SEQUENTIAL"]
    for row, c in enumerate(calls):
        fields = [
            c.caller,
            c.did,
            c.digit or "",
            c.name,
            "id" if c.privacy else "none",
            str(_ms(c.dtmf_delay_ms)),
            str(_ms(c.hold_ms)),
            str(row),
            str(_ms(c.cancel_after_ms)),
        ]
        lines.append(";".join(fields))
    return "\n".join(lines) + "\n"


def _int(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() else None


_ENDED: frozenset[str] = frozenset(
    ("rejected", "local_bye", "remote_bye", "cancelled", "no_final", "bye_timeout", "unexpected")
)


def parse_log(text: str, calls: Sequence[Call]) -> list[Outcome]:
    """Turn the scenario's ``CALLSHIELD|...`` log lines into outcomes, one per call, in input order."""
    found: dict[int, Outcome] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 8 or parts[0] != "CALLSHIELD":
            continue
        row = _int(parts[1])
        if row is None or row >= len(calls):
            continue
        ended_text = parts[4].strip()
        ended: Ended = ended_text if ended_text in _ENDED else "aborted"  # type: ignore[assignment]
        found[row] = Outcome(
            call=calls[row],
            status=_int(parts[2]),
            cause=_int(parts[3]),
            ended=ended,
            bye_cause=_int(parts[5]),
            dtmf_status=_int(parts[6]),
            call_id=parts[7].strip() or None,
        )
    return [found.get(i) or Outcome(call=c, status=None, cause=None, ended="aborted") for i, c in enumerate(calls)]


def run_calls(
    calls: Iterable[CallLike],
    *,
    host: str = "127.0.0.1",
    port: int = 5060,
    rate: float = 50.0,
    limit: int | None = None,
    timeout: float = 60.0,
    sipp: str = "sipp",
    scenario: Path = SCENARIO,
    workdir: Path | None = None,
    trace_msg: bool = False,
) -> list[Outcome]:
    """Place ``calls`` at ``host:port`` with SIPp and return one outcome per call, in order.

    ``rate`` is new calls per second, ``limit`` the most simultaneous calls (default: all).
    ``timeout`` bounds the whole run in seconds: past it SIPp is killed and :class:`SippTimeout`
    raised. ``workdir`` keeps SIPp's files (injection file, log, and with ``trace_msg`` every SIP
    message) for debugging; by default a temporary directory is used and removed.
    """
    call_list = [as_call(c) for c in calls]
    if not call_list:
        return []
    exe = shutil.which(sipp)
    if exe is None:
        raise SippError(f"{sipp!r} not found (Debian: apt-get install sip-tester; scripts/asterisk-sandbox build)")
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="callshield-sipp-") as tmp:
            return _run(call_list, exe, host, port, rate, limit, timeout, scenario, Path(tmp), trace_msg)
    workdir.mkdir(parents=True, exist_ok=True)
    return _run(call_list, exe, host, port, rate, limit, timeout, scenario, workdir, trace_msg)


def _run(
    calls: list[Call],
    exe: str,
    host: str,
    port: int,
    rate: float,
    limit: int | None,
    timeout: float,
    scenario: Path,
    workdir: Path,
    trace_msg: bool,
) -> list[Outcome]:
    inf = workdir / "calls.csv"
    log = workdir / "results.log"
    out = workdir / "sipp.out"
    inf.write_text(_csv(calls), encoding="utf-8")
    log.unlink(missing_ok=True)
    local_ip = "127.0.0.1" if host.startswith("127.") else "0.0.0.0"
    cmd = [
        exe,
        f"{host}:{port}",
        "-sf", str(scenario),
        "-inf", str(inf),
        "-m", str(len(calls)),
        "-r", f"{rate:g}",
        "-l", str(limit or len(calls)),
        "-i", local_ip,
        "-p", str(_free_udp_port(local_ip)),
        "-mp", str(_free_udp_port(local_ip)),
        "-aa",
        "-nostdin",
        "-trace_logs", "-log_file", str(log),
    ]  # fmt: skip
    if trace_msg:
        cmd += ["-trace_msg", "-message_file", str(workdir / "messages.log")]
    deadline = time.monotonic() + timeout
    with out.open("wb") as sink:
        proc = subprocess.Popen(  # fixed argv, no shell
            cmd,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill(proc)
            outcomes = parse_log(_read(log), calls)
            done = sum(o.ended != "aborted" for o in outcomes)
            raise SippTimeout(
                f"SIPp did not finish {len(calls)} calls within {timeout:g} s ({done} recorded)", outcomes
            ) from None
    text = _read(log)
    # 0: all calls succeeded; 1: some failed (aborted calls show as "aborted"); other codes are fatal.
    if rc not in (0, 1) and "CALLSHIELD|" not in text:
        tail = _read(out)[-2000:]
        raise SippError(f"SIPp exited with {rc}: {tail}")
    return parse_log(text, calls)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _kill(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=2)
            return
        except subprocess.TimeoutExpired:
            continue
