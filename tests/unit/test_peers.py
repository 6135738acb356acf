"""The peer ledger: standing verdicts per subject, replacement by sequence, expiry, trust and quorum."""

from __future__ import annotations

from pathlib import Path

import pytest

from callshield import db
from callshield.peers import NO_PEERS, PeerKind, PeerLedger

DAY = 86400.0
SUBJECT = "+14155550123"


def ledger(**trust: float) -> PeerLedger:
    return PeerLedger(half_life=30 * DAY, default_trust=1.0, trust=trust)


def test_one_standing_verdict_per_node_newest_sequence_wins() -> None:
    peers = ledger()
    assert peers.add(subject=SUBJECT, node="a", kind=PeerKind.SCREEN, seq=5, at=0.0, ttl=DAY)
    assert not peers.add(subject=SUBJECT, node="a", kind=PeerKind.BLOCK, seq=5, at=1.0, ttl=DAY)  # redelivery
    assert not peers.add(subject=SUBJECT, node="a", kind=PeerKind.BLOCK, seq=4, at=1.0, ttl=DAY)  # older
    assert peers.view(SUBJECT, 10.0).blockers == 0
    assert peers.add(subject=SUBJECT, node="a", kind=PeerKind.BLOCK, seq=6, at=2.0, ttl=DAY)
    view = peers.view(SUBJECT, 10.0)
    assert (view.blockers, view.nodes) == (1, 1)


def test_quorum_counts_distinct_blocking_nodes() -> None:
    peers = ledger()
    peers.add(subject=SUBJECT, node="a", kind=PeerKind.BLOCK, seq=1, at=0.0, ttl=DAY)
    peers.add(subject=SUBJECT, node="a", kind=PeerKind.BLOCK, seq=2, at=0.0, ttl=DAY)  # same node again
    assert not peers.view(SUBJECT, 1.0).allows_block(2)
    peers.add(subject=SUBJECT, node="b", kind=PeerKind.SCREEN, seq=1, at=0.0, ttl=DAY)
    assert not peers.view(SUBJECT, 1.0).allows_block(2)
    peers.add(subject=SUBJECT, node="c", kind=PeerKind.BLOCK, seq=1, at=0.0, ttl=DAY)
    view = peers.view(SUBJECT, 1.0)
    assert view.allows_block(2) and (view.blockers, view.nodes) == (2, 3)


def test_verdicts_expire_and_decay() -> None:
    peers = ledger()
    peers.add(subject=SUBJECT, node="a", kind=PeerKind.BLOCK, seq=1, at=0.0, ttl=60 * DAY)
    fresh = peers.view(SUBJECT, 0.0).weight
    assert fresh == pytest.approx(1.0)
    assert peers.view(SUBJECT, 30 * DAY).weight == pytest.approx(0.5)
    assert peers.view(SUBJECT, 60 * DAY) == NO_PEERS
    assert peers.expire(60 * DAY) == 1
    assert peers.subjects() == 0


def test_trust_weights_each_node() -> None:
    peers = ledger(rogue=0.1)
    peers.add(subject=SUBJECT, node="rogue", kind=PeerKind.BLOCK, seq=1, at=0.0, ttl=DAY)
    peers.add(subject=SUBJECT, node="b", kind=PeerKind.REPORT, seq=1, at=0.0, ttl=DAY)
    assert peers.view(SUBJECT, 0.0).weight == pytest.approx(0.1 + 0.5)
    peers.set_trust(default_trust=0.0, trust={})
    assert peers.view(SUBJECT, 0.0).weight == 0.0


def test_revocation_removes_that_nodes_earlier_verdicts_only() -> None:
    peers = ledger()
    peers.add(subject=SUBJECT, node="a", kind=PeerKind.BLOCK, seq=3, at=0.0, ttl=DAY)
    peers.add(subject=SUBJECT, node="b", kind=PeerKind.BLOCK, seq=1, at=0.0, ttl=DAY)
    assert not peers.revoke(subject=SUBJECT, node="a", seq=2)  # older than the verdict: it stands
    assert peers.revoke(subject=SUBJECT, node="a", seq=4)
    assert peers.view(SUBJECT, 1.0).blockers == 1
    assert peers.revoke(subject=SUBJECT, node="b", seq=2)
    assert peers.view(SUBJECT, 1.0) == NO_PEERS


def test_standing_verdicts_survive_a_restart(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "cs.sqlite3")
    peers = ledger()
    peers.add(subject=SUBJECT, node="a", kind=PeerKind.BLOCK, seq=1, at=0.0, ttl=DAY)
    peers.add(subject=SUBJECT, node="b", kind=PeerKind.BLOCK, seq=1, at=0.0, ttl=DAY)
    peers.add(subject="+12125550100", node="a", kind=PeerKind.SCREEN, seq=2, at=0.0, ttl=10.0)
    peers.revoke(subject=SUBJECT, node="b", seq=2)
    peers.add(subject=SUBJECT, node="a", kind=PeerKind.BLOCK, seq=0, at=0.0, ttl=DAY)  # stale: not written
    db.apply(conn, peers.take_writes())
    again = ledger()
    assert again.load(conn, now=100.0) == 1  # b revoked; the screen expired at 10 s
    view = again.view(SUBJECT, 100.0)
    assert (view.blockers, view.nodes) == (1, 1)
    db.apply(conn, [("UPDATE peer_verdicts SET kind = 'bogus'", [()])])
    assert ledger().load(conn, now=100.0) == 0  # an unknown kind is skipped, not fatal


def test_a_replayed_upsert_does_not_roll_back_a_newer_row(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "cs.sqlite3")
    newer, older = ledger(), ledger()
    newer.add(subject=SUBJECT, node="a", kind=PeerKind.BLOCK, seq=9, at=5.0, ttl=DAY)
    older.add(subject=SUBJECT, node="a", kind=PeerKind.SCREEN, seq=3, at=1.0, ttl=DAY)
    db.apply(conn, newer.take_writes())
    db.apply(conn, older.take_writes())  # e.g. another process with an older copy
    assert conn.execute("SELECT kind, seq FROM peer_verdicts").fetchall() == [("block", 9)]


def test_memory_is_bounded_the_least_recently_changed_subject_goes_first(tmp_path: Path) -> None:
    peers = PeerLedger(half_life=30 * DAY, max_subjects=2)
    for i, subject in enumerate(("+14155550001", "+14155550002")):
        peers.add(subject=subject, node="a", kind=PeerKind.BLOCK, seq=i + 1, at=float(i), ttl=DAY)
    # A newer verdict on the first subject makes it the most recently changed one.
    peers.add(subject="+14155550001", node="b", kind=PeerKind.SCREEN, seq=1, at=5.0, ttl=DAY)
    peers.add(subject="+14155550003", node="a", kind=PeerKind.BLOCK, seq=3, at=6.0, ttl=DAY)
    assert peers.subjects() == 2 and peers.evicted == 1
    assert peers.view("+14155550002", 10.0) is NO_PEERS  # evicted
    assert peers.view("+14155550001", 10.0).nodes == 2
    assert peers.view("+14155550003", 10.0).blockers == 1
    # The database keeps every row; a restart loads the most recent max_subjects.
    conn = db.connect(tmp_path / "cs.sqlite3")
    db.apply(conn, peers.take_writes())
    again = PeerLedger(half_life=30 * DAY, max_subjects=2)
    assert again.load(conn, 10.0) == 4
    assert again.subjects() == 2 and again.evicted == 1
    assert again.view("+14155550002", 10.0) is NO_PEERS


def test_max_subjects_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_subjects"):
        PeerLedger(half_life=DAY, max_subjects=0)
