"""The node's SQLite database: opening it safely, its schema, and its meta values.

Invariants:
- WAL mode, so the hot-path read connection never waits for the writer;
- every write is a batch of additive deltas or inserts committed in one transaction, so a batch from
  another process (the CLI) and the server's own batches never overwrite each other;
- the schema version is checked on open; a file that is not a callshield database is refused.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from callshield.errors import StoreError

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 5000
MMAP_BYTES = 1 << 30
CACHE_KIB = 65536
WAL_CHECKPOINT_PAGES = 16384
"""Checkpoint after 64 MB of WAL: pages rewritten by successive batches are copied once."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- Decayed evidence per number. Decayed columns hold value * 2^((t - epoch) / half_life), so adding
-- evidence is a plain sum and concurrent writers only ever add (see reputation.py).
CREATE TABLE IF NOT EXISTS reputation (
    number INTEGER PRIMARY KEY,          -- E.164 digits as an integer
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    calls INTEGER NOT NULL DEFAULT 0,    -- calls seen on this node (not decayed)
    reports REAL NOT NULL DEFAULT 0,
    screen_failed REAL NOT NULL DEFAULT 0,
    screen_passed REAL NOT NULL DEFAULT 0,
    legit_calls REAL NOT NULL DEFAULT 0,
    short_calls REAL NOT NULL DEFAULT 0,
    blocks REAL NOT NULL DEFAULT 0,
    peer_bad REAL NOT NULL DEFAULT 0
);
-- Individual evidence events that are worth showing in `explain` (not bulk imports).
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY,
    number INTEGER NOT NULL,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    weight REAL NOT NULL,
    source TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS evidence_by_number ON evidence (number, ts);
-- The audit log: one row per decision, completed by the hangup feedback. Ids start with the
-- decision time, so the table is clustered by time and inserts append. Only notable decisions
-- (anything but a low-risk connect) are indexed by caller: an index entry per call would cost
-- most of the write budget (random B-tree pages), and plain connects are summed up in reputation.
CREATE TABLE IF NOT EXISTS decisions (
    id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    caller TEXT NOT NULL,
    callee TEXT NOT NULL,
    action TEXT NOT NULL,
    decided TEXT NOT NULL,
    score INTEGER NOT NULL,
    reason TEXT NOT NULL,
    reasons TEXT NOT NULL,
    features BLOB NOT NULL,                 -- float32 array, in callshield.features.FEATURE_NAMES order
    mode TEXT NOT NULL,
    channel TEXT NOT NULL DEFAULT '',
    ended REAL,
    dialstatus TEXT,
    billsec REAL,
    hangup_cause INTEGER,
    screen TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS notable_decisions_by_caller ON decisions (caller, id)
    WHERE action != 'connect' OR decided != 'connect' OR score >= 20;
-- Allow/deny entries managed by the CLI (the config file's [[rules]] live in the config).
CREATE TABLE IF NOT EXISTS list_entries (
    id INTEGER PRIMARY KEY,
    action TEXT NOT NULL,
    pattern TEXT NOT NULL,
    dids TEXT NOT NULL DEFAULT '[]',
    tenants TEXT NOT NULL DEFAULT '[]',
    expires REAL,
    note TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    source TEXT NOT NULL DEFAULT 'cli'
);
-- Temporary allows earned by passing a screening challenge (caller, callee).
CREATE TABLE IF NOT EXISTS screen_passes (
    caller INTEGER NOT NULL,
    callee TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (caller, callee)
) WITHOUT ROWID;
-- Snapshots of the per-caller dialing-pattern windows, so a restart does not forget them.
CREATE TABLE IF NOT EXISTS pattern_state (
    caller INTEGER PRIMARY KEY,
    last REAL NOT NULL,
    state BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS pattern_state_by_last ON pattern_state (last);
-- Standing verdicts of peer nodes (the mesh), one per subject (E.164, or its keyed hash in privacy
-- mode) and node; see peers.py.
CREATE TABLE IF NOT EXISTS peer_verdicts (
    subject TEXT NOT NULL,
    node TEXT NOT NULL,
    kind TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at REAL NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (subject, node)
) WITHOUT ROWID;
-- The mesh's outbox: messages committed before they are published, removed when the broker
-- acknowledges them (outbox.py). The last sequence number handed out is meta 'mesh_seq'.
CREATE TABLE IF NOT EXISTS mesh_outbox (
    seq INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL
);
-- What this node has shared that is still in force, per subject (meshlink.py): shared again when a
-- peer asks to catch up.
CREATE TABLE IF NOT EXISTS mesh_standing (
    subject TEXT PRIMARY KEY,
    subject_kind TEXT NOT NULL,
    kind TEXT NOT NULL,
    action TEXT NOT NULL,
    score INTEGER NOT NULL,
    reasons TEXT NOT NULL,
    expires REAL NOT NULL
) WITHOUT ROWID;
-- Write actions of the admin HTTP API (callshield.http): who (a token's name or short hash, never the
-- token), what, on what, when, and how it ended.
CREATE TABLE IF NOT EXISTS admin_actions (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}',
    status INTEGER NOT NULL,
    result TEXT NOT NULL
);
-- One row per finished blocklist import.
CREATE TABLE IF NOT EXISTS imports (
    id INTEGER PRIMARY KEY,
    started REAL NOT NULL,
    finished REAL NOT NULL,
    source TEXT NOT NULL,
    digest TEXT NOT NULL,
    format TEXT NOT NULL,
    rows INTEGER NOT NULL,
    accepted INTEGER NOT NULL,
    numbers INTEGER NOT NULL,
    rejected TEXT NOT NULL
);
"""

Statement = tuple[str, Iterable[Sequence[Any]]]
"""One SQL statement and the parameter rows to run it with (``executemany``)."""


def connect(path: Path | str, *, readonly: bool = False) -> sqlite3.Connection:
    """Open (creating if needed) a callshield database with the right pragmas and schema."""
    target = str(path)
    if target != ":memory:" and not readonly:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    try:
        if readonly:
            conn = sqlite3.connect(
                f"file:{target}?mode=ro",
                uri=True,
                timeout=BUSY_TIMEOUT_MS / 1000,
                check_same_thread=False,
                isolation_level=None,
            )
        else:
            conn = sqlite3.connect(
                target, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None
            )
        _configure(conn, readonly=readonly)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{target}: cannot open the database: {exc}") from None
    return conn


CONNECTION_PRAGMAS = (
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    f"PRAGMA mmap_size = {MMAP_BYTES}",  # point reads without a syscall per page
    f"PRAGMA cache_size = -{CACHE_KIB}",
    "PRAGMA synchronous = NORMAL",  # WAL: durable at checkpoints, never corrupt
    f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}",
)
"""Per-connection settings; every connection to a node database runs them."""


def _configure(conn: sqlite3.Connection, *, readonly: bool) -> None:
    for pragma in CONNECTION_PRAGMAS:
        conn.execute(pragma)
    if readonly:
        return
    conn.execute("PRAGMA journal_mode = WAL")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if version == 0 and tables - {"meta"}:
        raise StoreError("not a callshield database (it has other tables and no callshield schema version)")
    if version > SCHEMA_VERSION:
        raise StoreError(f"database schema {version} is newer than this callshield ({SCHEMA_VERSION}): upgrade")
    conn.executescript(SCHEMA)
    if version == 0:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_meta_statement(key: str, value: str) -> Statement:
    return (
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [(key, value)],
    )


BUMP_GENERATION: Statement = (
    "INSERT INTO meta (key, value) VALUES ('generation', '1') "
    "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
    [()],
)
"""Run by writers other than the server (the CLI), so a running server notices and reloads."""


def generation(conn: sqlite3.Connection) -> int:
    value = get_meta(conn, "generation")
    return int(value) if value else 0


def apply(conn: sqlite3.Connection, statements: Iterable[Statement]) -> None:
    """Run ``statements`` in one transaction (all or nothing)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, rows in statements:
            conn.executemany(sql, rows)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
