"""What peer nodes say about callers: their standing verdicts, weighted, expiring, and the quorum rule.

Rules (the mesh's evidence, contract 2 of DESIGN.md):

- A subject is what the mesh names a caller by: its E.164, or a keyed hash of it in privacy mode.
  The ledger never needs the number itself.
- One standing verdict per (subject, node): a newer one (by the node's sequence number) replaces
  it, an older or equal one is ignored (QoS 1 redelivers), a revocation from that node removes it.
  A verdict stands until its TTL runs out.
- Weight: the sum over standing verdicts of the node's trust times the kind's weight, decayed with
  the reputation half-life since the verdict was made. It feeds the ``peer_bad`` feature.
- Blockers: the distinct nodes whose standing verdict is a block. Peer evidence alone may raise a
  caller at most to ``screen``; a block that needs peer evidence needs ``quorum`` blockers (the
  engine applies this, see :meth:`PeerView.allows_block`). A local allow rule always wins, as it
  comes first in the engine's precedence.

No I/O on the decision path: standing verdicts are held in memory (loaded at start), changes are
buffered and written with the engine's batches.

Bounded memory: at most ``max_subjects`` subjects are held (default ``MAX_SUBJECTS``, about 200 bytes
each with one verdict). A new subject beyond that evicts the subject whose verdicts changed least
recently (counted in :attr:`PeerLedger.evicted`; its rows stay in the database until they expire, and
a restart loads the most recent ``max_subjects``). A flood of distinct subjects from a peer can thus
push out older peer evidence, never grow the process.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from enum import StrEnum
from typing import Final

import msgspec

from callshield import db

__all__ = ["NO_PEERS", "PeerKind", "PeerLedger", "PeerView"]


class PeerKind(StrEnum):
    """What a peer's verdict says about a caller."""

    BLOCK = "block"
    SCREEN = "screen"
    SCREEN_FAILED = "screen_failed"
    REPORT = "report"


KIND_WEIGHT: Final[Mapping[str, float]] = {
    PeerKind.BLOCK.value: 1.0,
    PeerKind.SCREEN.value: 0.5,
    PeerKind.SCREEN_FAILED.value: 0.5,
    PeerKind.REPORT.value: 0.5,
}
_BLOCK: Final = PeerKind.BLOCK.value


class _Standing(msgspec.Struct, frozen=True, gc=False):
    node: str
    kind: str
    seq: int
    at: float
    expires: float


class PeerView(msgspec.Struct, frozen=True, gc=False):
    """The peers' standing verdicts on one subject, now."""

    weight: float
    """Trust-weighted, decayed evidence (the ``peer_bad`` feature)."""
    blockers: int
    """Distinct nodes whose standing verdict is a block."""
    nodes: int
    """Distinct nodes with any standing verdict."""

    def allows_block(self, quorum: int) -> bool:
        """Whether peers alone may make the caller blocked: at least ``quorum`` distinct blockers."""
        return self.blockers >= quorum


NO_PEERS: Final = PeerView(weight=0.0, blockers=0, nodes=0)

UPSERT: Final = (
    "INSERT INTO peer_verdicts (subject, node, kind, seq, at, expires) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (subject, node) DO UPDATE SET kind = excluded.kind, seq = excluded.seq, at = excluded.at, "
    "expires = excluded.expires WHERE excluded.seq > peer_verdicts.seq"
)
DELETE: Final = "DELETE FROM peer_verdicts WHERE subject = ? AND node = ? AND seq < ?"
PRUNE: Final = "DELETE FROM peer_verdicts WHERE expires <= ?"
MAX_SUBJECTS: Final = 1_000_000
"""Subjects with standing peer verdicts held in memory, at most (see the module rules)."""


class PeerLedger:
    """Standing peer verdicts by subject (see the module rules). One per engine, one thread."""

    def __init__(
        self,
        *,
        half_life: float,
        default_trust: float = 1.0,
        trust: Mapping[str, float] | None = None,
        max_subjects: int = MAX_SUBJECTS,
    ) -> None:
        if half_life <= 0:
            raise ValueError("half_life must be positive")
        if max_subjects < 1:
            raise ValueError("max_subjects must be at least 1")
        self._max_subjects = max_subjects
        self.evicted = 0
        """Subjects dropped from memory because ``max_subjects`` were held."""
        self._half_life = half_life
        self._default_trust = default_trust
        self._trust = dict(trust or {})
        self._by_subject: dict[str, tuple[_Standing, ...]] = {}
        self._writes: list[tuple[str, tuple[object, ...]]] = []

    def set_trust(self, *, default_trust: float, trust: Mapping[str, float]) -> None:
        """New trust weights (config reload); they apply to standing verdicts at once."""
        self._default_trust = default_trust
        self._trust = dict(trust)

    # -- changes -----------------------------------------------------------------------------------

    def add(self, *, subject: str, node: str, kind: PeerKind, seq: int, at: float, ttl: float) -> bool:
        """A peer's verdict; False when an equal or newer one from that node already stands."""
        standing = self._by_subject.get(subject, ())
        for entry in standing:
            if entry.node == node and entry.seq >= seq:
                return False
        entry = _Standing(node=node, kind=kind.value, seq=seq, at=at, expires=at + ttl)
        self._put(subject, (*(e for e in standing if e.node != node), entry))
        self._writes.append((UPSERT, (subject, node, entry.kind, seq, at, entry.expires)))
        return True

    def _put(self, subject: str, standing: tuple[_Standing, ...]) -> None:
        """Hold ``standing`` as the subject's newest change (dict order: least recently changed first)."""
        by_subject = self._by_subject
        if by_subject.pop(subject, None) is None and len(by_subject) >= self._max_subjects:
            del by_subject[next(iter(by_subject))]
            self.evicted += 1
        by_subject[subject] = standing

    def revoke(self, *, subject: str, node: str, seq: int) -> bool:
        """The node withdraws its verdicts on the subject (an admin unlist there); False if none stood."""
        standing = self._by_subject.get(subject, ())
        kept = tuple(e for e in standing if e.node != node or e.seq >= seq)
        self._writes.append((DELETE, (subject, node, seq)))
        if len(kept) == len(standing):
            return False
        if kept:
            self._by_subject[subject] = kept
        else:
            del self._by_subject[subject]
        return True

    def expire(self, now: float) -> int:
        """Drop verdicts whose TTL has run out; return how many subjects were dropped."""
        dropped = 0
        for subject, standing in list(self._by_subject.items()):
            kept = tuple(e for e in standing if e.expires > now)
            if not kept:
                del self._by_subject[subject]
                dropped += 1
            elif len(kept) != len(standing):
                self._by_subject[subject] = kept
        self._writes.append((PRUNE, (now,)))
        return dropped

    # -- reading -----------------------------------------------------------------------------------

    def view(self, subject: str, now: float) -> PeerView:
        """The standing verdicts on ``subject`` at ``now``."""
        standing = self._by_subject.get(subject)
        if not standing:
            return NO_PEERS
        weight = 0.0
        blockers = nodes = 0
        trust, default, half_life = self._trust, self._default_trust, self._half_life
        for entry in standing:
            if entry.expires <= now:
                continue
            nodes += 1
            if entry.kind == _BLOCK:
                blockers += 1
            age = max(0.0, now - entry.at)
            weight += trust.get(entry.node, default) * KIND_WEIGHT[entry.kind] * 0.5 ** (age / half_life)
        if not nodes:
            return NO_PEERS
        return PeerView(weight=weight, blockers=blockers, nodes=nodes)

    def standing(self, subject: str, now: float) -> list[dict[str, object]]:
        """The verdicts standing on ``subject`` at ``now``, for ``explain`` (newest first)."""
        found = [e for e in self._by_subject.get(subject, ()) if e.expires > now]
        found.sort(key=lambda e: -e.at)
        return [
            {
                "node": e.node,
                "kind": e.kind,
                "seq": e.seq,
                "at": e.at,
                "expires": e.expires,
                "trust": self.trust_of(e.node),
            }
            for e in found
        ]

    def trust_of(self, node: str) -> float:
        """The trust weight of a node's verdicts."""
        return self._trust.get(node, self._default_trust)

    def subjects(self) -> int:
        """How many subjects have standing verdicts."""
        return len(self._by_subject)

    # -- persistence -------------------------------------------------------------------------------

    def load(self, conn: sqlite3.Connection, now: float) -> int:
        """Read the standing verdicts from the node database; return how many were loaded."""
        count = 0
        cursor = conn.execute(  # oldest first: beyond max_subjects the most recent stay
            "SELECT subject, node, kind, seq, at, expires FROM peer_verdicts WHERE expires > ? ORDER BY at", (now,)
        )
        for subject, node, kind, seq, at, expires in cursor:
            if kind not in KIND_WEIGHT:
                continue
            entry = _Standing(node=node, kind=kind, seq=seq, at=at, expires=expires)
            self._put(subject, (*self._by_subject.get(subject, ()), entry))
            count += 1
        return count

    def take_writes(self) -> list[db.Statement]:
        """The buffered changes as statements, in order (each its own statement: order matters)."""
        writes, self._writes = self._writes, []
        return [(sql, [params]) for sql, params in writes]
