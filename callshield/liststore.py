"""Allow/deny entries managed from the CLI (and later the admin API), stored in the node database.

Each change bumps the database generation, so a running server picks it up at its next tick.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from callshield import db
from callshield.rules import Rule, RuleAction, RuleSpec, parse_pattern


@dataclass(frozen=True, slots=True)
class ListEntry:
    id: int
    spec: RuleSpec
    created: float
    source: str


class ListStore:
    """CRUD over the ``list_entries`` table."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def add(self, spec: RuleSpec, *, now: float, source: str = "cli") -> int:
        """Store an entry (validated by :class:`RuleSpec`); return its id."""
        expires = spec.expires.timestamp() if spec.expires is not None else None
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            cursor = self._conn.execute(
                "INSERT INTO list_entries (action, pattern, dids, tenants, expires, note, created, source) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    spec.action.value,
                    parse_pattern(spec.pattern).text,
                    msgspec.json.encode(spec.dids).decode(),
                    msgspec.json.encode(spec.tenants).decode(),
                    expires,
                    spec.note[:500],
                    now,
                    source[:64],
                ),
            )
            sql, params = db.BUMP_GENERATION
            self._conn.executemany(sql, params)
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        return int(cursor.lastrowid or 0)

    def remove(self, pattern: str, *, action: RuleAction | None = None, dids: tuple[str, ...] | None = None) -> int:
        """Delete the entries with this pattern (and action / DID scope when given); return how many."""
        text = parse_pattern(pattern).text
        clauses, params = ["pattern = ?"], [text]
        if action is not None:
            clauses.append("action = ?")
            params.append(action.value)
        if dids is not None:
            clauses.append("dids = ?")
            params.append(msgspec.json.encode(dids).decode())
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            removed = self._conn.execute(f"DELETE FROM list_entries WHERE {' AND '.join(clauses)}", params).rowcount
            if removed:
                sql, bump = db.BUMP_GENERATION
                self._conn.executemany(sql, bump)
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        return removed

    def entries(self) -> list[ListEntry]:
        out = []
        for row in self._conn.execute(
            "SELECT id, action, pattern, dids, tenants, expires, note, created, source FROM list_entries ORDER BY id"
        ):
            expires = datetime.fromtimestamp(row[5], UTC) if row[5] is not None else None
            spec = RuleSpec(
                action=RuleAction(row[1]),
                pattern=row[2],
                dids=tuple(msgspec.json.decode(row[3])),
                tenants=tuple(msgspec.json.decode(row[4])),
                expires=expires,
                note=row[6],
            )
            out.append(ListEntry(id=row[0], spec=spec, created=row[7], source=row[8]))
        return out

    def rules(self) -> list[Rule]:
        return [Rule.compile(entry.spec, source=f"list:{entry.id}") for entry in self.entries()]
