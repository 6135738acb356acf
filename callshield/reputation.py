"""Reputation: decayed per-number evidence, range heat and first-seen time.

Representation (the invariant everything here relies on): every decayed quantity is stored scaled
to a fixed epoch, ``stored = value * 2^((t - epoch) / half_life)``. Adding evidence is then a plain
sum, reading it at ``now`` is one multiplication, and a database row only ever receives additive
deltas, so the server's batched writes and another process's writes (the CLI, an import) never
overwrite each other. The epoch is moved forward (a "rebase") when it gets old or the half-life
changes, before anything is cached.

Reads on the decision path come from an in-memory LRU of /100 blocks (one range query loads a number
together with its neighbours, which range heat needs anyway); writes are buffered as deltas and
committed by :meth:`ReputationStore.take_writes` batches.
"""

from __future__ import annotations

import math
import sqlite3
from collections import OrderedDict
from collections.abc import Iterator
from enum import StrEnum

import msgspec
from msgspec.structs import replace

from callshield import db

BLOCK = 100
"""Numbers per cached block (a /100 range); range heat looks at the block and its /10 sub-range."""
REBASE_AFTER_HALF_LIVES = 300.0

COLUMNS = ("reports", "screen_failed", "screen_passed", "legit_calls", "short_calls", "blocks", "peer_bad")
REPORTS, SCREEN_FAILED, SCREEN_PASSED, LEGIT_CALLS, SHORT_CALLS, BLOCKS, PEER_BAD = range(len(COLUMNS))


class EvidenceKind(StrEnum):
    """What happened, and into which decayed quantity it goes."""

    REPORT = "report"
    """A user's spam report."""
    ADMIN_REPORT = "admin_report"
    COMPLAINT = "complaint"
    """One imported complaint (FTC format)."""
    LISTED = "listed"
    """An entry of an imported blocklist."""
    SCREEN_FAILED = "screen_failed"
    SCREEN_PASSED = "screen_passed"
    LEGIT_CALL = "legit_call"
    """An answered call that lasted long."""
    SHORT_CALL = "short_call"
    """An unanswered or very short call."""
    BLOCK = "block"
    PEER_BAD = "peer_bad"


EVIDENCE_COLUMN: dict[EvidenceKind, int] = {
    EvidenceKind.REPORT: REPORTS,
    EvidenceKind.ADMIN_REPORT: REPORTS,
    EvidenceKind.COMPLAINT: REPORTS,
    EvidenceKind.LISTED: REPORTS,
    EvidenceKind.SCREEN_FAILED: SCREEN_FAILED,
    EvidenceKind.SCREEN_PASSED: SCREEN_PASSED,
    EvidenceKind.LEGIT_CALL: LEGIT_CALLS,
    EvidenceKind.SHORT_CALL: SHORT_CALLS,
    EvidenceKind.BLOCK: BLOCKS,
    EvidenceKind.PEER_BAD: PEER_BAD,
}
DEFAULT_WEIGHT: dict[EvidenceKind, float] = {
    EvidenceKind.REPORT: 1.0,
    EvidenceKind.ADMIN_REPORT: 3.0,
    EvidenceKind.COMPLAINT: 1.0,
    EvidenceKind.LISTED: 2.0,
}


class Row(msgspec.Struct, gc=False):
    """A number's record (or a pending delta of one): seen times, call count, scaled evidence.

    Flat fields, no containers, not tracked by the garbage collector: a million cached rows add
    nothing to a collection's work (an ``array`` or ``list`` per row would: both are tracked).
    """

    number: int
    first_seen: float = math.inf
    last_seen: float = -math.inf
    calls: int = 0
    reports: float = 0.0
    screen_failed: float = 0.0
    screen_passed: float = 0.0
    legit_calls: float = 0.0
    short_calls: float = 0.0
    blocks: float = 0.0
    peer_bad: float = 0.0

    def add(self, other: Row) -> None:
        self.first_seen = min(self.first_seen, other.first_seen)
        self.last_seen = max(self.last_seen, other.last_seen)
        self.calls += other.calls
        for name in COLUMNS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def add_to(self, column: int, amount: float) -> None:
        name = COLUMNS[column]
        setattr(self, name, getattr(self, name) + amount)

    def values(self) -> tuple[float, ...]:
        """The scaled evidence in :data:`COLUMNS` order."""
        return (
            self.reports,
            self.screen_failed,
            self.screen_passed,
            self.legit_calls,
            self.short_calls,
            self.blocks,
            self.peer_bad,
        )

    def bad(self) -> float:
        return self.reports + self.screen_failed + self.peer_bad

    def copy(self) -> Row:
        return replace(self)


class ReputationView(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A number's reputation as of one moment: decayed values and neighbourhood."""

    known: bool
    first_seen: float | None
    last_seen: float | None
    calls: int
    reports: float
    screen_failed: float
    screen_passed: float
    legit_calls: float
    short_calls: float
    blocks: float
    peer_bad: float
    range_bad_10: int
    """Other bad numbers in the caller's /10 range (same number but the last digit)."""
    range_bad_100: int
    """Other bad numbers in the caller's /100 range."""


UNKNOWN_VIEW = ReputationView(
    known=False,
    first_seen=None,
    last_seen=None,
    calls=0,
    reports=0.0,
    screen_failed=0.0,
    screen_passed=0.0,
    legit_calls=0.0,
    short_calls=0.0,
    blocks=0.0,
    peer_bad=0.0,
    range_bad_10=0,
    range_bad_100=0,
)

_SELECT_BLOCK = (
    f"SELECT number, first_seen, last_seen, calls, {', '.join(COLUMNS)} FROM reputation WHERE number BETWEEN ? AND ?"
)
UPSERT = (
    f"INSERT INTO reputation (number, first_seen, last_seen, calls, {', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('?' * (4 + len(COLUMNS)))}) ON CONFLICT (number) DO UPDATE SET "
    "first_seen = min(first_seen, excluded.first_seen), last_seen = max(last_seen, excluded.last_seen), "
    "calls = calls + excluded.calls, " + ", ".join(f"{c} = {c} + excluded.{c}" for c in COLUMNS)
)
INSERT_EVIDENCE = "INSERT INTO evidence (number, ts, kind, weight, source, note) VALUES (?, ?, ?, ?, ?, ?)"


class ReputationStore:
    """Per-number evidence over one SQLite database, cached for the decision path.

    Not thread-safe: one owner (the engine) calls it; writes leave as batches via :meth:`take_writes`.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        half_life: float,
        now: float,
        cache_blocks: int = 262_144,
        bad_threshold: float = 1.0,
    ) -> None:
        if half_life <= 0:
            raise ValueError("half_life must be positive")
        self._conn = conn
        self._half_life = float(half_life)
        self._bad_threshold = bad_threshold
        self._cache_blocks = max(1, cache_blocks)
        self._blocks: OrderedDict[int, dict[int, Row]] = OrderedDict()
        self._pending: dict[int, dict[int, Row]] = {}
        """Evidence deltas by block, committed at every flush."""
        self._sightings: dict[int, dict[int, Row]] = {}
        """Call counts and seen times by block: soft state, committed with the pattern snapshots."""
        self._inflight: list[dict[int, dict[int, Row]]] = []
        """Deltas handed over by take_writes and not yet committed: block loads still count them."""
        self._pending_evidence: list[tuple[int, float, str, float, str, str]] = []
        self._epoch = self._prepare_epoch(now)
        self.loads = 0

    # --- decay ----------------------------------------------------------------------------------

    @property
    def half_life(self) -> float:
        return self._half_life

    @property
    def epoch(self) -> float:
        return self._epoch

    def scale(self, when: float) -> float:
        """Factor that stores evidence observed at ``when``."""
        return math.exp2((when - self._epoch) / self._half_life)

    def _prepare_epoch(self, now: float) -> float:
        stored_epoch = db.get_meta(self._conn, "decay_epoch")
        stored_half_life = db.get_meta(self._conn, "decay_half_life")
        if stored_epoch is None or stored_half_life is None:
            db.apply(
                self._conn,
                [
                    db.set_meta_statement("decay_epoch", repr(now)),
                    db.set_meta_statement("decay_half_life", repr(self._half_life)),
                ],
            )
            return now
        epoch, half_life = float(stored_epoch), float(stored_half_life)
        if half_life == self._half_life and (now - epoch) / half_life < REBASE_AFTER_HALF_LIVES:
            return epoch
        # Rebase: turn stored values into values at `now` under the old half-life; `now` is the new epoch.
        factor = math.exp2(-(now - epoch) / half_life)
        sets = ", ".join(f"{c} = {c} * ?" for c in COLUMNS)
        db.apply(
            self._conn,
            [
                (f"UPDATE reputation SET {sets}", [(factor,) * len(COLUMNS)]),
                db.set_meta_statement("decay_epoch", repr(now)),
                db.set_meta_statement("decay_half_life", repr(self._half_life)),
            ],
        )
        return now

    # --- reads ----------------------------------------------------------------------------------

    def _block(self, block_id: int) -> dict[int, Row]:
        blocks = self._blocks
        rows = blocks.get(block_id)
        if rows is not None:
            blocks.move_to_end(block_id)  # most recently used last
            return rows
        rows = blocks[block_id] = self._load_block(block_id)
        if len(blocks) > self._cache_blocks:
            blocks.popitem(last=False)
        return rows

    def _load_block(self, block_id: int) -> dict[int, Row]:
        self.loads += 1
        low = block_id * BLOCK
        rows: dict[int, Row] = {}
        for record in self._conn.execute(_SELECT_BLOCK, (low, low + BLOCK - 1)):
            rows[record[0]] = Row(*record)
        for pending in (self._pending, self._sightings, *self._inflight):
            for delta in pending.get(block_id, {}).values():
                existing = rows.get(delta.number)
                if existing is None:
                    rows[delta.number] = delta.copy()
                else:
                    existing.add(delta)
        return rows

    def row(self, number: int) -> Row | None:
        """The cached record of ``number`` (scaled values), or ``None`` if it has no history."""
        return self._block(number // BLOCK).get(number)

    def view(self, number: int, now: float) -> ReputationView:
        """Decayed reputation of ``number`` at ``now``, with range heat."""
        rows = self._block(number // BLOCK)
        decay = math.exp2(-(now - self._epoch) / self._half_life)
        threshold = self._bad_threshold / decay
        bad_10 = bad_100 = 0
        decade = number // 10
        for other in rows.values():
            if other.number != number and other.bad() >= threshold:
                bad_100 += 1
                if other.number // 10 == decade:
                    bad_10 += 1
        row = rows.get(number)
        if row is None:
            if bad_100 == 0:
                return UNKNOWN_VIEW
            return replace(UNKNOWN_VIEW, range_bad_10=bad_10, range_bad_100=bad_100)
        return ReputationView(
            known=True,
            first_seen=row.first_seen,
            last_seen=row.last_seen,
            calls=row.calls,
            reports=row.reports * decay,
            screen_failed=row.screen_failed * decay,
            screen_passed=row.screen_passed * decay,
            legit_calls=row.legit_calls * decay,
            short_calls=row.short_calls * decay,
            blocks=row.blocks * decay,
            peer_bad=row.peer_bad * decay,
            range_bad_10=bad_10,
            range_bad_100=bad_100,
        )

    # --- writes ---------------------------------------------------------------------------------

    def _delta(self, number: int, buffer: dict[int, dict[int, Row]]) -> tuple[Row, Row]:
        """The delta of ``number`` in ``buffer`` and its cached row (both created if missing)."""
        block_id = number // BLOCK
        rows = self._block(block_id)
        row = rows.get(number)
        if row is None:
            row = rows[number] = Row(number)
        pending = buffer.get(block_id)
        if pending is None:
            pending = buffer[block_id] = {}
        delta = pending.get(number)
        if delta is None:
            delta = pending[number] = Row(number)
        return delta, row

    def record_call(self, number: int, when: float) -> None:
        """A call from ``number`` was decided at ``when``."""
        delta, row = self._delta(number, self._sightings)
        for target in (delta, row):
            target.calls += 1
            target.first_seen = min(target.first_seen, when)
            target.last_seen = max(target.last_seen, when)

    def add_evidence(
        self,
        number: int,
        kind: EvidenceKind,
        when: float,
        *,
        weight: float | None = None,
        source: str = "local",
        note: str = "",
        log: bool = False,
    ) -> None:
        """Add evidence about ``number`` observed at ``when`` (``log``: also keep it for ``explain``)."""
        amount = DEFAULT_WEIGHT.get(kind, 1.0) if weight is None else weight
        if not math.isfinite(amount):
            raise ValueError("evidence weight must be finite")
        column = EVIDENCE_COLUMN[kind]
        scaled = amount * self.scale(when)
        delta, row = self._delta(number, self._pending)
        for target in (delta, row):
            target.add_to(column, scaled)
            target.first_seen = min(target.first_seen, when)
        if log:
            self._pending_evidence.append((number, when, kind.value, amount, source[:64], note[:200]))

    def pending_count(self) -> int:
        buffered = sum(len(rows) for rows in self._pending.values())
        return buffered + sum(len(rows) for rows in self._sightings.values()) + len(self._pending_evidence)

    def take_writes(self, *, sightings: bool = True) -> list[db.Statement]:
        """Hand over the buffered deltas as statements; call :meth:`committed` once they are in.

        Sightings (call counts, seen times) are only included with ``sightings``: a crash may lose
        those of the last snapshot interval, never evidence.
        """
        if sightings:
            for block_id, deltas in self._sightings.items():
                pending = self._pending.setdefault(block_id, {})
                for number, delta in deltas.items():
                    if number in pending:
                        pending[number].add(delta)
                    else:
                        pending[number] = delta
            self._sightings = {}
        rows = [self._row_params(delta) for block in self._pending.values() for delta in block.values()]
        rows.sort()  # key order: neighbouring rows share B-tree pages
        evidence = self._pending_evidence
        self._inflight.append(self._pending)
        self._pending = {}
        self._pending_evidence = []
        statements: list[db.Statement] = []
        if rows:
            statements.append((UPSERT, rows))
        if evidence:
            statements.append((INSERT_EVIDENCE, evidence))
        return statements

    def committed(self) -> None:
        """Every statement handed over so far is in the database."""
        self._inflight.clear()

    @staticmethod
    def _row_params(delta: Row) -> tuple[float | int, ...]:
        first = delta.first_seen if math.isfinite(delta.first_seen) else delta.last_seen
        last = delta.last_seen if math.isfinite(delta.last_seen) else first
        if not math.isfinite(first):
            first = last = 0.0
        return (delta.number, first, last, delta.calls, *delta.values())

    def invalidate(self) -> None:
        """Forget cached blocks (another process wrote to the database); pending deltas are kept."""
        self._blocks.clear()

    # --- queries for explain/export ----------------------------------------------------------------

    def evidence_log(self, number: int, limit: int = 50) -> list[tuple[float, str, float, str, str]]:
        """Logged evidence events of ``number``, newest first (committed ones only)."""
        cursor = self._conn.execute(
            "SELECT ts, kind, weight, source, note FROM evidence WHERE number = ? ORDER BY ts DESC LIMIT ?",
            (number, limit),
        )
        return [tuple(r) for r in cursor]

    def iter_decayed(self, now: float) -> Iterator[tuple[int, float, float, ReputationView]]:
        """Every committed number as (number, first_seen, last_seen, view without range heat)."""
        decay = math.exp2(-(now - self._epoch) / self._half_life)
        cursor = self._conn.execute(
            f"SELECT number, first_seen, last_seen, calls, {', '.join(COLUMNS)} FROM reputation ORDER BY number"
        )
        for rec in cursor:
            v = [x * decay for x in rec[4:]]
            view = ReputationView(
                known=True,
                first_seen=rec[1],
                last_seen=rec[2],
                calls=rec[3],
                reports=v[0],
                screen_failed=v[1],
                screen_passed=v[2],
                legit_calls=v[3],
                short_calls=v[4],
                blocks=v[5],
                peer_bad=v[6],
                range_bad_10=0,
                range_bad_100=0,
            )
            yield rec[0], rec[1], rec[2], view

    def count(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM reputation").fetchone()[0])
