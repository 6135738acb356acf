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
- What this node has shared and is still in force (one row per subject, the newest) is kept in
  ``mesh_standing`` in the same transaction as the messages, for catch-up answers; a revocation
  removes the subject's row.

- Its own database file, next to the node's (:func:`mesh_database_path`: ``callshield.sqlite3`` ->
  ``callshield-mesh.sqlite3``; a callshield database of its own, of which only the mesh tables and
  ``meta`` are used): SQLite has one write lock per file, and the node's writer holds the node
  file's for a whole batch (tens of ms under load), during which a verdict could not be committed,
  so not published. :meth:`Outbox.open` moves rows an older version left in the node database.

Synchronous SQLite on the caller's thread. The publisher's whole round (new messages, their
standing rows, the removal of acknowledged ones) is one short transaction (WAL, no fsync per commit):
:meth:`Outbox.commit`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from callshield import db
from callshield.errors import StoreError
from callshield.mesh import MeshMessage, MessageKind, encode_payload, stamped

__all__ = ["Committed", "Outbox", "OutboxEntry", "StandingRow", "mesh_database_path"]

log = logging.getLogger(__name__)

SEQ_KEY: Final = "mesh_seq"
_INSERT: Final = "INSERT INTO mesh_outbox (seq, topic, payload, created) VALUES (?, ?, ?, ?)"
_DELETE: Final = "DELETE FROM mesh_outbox WHERE seq = ?"
_SET_SEQ: Final = (
    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
STANDING_UPSERT: Final = (
    "INSERT INTO mesh_standing (subject, subject_kind, kind, action, score, reasons, expires) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (subject) DO UPDATE SET subject_kind = excluded.subject_kind, "
    "kind = excluded.kind, action = excluded.action, score = excluded.score, reasons = excluded.reasons, "
    "expires = excluded.expires"
)
STANDING_DELETE: Final = "DELETE FROM mesh_standing WHERE subject = ?"

StandingRow = tuple[str, str, str, str, int, str, float]
"""A verdict in force: subject, subject_kind, kind, action, score, reasons (JSON list), expires."""


class OutboxEntry(msgspec.Struct, frozen=True, gc=False):
    """One message waiting for the broker."""

    seq: int
    topic: str
    payload: bytes
    created: float


@dataclass(frozen=True, slots=True)
class Committed:
    """What one :meth:`Outbox.commit` wrote."""

    after: int
    """The last sequence number before these messages (another writer's rows may lie between the
    caller's earlier messages and these: they are then in the outbox, to be published too)."""
    entries: list[OutboxEntry]
    """The new messages, numbered, in order."""
    dropped: int
    """Old messages dropped because the outbox was full."""


def mesh_database_path(node_database: Path | str) -> Path | str:
    """The mesh's database file next to the node database (``:memory:`` stays in memory)."""
    if str(node_database) == ":memory:":
        return ":memory:"
    path = Path(node_database)
    return path.with_name(f"{path.stem}-mesh{path.suffix}")


class Outbox:
    """Messages not yet acknowledged by the broker, in sequence order (see the module rules)."""

    @classmethod
    def open(cls, node_database: Path | str, *, max_messages: int = 100_000) -> Outbox:
        """The outbox of the node whose database is ``node_database``, in its own file (module rules);
        rows an older version left in the node database are moved there first."""
        conn = db.connect(mesh_database_path(node_database))
        if str(node_database) != ":memory:":
            try:
                _adopt(conn, node_database)
            except BaseException:
                conn.close()
                raise
        return cls(conn, max_messages=max_messages)

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

    def commit(
        self, messages: Sequence[MeshMessage], *, topic: str, now: float, acknowledged: Sequence[int] = ()
    ) -> Committed:
        """One transaction: remove ``acknowledged``; number ``messages`` after the last sequence number and
        stamp them with ``now`` (their sending time: they are published next); store them, unsigned,
        under ``topic``; keep the verdicts among them in force in ``mesh_standing`` (a revocation removes
        its subject's row); drop the oldest beyond the bound.

        The ``seq`` and ``ts`` the messages carry are replaced. All or nothing: raises
        ``sqlite3.OperationalError`` when the database is busy, with nothing written.
        """
        conn = self._conn
        with _transaction(conn):
            if acknowledged:
                conn.executemany(_DELETE, [(seq,) for seq in acknowledged])
            after = self.last_seq()
            entries: list[OutboxEntry] = []
            dropped = 0
            if messages:
                numbered = [stamped(m, seq=after + 1 + i, ts=now) for i, m in enumerate(messages)]
                entries = [OutboxEntry(m.seq, topic, encode_payload(m), now) for m in numbered]
                conn.executemany(_INSERT, [(e.seq, topic, e.payload, now) for e in entries])
                conn.execute(_SET_SEQ, (SEQ_KEY, str(after + len(entries))))
                _remember_standing(conn, numbered)
                dropped = self._trim(now, last=after + len(entries))
        return Committed(after=after, entries=entries, dropped=dropped)

    def append(self, messages: Sequence[tuple[str, bytes]], now: float, *, first_seq: int | None = None) -> int:
        """Commit raw messages ``(topic, payload)`` with consecutive sequence numbers; return the first.

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
            conn.executemany(_INSERT, [(start + i, topic, payload, now) for i, (topic, payload) in enumerate(messages)])
            conn.execute(_SET_SEQ, (SEQ_KEY, str(last + len(messages))))
            self._trim(now, last=last + len(messages))
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
            with _transaction(self._conn):
                self._conn.executemany(_DELETE, [(s,) for s in seqs])

    def standing(self, now: float) -> list[StandingRow]:
        """This node's shared verdicts still in force at ``now`` (for a catch-up answer)."""
        rows: list[StandingRow] = self._conn.execute(
            "SELECT subject, subject_kind, kind, action, score, reasons, expires FROM mesh_standing WHERE expires > ?",
            (now,),
        ).fetchall()
        return rows

    def prune_standing(self, now: float) -> int:
        """Forget shared verdicts no longer in force; return how many."""
        with self._conn:
            return self._conn.execute("DELETE FROM mesh_standing WHERE expires <= ?", (now,)).rowcount

    def save_meta(self, key: str, value: str) -> None:
        """Keep a small value in the node database's ``meta`` table (the link's status)."""
        with self._conn:
            self._conn.execute(_SET_SEQ, (key, value))

    def depth(self) -> int:
        """How many messages wait."""
        return int(self._conn.execute("SELECT count(*) FROM mesh_outbox").fetchone()[0])

    def _trim(self, now: float, *, last: int) -> int:
        # last - oldest + 1 bounds the depth from above (O(log n)); count exactly only past the bound.
        oldest = self._conn.execute("SELECT min(seq) FROM mesh_outbox").fetchone()[0]
        if oldest is None or last - oldest + 1 <= self._max:
            return 0
        excess = self.depth() - self._max
        if excess <= 0:
            return 0
        created = self._conn.execute("SELECT min(created) FROM mesh_outbox").fetchone()[0]
        self._conn.execute(
            "DELETE FROM mesh_outbox WHERE seq IN (SELECT seq FROM mesh_outbox ORDER BY seq LIMIT ?)", (excess,)
        )
        self.dropped += excess
        log.warning(
            "mesh outbox full (%d messages): dropped the %d oldest, up to %.0f s old",
            self._max,
            excess,
            now - created,
        )
        return excess


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT (the connections are in autocommit mode), ROLLBACK on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _adopt(conn: sqlite3.Connection, node_database: Path | str) -> None:
    """Move the outbox, the standing verdicts and the sequence counter from the node database.

    Copied first, then removed there: a crash in between leaves copies that the next open ignores
    (same sequence numbers), never a loss.
    """
    node = db.connect(node_database)
    try:
        rows = node.execute("SELECT seq, topic, payload, created FROM mesh_outbox").fetchall()
        standing = node.execute(
            "SELECT subject, subject_kind, kind, action, score, reasons, expires FROM mesh_standing"
        ).fetchall()
        seq = db.get_meta(node, SEQ_KEY)
        if not rows and not standing and seq is None:
            return
        with _transaction(conn):
            conn.executemany(_INSERT.replace("INSERT", "INSERT OR IGNORE", 1), rows)
            conn.executemany(
                "INSERT OR IGNORE INTO mesh_standing (subject, subject_kind, kind, action, score, reasons, expires) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                standing,
            )
            current = db.get_meta(conn, SEQ_KEY)
            conn.execute(_SET_SEQ, (SEQ_KEY, str(max(int(seq or 0), int(current or 0)))))
        with _transaction(node):
            node.execute("DELETE FROM mesh_outbox")
            node.execute("DELETE FROM mesh_standing")
            node.execute("DELETE FROM meta WHERE key = ?", (SEQ_KEY,))
        log.info("mesh: moved %d waiting messages and %d verdicts in force to their own file", len(rows), len(standing))
    finally:
        node.close()


def _remember_standing(conn: sqlite3.Connection, messages: Sequence[MeshMessage]) -> None:
    """Keep this node's verdicts in force (one per subject, the newest) for catch-up answers."""
    upserts: list[tuple[object, ...]] = []
    for m in messages:
        if m.kind is MessageKind.REVOKE:
            if upserts:  # order matters for one subject: write what came before the revocation first
                conn.executemany(STANDING_UPSERT, upserts)
                upserts = []
            conn.execute(STANDING_DELETE, (m.subject,))
        elif m.kind is MessageKind.VERDICT:
            reasons = json.dumps(m.reasons, separators=(",", ":"))
            kinds = (m.subject_kind.value, m.kind.value, m.action.value)
            upserts.append((m.subject, *kinds, m.score, reasons, m.expires_at))
    if upserts:
        conn.executemany(STANDING_UPSERT, upserts)
