"""Reputation store: decay representation, additive writes from two processes, rebase, range heat."""

from __future__ import annotations

from pathlib import Path

import pytest

from callshield import db
from callshield.reputation import EvidenceKind, ReputationStore

DAY = 86400.0
T0 = 1_795_000_000.0


def open_store(path: Path, now: float, half_life: float = 30 * DAY) -> ReputationStore:
    return ReputationStore(db.connect(path), half_life=half_life, now=now)


def commit(store: ReputationStore, path: Path) -> None:
    db.apply(db.connect(path), store.take_writes())
    store.committed()


def test_decay_is_exponential(tmp_path: Path) -> None:
    store = open_store(tmp_path / "r.db", T0, half_life=10 * DAY)
    store.add_evidence(1, EvidenceKind.REPORT, T0, weight=8)
    assert store.view(1, T0).reports == pytest.approx(8)
    assert store.view(1, T0 + 10 * DAY).reports == pytest.approx(4)
    assert store.view(1, T0 + 30 * DAY).reports == pytest.approx(1)


def test_old_evidence_counts_less(tmp_path: Path) -> None:
    store = open_store(tmp_path / "r.db", T0, half_life=10 * DAY)
    store.add_evidence(1, EvidenceKind.COMPLAINT, T0 - 20 * DAY)
    assert store.view(1, T0).reports == pytest.approx(0.25)


def test_two_writers_never_overwrite_each_other(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    server = open_store(path, T0)
    cli = open_store(path, T0)
    server.add_evidence(42, EvidenceKind.REPORT, T0)  # cached and pending in the server
    cli.add_evidence(42, EvidenceKind.ADMIN_REPORT, T0)  # another process, same number
    commit(cli, path)
    commit(server, path)
    fresh = open_store(path, T0)
    assert fresh.view(42, T0).reports == pytest.approx(1 + 3)
    server.invalidate()
    assert server.view(42, T0).reports == pytest.approx(4)


def test_rebase_on_half_life_change_keeps_values(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    store = open_store(path, T0, half_life=10 * DAY)
    store.add_evidence(5, EvidenceKind.REPORT, T0, weight=4)
    commit(store, path)
    later = T0 + 10 * DAY
    rebased = open_store(path, later, half_life=20 * DAY)
    assert rebased.epoch == later
    assert rebased.view(5, later).reports == pytest.approx(2)
    assert rebased.view(5, later + 20 * DAY).reports == pytest.approx(1)


def test_rebase_when_epoch_is_old(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    store = open_store(path, T0, half_life=1.0)
    store.add_evidence(5, EvidenceKind.REPORT, T0 + 5, weight=1)
    commit(store, path)
    much_later = T0 + 1000  # 1000 half-lives: the scaled value would overflow without a rebase
    again = open_store(path, much_later, half_life=1.0)
    assert again.epoch == much_later
    assert again.view(5, much_later).reports == pytest.approx(0.0, abs=1e-12)


def test_range_heat_counts_bad_neighbours_only(tmp_path: Path) -> None:
    store = open_store(tmp_path / "r.db", T0)
    for n in (14155550101, 14155550105, 14155550177):
        store.add_evidence(n, EvidenceKind.REPORT, T0, weight=2)
    store.add_evidence(14155550109, EvidenceKind.LEGIT_CALL, T0)  # good evidence is no heat
    store.add_evidence(14155550201, EvidenceKind.REPORT, T0, weight=5)  # another /100 block
    view = store.view(14155550100, T0)
    assert (view.range_bad_10, view.range_bad_100, view.known) == (2, 3, False)
    own = store.view(14155550101, T0)
    assert (own.range_bad_10, own.range_bad_100) == (1, 2)  # never counts itself


def test_cache_is_bounded_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    store = ReputationStore(db.connect(path), half_life=30 * DAY, now=T0, cache_blocks=4)
    for i in range(50):
        store.add_evidence(1_000_000 + i * 100, EvidenceKind.REPORT, T0)
    assert len(store._blocks) <= 4
    assert store.view(1_000_000, T0).reports == pytest.approx(1)  # evicted, pending delta merged on reload
    commit(store, path)
    assert store.view(1_000_100, T0).reports == pytest.approx(1)


def test_non_finite_weight_is_refused(tmp_path: Path) -> None:
    store = open_store(tmp_path / "r.db", T0)
    with pytest.raises(ValueError):
        store.add_evidence(1, EvidenceKind.REPORT, T0, weight=float("nan"))


def test_not_a_callshield_database_is_refused(tmp_path: Path) -> None:
    import sqlite3

    from callshield.errors import StoreError

    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a callshield database"):
        db.connect(other)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        db.connect(garbage)


def test_cache_drop_during_a_write_keeps_the_deltas_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    store = open_store(path, T0)
    store.add_evidence(9, EvidenceKind.REPORT, T0)
    statements = store.take_writes()  # handed to the writer, not committed yet
    store.invalidate()  # another process changed the database meanwhile
    assert store.view(9, T0).reports == pytest.approx(1)
    db.apply(db.connect(path), statements)
    store.committed()
    store.invalidate()
    assert store.view(9, T0).reports == pytest.approx(1)  # counted once, from the database
