"""Replaying CDR calls through the decision engine on simulated time.

Events are the calls' starts and ends, merged by time: each call is decided at its start
(:meth:`Firewall.decide` with ``started_at``) and its outcome is fed back at its end
(:meth:`Firewall.feedback`), so a call that is still ringing when the next one starts is still open
for the engine (concurrency), and a call's outcome is learned before later calls are decided.
An end and a start at the same second: the end comes first (CDR times are whole seconds).

The outcome fed back is what happened *without* the firewall: the CDR says how the call really
ended. The engine treats a call it blocked as never connected (it only closes the open call and
learns no evidence from it); a screened call's real outcome is learned as if the caller had passed
the challenge, since a replay cannot know how a challenge would have gone. No screening results
are fed back, so pass allowances and failed-screening evidence never appear in a replay; the limit
on challenges per caller (``screen:limit``) does, in enforce mode, as live. A shadow-mode replay
connects every call, so it learns every outcome (blocked calls' too).
"""

from __future__ import annotations

import contextlib
import heapq
import math
import shutil
import sqlite3
import tempfile
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import Final

import msgspec

from callshield import db
from callshield.clock import ManualClock
from callshield.config import Config, Seconds
from callshield.engine import Firewall
from callshield.policy import Scorer
from callshield.replay._cdr import CdrCall
from callshield.verdict import Call, CallOutcome, Verdict

FLUSH_EVERY: Final = 20_000
"""Decisions per database write batch."""
REPLAY_CACHE: Final = 2_000_000
"""Numbers and /100 blocks a replay keeps in memory (at least): caches only change speed, not verdicts."""
SCRATCH_PRAGMAS: Final = ("PRAGMA journal_mode = MEMORY", "PRAGMA synchronous = OFF")
"""A scratch database is deleted afterwards: no WAL, no fsync."""
KEPT_PRAGMAS: Final = ("PRAGMA synchronous = OFF",)
DIALSTATUS: Final[dict[str, str]] = {
    "ANSWERED": "ANSWER",
    "NO ANSWER": "NOANSWER",
    "NOANSWER": "NOANSWER",
    "BUSY": "BUSY",
    "FAILED": "CHANUNAVAIL",
    "CONGESTION": "CONGESTION",
    "CANCEL": "CANCEL",
}
"""CDR ``disposition`` → the ``DIALSTATUS`` the hangup feedback would have carried."""


class ReplayRecord(msgspec.Struct, frozen=True, gc=False):
    """One replayed call: its CDR row and the verdict the engine gave at its start."""

    cdr: CdrCall
    verdict: Verdict


def call_of(cdr: CdrCall) -> Call:
    """The :class:`Call` an adapter would have built for this CDR row.

    Caller: ``src``, else the number in ``clid`` (``"Name" <number>``); caller name: the name in
    ``clid``; callee: ``dst``; trunk: the endpoint of ``channel`` (``PJSIP/<trunk>-0000002a``).
    """
    name, number = split_clid(cdr.clid)
    return Call(
        caller=cdr.src or number,
        callee=cdr.dst,
        caller_name=name,
        trunk=trunk_of(cdr.channel),
        channel=cdr.channel,
        started_at=cdr.start,
    )


def split_clid(clid: str) -> tuple[str, str]:
    """``'"Alice" <+14155550123>'`` → ``("Alice", "+14155550123")``; a bare value is the number."""
    text = clid.strip()
    if text.endswith(">") and "<" in text:
        cut = text.rindex("<")
        name = text[:cut].strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = name[1:-1]
        return name, text[cut + 1 : -1].strip()
    return "", text


def trunk_of(channel: str) -> str:
    """``PJSIP/carrier-0000002a`` → ``carrier``; a channel without ``/`` gives ``""``."""
    _tech, slash, rest = channel.partition("/")
    if not slash:
        return ""
    endpoint, dash, _suffix = rest.rpartition("-")
    return endpoint if dash else rest


def outcome_of(cdr: CdrCall, decision_id: str) -> CallOutcome:
    """The hangup feedback this CDR row stands for."""
    disposition = cdr.disposition.upper()
    return CallOutcome(
        decision_id=decision_id,
        dialstatus=DIALSTATUS.get(disposition, disposition[:32]),
        billsec=float(cdr.billsec),
        ended_at=cdr.end,
    )


def replay(
    calls: Iterable[CdrCall],
    *,
    config: Config,
    scorer: Scorer | None = None,
    database: Path | None = None,
    flush_every: int = FLUSH_EVERY,
) -> Generator[ReplayRecord, None, None]:
    """Replay ``calls`` through a :class:`Firewall` on simulated time; yield one record per call.

    Closing the generator early ends the replay (a kept ``database`` has everything decided so far).
    Records come in decision order (by start time, stable). ``verdict.features`` is the feature
    vector the live engine computes (:mod:`callshield.features`). The engine runs on a fresh
    temporary database, deleted when the iterator is exhausted or closed, or on ``database`` (an
    existing callshield database is used as the starting state and kept). ``scorer`` replaces the
    built-in scorer (the engine's ``scorer=``).
    """
    ordered = sorted(calls, key=_start)
    scratch = None if database is not None else Path(tempfile.mkdtemp(prefix="callshield-replay-"))
    path = database if database is not None else Path(scratch or ".") / "replay.sqlite3"
    try:
        conn = db.connect(path)
        for pragma in SCRATCH_PRAGMAS if scratch is not None else KEPT_PRAGMAS:
            conn.execute(pragma)
        clock = ManualClock(ordered[0].start if ordered else 0.0)
        firewall = Firewall(config=replay_config(config), conn=conn, clock=clock, scorer=scorer)
        try:
            yield from _run(ordered, firewall, clock, max(1, flush_every))
        except GeneratorExit:  # the caller stopped early: what was decided so far is kept
            _finish(firewall, conn, keep=scratch is None)
            raise
        except BaseException:
            with contextlib.suppress(Exception):
                conn.close()
            raise
        _finish(firewall, conn, keep=scratch is None)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _finish(firewall: Firewall, conn: sqlite3.Connection, *, keep: bool) -> None:
    if keep:
        firewall.close()  # with the snapshot of windows and sightings: the admin keeps this database
    else:
        conn.close()


def replay_config(config: Config) -> Config:
    """``config`` with what only changes a replay's speed: bigger caches, and pattern snapshots (and
    call sightings) written once at the end instead of every ``patterns.snapshot_interval``.

    Neither changes a verdict: evicted reputation blocks are read back with their unwritten deltas
    merged in, and snapshots are only read when a node starts.
    """
    storage = config.storage
    return msgspec.structs.replace(
        config,
        storage=msgspec.structs.replace(
            storage,
            number_cache=max(storage.number_cache, REPLAY_CACHE),
            reputation_cache=max(storage.reputation_cache, REPLAY_CACHE),
        ),
        patterns=msgspec.structs.replace(config.patterns, snapshot_interval=Seconds(math.inf)),
    )


def _run(ordered: list[CdrCall], firewall: Firewall, clock: ManualClock, flush_every: int) -> Iterator[ReplayRecord]:
    ends: list[tuple[float, int, str, CdrCall]] = []  # (end, decision order, decision id, call)
    push, pop = heapq.heappush, heapq.heappop
    decide, feedback, set_clock = firewall.decide, firewall.feedback, clock.set
    until_flush = flush_every
    for order, cdr in enumerate(ordered):
        start = cdr.start
        while ends and ends[0][0] <= start:
            end, _, decision, ended = pop(ends)
            set_clock(end)
            feedback(outcome_of(ended, decision))
        set_clock(start)
        verdict = decide(call_of(cdr))
        push(ends, (cdr.end, order, verdict.id, cdr))
        yield ReplayRecord(cdr, verdict)
        until_flush -= 1
        if not until_flush:
            firewall.flush()
            until_flush = flush_every
    while ends:
        end, _, decision, ended = pop(ends)
        set_clock(end)
        feedback(outcome_of(ended, decision))


def _start(call: CdrCall) -> float:
    return call.start
