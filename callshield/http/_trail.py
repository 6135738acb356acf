"""The admin API's audit trail: every write action, by whom, on what, when, and how it ended.

Stored in the node database (``admin_actions``) and logged as one line each. The actor is a token's
name or short hash (:func:`callshield.http._auth.token_id`), never the token.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any

log = logging.getLogger("callshield.http")

MAX_TARGET = 128
MAX_RESULT = 500


class ActionTrail:
    """Append-only record of admin write actions in ``admin_actions``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def record(
        self,
        *,
        ts: float,
        actor: str,
        action: str,
        target: str,
        detail: dict[str, Any],
        status: int,
        result: str,
    ) -> int:
        """Commit one action (its own small transaction) and log it; return its row id."""
        target, result = target[:MAX_TARGET], result[:MAX_RESULT]
        with self._conn:
            cursor = self._conn.execute(
                "INSERT INTO admin_actions (ts, actor, action, target, detail, status, result) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (ts, actor, action, target, json.dumps(detail, default=str, ensure_ascii=False), status, result),
            )
        log.info(
            "admin action %s by %s on %r: %s (%s)",
            action,
            actor,
            target,
            status,
            result,
            extra={"actor": actor, "action": action, "target": target, "status": status},
        )
        return int(cursor.lastrowid or 0)

    def recent(self, limit: int = 50, *, actor: str | None = None) -> list[dict[str, Any]]:
        """The latest actions, newest first."""
        where, params = ("WHERE actor = ? ", [actor]) if actor else ("", [])
        rows = self._conn.execute(
            f"SELECT id, ts, actor, action, target, detail, status, result FROM admin_actions {where}"
            "ORDER BY id DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [
            {
                "id": row[0],
                "ts": row[1],
                "actor": row[2],
                "action": row[3],
                "target": row[4],
                "detail": json.loads(row[5]),
                "status": row[6],
                "result": row[7],
            }
            for row in rows
        ]
