"""The mesh's persistent outbox: messages wait in the node database until the broker acknowledges them.

Rules:

- A message is committed here before it is published, and removed only once the broker has
  acknowledged it (QoS 1 PUBACK), so a broker outage or a restart never loses one: they are
  published again, oldest first, on reconnect. A message published twice is harmless: receivers
  drop the repeat by its per-node sequence number.
- Sequence numbers are allocated here, in the same transaction as the rows, from a counter kept in
  the ``meta`` table: strictly increasing per node across restarts.
- Bounded: beyond ``max_messages`` the oldest are dropped (and counted, and logged with how many and
  how old), so a long outage costs bounded disk and the freshest verdicts survive.

Synchronous SQLite on the caller's thread: one short transaction per batch (WAL, no fsync per commit).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from typing import Final

import msgspec

from callshield.errors import StoreError

__all__ = ["Outbox", "OutboxEntry"]

log = logging.getLogger(__name__)

SEQ_KEY: Final = "mesh_seq"


class OutboxEntry(msgspec.Struct, frozen=True, gc=False):
    """One message waiting for the broker."""

    seq: int
    topic: str
    payload: bytes
    created: float


class Outbox:
    """Messages not yet acknowledged by the broker, in sequence order (see the module rules)."""

    def __init__(self, conn: sqlite3.Connection, *, max_messages: int = 100_000) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        self._conn = conn
        self._max = max_messages
        self.dropped = 0
        """Messages dropped because the outbox was full (since this object was made)."""

    @property
    def connection(self) -> sqlite3.Connection:
        """The node database connection the outbox writes with."""
        return self._conn

    def last_seq(self) -> int:
        """The last sequence number handed out (0 before the first)."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (SEQ_KEY,)).fetchone()
        return int(row[0]) if row is not None else 0

    def append(self, messages: Sequence[tuple[str, bytes]], now: float, *, first_seq: int | None = None) -> int:
        """Commit messages ``(topic, payload)`` with consecutive sequence numbers; return the first.

        ``first_seq`` must be ``last_seq() + 1`` when given (the payloads already carry their
        numbers); it is checked inside the transaction, so two writers cannot hand out one number twice.
        """
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            last = self.last_seq()
            start = last + 1
            if first_seq is not None and first_seq != start:
                raise StoreError(f"mesh sequence moved: expected {start}, the messages carry {first_seq}")
            conn.executemany(
                "INSERT INTO mesh_outbox (seq, topic, payload, created) VALUES (?, ?, ?, ?)",
                [(start + i, topic, payload, now) for i, (topic, payload) in enumerate(messages)],
            )
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (SEQ_KEY, str(last + len(messages))),
            )
            self._trim(now)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return start

    def pending(self, limit: int = 1000, *, after: int = 0) -> list[OutboxEntry]:
        """Up to ``limit`` waiting messages with a sequence above ``after``, oldest first."""
        cursor = self._conn.execute(
            "SELECT seq, topic, payload, created FROM mesh_outbox WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
        )
        return [OutboxEntry(seq, topic, bytes(payload), created) for seq, topic, payload, created in cursor]

    def acknowledged(self, seqs: Sequence[int]) -> None:
        """The broker has these: remove them."""
        if seqs:
            with self._conn:
                self._conn.executemany("DELETE FROM mesh_outbox WHERE seq = ?", [(s,) for s in seqs])

    def save_meta(self, key: str, value: str) -> None:
        """Keep a small value in the node database's ``meta`` table (the link's status)."""
        with self._conn:
            self._conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def depth(self) -> int:
        """How many messages wait."""
        return int(self._conn.execute("SELECT count(*) FROM mesh_outbox").fetchone()[0])

    def _trim(self, now: float) -> None:
        excess = self.depth() - self._max
        if excess <= 0:
            return
        oldest = self._conn.execute("SELECT min(created) FROM mesh_outbox").fetchone()[0]
        self._conn.execute(
            "DELETE FROM mesh_outbox WHERE seq IN (SELECT seq FROM mesh_outbox ORDER BY seq LIMIT ?)", (excess,)
        )
        self.dropped += excess
        log.warning(
            "mesh outbox full (%d messages): dropped the %d oldest, up to %.0f s old",
            self._max,
            excess,
            now - oldest,
        )
