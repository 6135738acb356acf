"""The audit log: every decision with its reasons and features, completed by the hangup feedback."""

from __future__ import annotations

import itertools
import sqlite3
from array import array
from dataclasses import dataclass
from random import getrandbits as _random_bits
from typing import Any

import msgspec

from callshield import db
from callshield.verdict import CallOutcome, Verdict

INSERT_DECISION = (
    "INSERT OR IGNORE INTO decisions (id, ts, caller, callee, action, decided, score, reason, reasons, features, "
    "mode, channel) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
UPDATE_OUTCOME = "UPDATE decisions SET ended = ?, dialstatus = ?, billsec = ?, hangup_cause = ? WHERE id = ?"
UPDATE_SCREEN = "UPDATE decisions SET screen = ?, action = ? WHERE id = ?"
NOTABLE = "action != 'connect' OR decided != 'connect' OR score >= 20"
"""Decisions indexed by caller (the partial index in db.py has the same condition)."""
_COLUMNS = (
    "id, ts, caller, callee, action, decided, score, reason, reasons, features, mode, channel, "
    "ended, dialstatus, billsec, hangup_cause, screen"
)

_json = msgspec.json.Encoder()


_sequence = itertools.count(_random_bits(32))


def decision_id(now: float) -> str:
    """Unique and time-ordered: milliseconds in hex, then a counter that starts at a random value per
    process, so audit inserts append and ids of one process sort in decision order."""
    return f"{max(0, int(now * 1000)):012x}{next(_sequence) & 0xFFFFFFFF:08x}"


def id_floor(when: float) -> str:
    """The smallest decision id of time ``when`` (ids compare like their times)."""
    return f"{max(0, int(when * 1000)):012x}"


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One audited decision as stored."""

    id: str
    ts: float
    caller: str
    callee: str
    action: str
    decided: str
    score: int
    reason: str
    reasons: list[dict[str, Any]]
    features: list[float]
    mode: str
    channel: str
    ended: float | None
    dialstatus: str | None
    billsec: float | None
    hangup_cause: int | None
    screen: str | None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> DecisionRecord:
        values = list(row)
        values[8] = msgspec.json.decode(values[8])
        values[9] = array("f", values[9]).tolist()
        return cls(*values)


class AuditLog:
    """Buffers audit rows for the next batch and answers queries over committed ones."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._decisions: list[tuple[Verdict, str]] = []
        self._updates: list[db.Statement] = []

    def record(self, verdict: Verdict, *, channel: str = "") -> None:
        self._decisions.append((verdict, channel))  # encoded at take_writes, off the decision path

    @staticmethod
    def _row(verdict: Verdict, channel: str) -> tuple[Any, ...]:
        return (
            verdict.id,
            verdict.decided_at,
            verdict.caller,
            verdict.callee,
            verdict.action.value,
            verdict.decided.value,
            verdict.score,
            verdict.reason,
            _json.encode(verdict.reasons),
            array("f", verdict.features).tobytes(),
            verdict.mode.value,
            channel[:128],
        )

    def record_outcome(self, outcome: CallOutcome, ended_at: float) -> None:
        self._updates.append(
            (
                UPDATE_OUTCOME,
                [
                    (
                        ended_at,
                        outcome.dialstatus[:32],
                        outcome.billsec,
                        outcome.hangup_cause,
                        outcome.decision_id,
                    )
                ],
            )
        )

    def record_screen(self, decision_id: str, result: str, action: str) -> None:
        self._updates.append((UPDATE_SCREEN, [(result, action, decision_id)]))

    def pending_count(self) -> int:
        return len(self._decisions) + len(self._updates)

    def take_writes(self) -> list[db.Statement]:
        statements: list[db.Statement] = []
        if self._decisions:
            statements.append((INSERT_DECISION, [self._row(v, c) for v, c in self._decisions]))
        statements.extend(self._updates)  # after the inserts: an outcome may update a row of this batch
        self._decisions, self._updates = [], []
        return statements

    @staticmethod
    def prune_statement(before: float) -> db.Statement:
        return ("DELETE FROM decisions WHERE id < ?", [(id_floor(before),)])

    # --- queries --------------------------------------------------------------------------------

    def get(self, decision_id: str) -> DecisionRecord | None:
        row = self._conn.execute(f"SELECT {_COLUMNS} FROM decisions WHERE id = ?", (decision_id,)).fetchone()
        return None if row is None else DecisionRecord.from_row(row)

    def for_caller(self, caller: str, limit: int = 20, *, plain_since: float | None = None) -> list[DecisionRecord]:
        """The caller's notable decisions (all but low-risk connects), newest first; with
        ``plain_since``, also every decision since then (a scan of that period)."""
        cursor = self._conn.execute(
            f"SELECT {_COLUMNS} FROM decisions WHERE caller = ? AND ({NOTABLE}) ORDER BY id DESC LIMIT ?",
            (caller, limit),
        )
        found = {r[0]: DecisionRecord.from_row(r) for r in cursor}
        if plain_since is not None:
            cursor = self._conn.execute(
                f"SELECT {_COLUMNS} FROM decisions WHERE id >= ? AND caller = ? ORDER BY id DESC LIMIT ?",
                (id_floor(plain_since), caller, limit),
            )
            found.update((r[0], DecisionRecord.from_row(r)) for r in cursor)
        return sorted(found.values(), key=lambda d: d.id, reverse=True)[:limit]

    def screen_times(self, caller: str, since: float) -> tuple[float, ...]:
        """When the caller was sent to an enforced screening challenge since ``since`` (committed rows)."""
        cursor = self._conn.execute(
            f"SELECT ts FROM decisions WHERE caller = ? AND ({NOTABLE}) AND id >= ? AND decided = 'screen' "
            "AND mode = 'enforce' ORDER BY id LIMIT 100",
            (caller, id_floor(since)),
        )
        return tuple(row[0] for row in cursor)

    def recent(
        self, limit: int = 50, *, action: str | None = None, caller: str | None = None, since: float | None = None
    ) -> list[DecisionRecord]:
        """Decisions newest first, optionally of one action, one caller (its label: E.164 or kind) and
        since a time. A caller's plain low-risk connects are found only with ``since`` (a scan of
        that period); without it, only its notable decisions (through their index)."""
        clauses: list[str] = []
        params: list[Any] = []
        if action:
            clauses.append("action = ?")
            params.append(action)
        if since is not None:
            clauses.append("id >= ?")
            params.append(id_floor(since))
        if caller is not None:
            clauses.append("caller = ?")
            params.append(caller)
            if since is None:
                clauses.append(f"({NOTABLE})")
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        cursor = self._conn.execute(
            f"SELECT {_COLUMNS} FROM decisions {where}ORDER BY id DESC LIMIT ?", (*params, limit)
        )
        return [DecisionRecord.from_row(r) for r in cursor]

    def top_callers(self, since: float, *, action: str = "block", limit: int = 10) -> list[tuple[str, int]]:
        """The callers with most decisions of ``action`` since ``since`` (a scan of that period)."""
        rows = self._conn.execute(
            "SELECT caller, count(*) FROM decisions WHERE id >= ? AND action = ? "
            "GROUP BY caller ORDER BY 2 DESC, 1 LIMIT ?",
            (id_floor(since), action, limit),
        ).fetchall()
        return [(str(caller), int(n)) for caller, n in rows]

    def top_prefixes(
        self, since: float, *, action: str = "block", limit: int = 10, hidden: int = 4
    ) -> list[tuple[str, int, int]]:
        """Number ranges (E.164 callers without their last ``hidden`` digits) with most decisions of
        ``action`` since ``since``: (prefix, decisions, distinct callers). Campaigns rotate numbers
        within a range, which a per-number count misses."""
        rows = self._conn.execute(
            "SELECT substr(caller, 1, length(caller) - ?) AS prefix, count(*), count(DISTINCT caller) "
            "FROM decisions WHERE id >= ? AND action = ? AND caller GLOB '+[0-9]*' "
            "GROUP BY prefix ORDER BY 2 DESC, 1 LIMIT ?",
            (hidden, id_floor(since), action, limit),
        ).fetchall()
        return [(str(prefix), int(n), int(callers)) for prefix, n, callers in rows]

    def counts(self, since: float) -> dict[str, dict[str, int]]:
        """Decisions since ``since`` by action and by primary reason."""
        by_action = dict(
            self._conn.execute(
                "SELECT action, count(*) FROM decisions WHERE id >= ? GROUP BY action", (id_floor(since),)
            ).fetchall()
        )
        by_reason = dict(
            self._conn.execute(
                "SELECT reason, count(*) FROM decisions WHERE id >= ? GROUP BY reason ORDER BY 2 DESC LIMIT 20",
                (id_floor(since),),
            ).fetchall()
        )
        return {"action": by_action, "reason": by_reason}
