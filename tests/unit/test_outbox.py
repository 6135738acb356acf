"""The mesh outbox: committed before publishing, removed on acknowledgement, bounded, numbered."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from callshield import db
from callshield.errors import StoreError
from callshield.mesh import MeshMessage, MessageKind, decode_payload
from callshield.outbox import Outbox, mesh_database_path
from callshield.verdict import Action

from .mesh_support import NOW, outbound


def test_messages_wait_in_order_until_acknowledged(tmp_path: Path) -> None:
    box = Outbox(db.connect(tmp_path / "cs.sqlite3"))
    assert box.last_seq() == 0
    assert box.append([("t/a", b"1"), ("t/a", b"2")], now=10.0) == 1
    assert box.append([("t/b", b"3")], now=11.0) == 3
    waiting = [(e.seq, e.topic, e.payload) for e in box.pending()]
    assert waiting == [(1, "t/a", b"1"), (2, "t/a", b"2"), (3, "t/b", b"3")]
    box.acknowledged([2])
    assert [e.seq for e in box.pending()] == [1, 3]
    assert [e.seq for e in box.pending(after=1)] == [3]
    assert box.depth() == 2


def test_sequence_and_messages_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "cs.sqlite3"
    box = Outbox(db.connect(path))
    box.append([("t", b"x")] * 3, now=0.0)
    box.acknowledged([1, 2, 3])
    box.append([("t", b"y")], now=1.0)
    again = Outbox(db.connect(path))
    assert again.last_seq() == 4
    assert [e.payload for e in again.pending()] == [b"y"]
    assert again.append([("t", b"z")], now=2.0, first_seq=5) == 5


def test_a_sequence_that_moved_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    box = Outbox(db.connect(tmp_path / "cs.sqlite3"))
    box.append([("t", b"x")], now=0.0)
    with pytest.raises(StoreError, match="sequence moved"):
        box.append([("t", b"y")], now=1.0, first_seq=7)
    assert box.last_seq() == 1 and box.depth() == 1


def test_full_outbox_drops_the_oldest_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    box = Outbox(db.connect(tmp_path / "cs.sqlite3"), max_messages=3)
    box.append([("t", b"%d" % i) for i in range(2)], now=0.0)
    with caplog.at_level(logging.WARNING, logger="callshield.outbox"):
        box.append([("t", b"%d" % i) for i in range(2, 6)], now=60.0)
    assert [e.payload for e in box.pending()] == [b"3", b"4", b"5"]
    assert box.dropped == 3
    assert "dropped the 3 oldest, up to 60 s old" in caplog.text


def test_a_killed_writer_loses_nothing_committed(tmp_path: Path) -> None:
    path = tmp_path / "cs.sqlite3"
    Outbox(db.connect(path)).append([("t", b"before")], now=0.0)
    script = (
        "import os, sys\n"
        "from callshield import db\n"
        "from callshield.outbox import Outbox\n"
        "box = Outbox(db.connect(sys.argv[1]))\n"
        "conn = box._conn\n"
        "conn.execute('BEGIN IMMEDIATE')\n"
        "conn.execute(\"INSERT INTO mesh_outbox VALUES (99, 't', x'00', 0)\")\n"
        "os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(path)], check=False, env=dict(os.environ))
    assert proc.returncode == -9
    box = Outbox(db.connect(path))
    assert [e.payload for e in box.pending()] == [b"before"]
    assert box.last_seq() == 1


def _messages(count: int, *, caller: str = "+14155550100") -> list[MeshMessage]:
    sender = outbound()
    return [
        sender.message(
            kind=MessageKind.VERDICT, caller=f"{caller[:-2]}{i:02d}", action=Action.BLOCK, score=90, now=NOW - 5
        )
        for i in range(count)
    ]


def test_a_round_numbers_stamps_and_keeps_the_standing_verdicts_in_one_transaction(tmp_path: Path) -> None:
    box = Outbox(db.connect(tmp_path / "cs.sqlite3"))
    box.append([("t", b"from the cli")], now=NOW)  # another writer took number 1
    committed = box.commit(_messages(3), topic="t/a", now=NOW)
    assert committed.after == 1 and committed.dropped == 0
    assert [e.seq for e in committed.entries] == [2, 3, 4]
    stored = [decode_payload(e.payload) for e in box.pending(after=1)]
    assert [m.seq for m in stored] == [2, 3, 4]
    assert {m.ts for m in stored} == {NOW}  # stamped with the sending time
    assert [e.payload for e in box.pending(after=1)] == [e.payload for e in committed.entries]
    assert box.last_seq() == 4
    assert sorted(row[0] for row in box.standing(NOW)) == [m.subject for m in stored]
    # The next round removes what the broker acknowledged, in its own transaction.
    box.commit([], topic="t/a", now=NOW, acknowledged=[1, 3])
    assert [e.seq for e in box.pending()] == [2, 4]


def test_a_revocation_in_a_round_removes_the_standing_verdict(tmp_path: Path) -> None:
    box = Outbox(db.connect(tmp_path / "cs.sqlite3"))
    sender = outbound()
    blocked = sender.message(kind=MessageKind.VERDICT, caller="+14155550100", action=Action.BLOCK, score=90, now=NOW)
    box.commit([blocked, sender.revoke("+14155550100", now=NOW)], topic="t/a", now=NOW)
    assert box.standing(NOW) == []
    box.commit([blocked], topic="t/a", now=NOW)
    assert [row[0] for row in box.standing(NOW)] == ["+14155550100"]
    assert box.prune_standing(NOW + 8 * 86400) == 1


def test_a_busy_database_writes_nothing_and_the_link_keeps_its_messages(tmp_path: Path) -> None:
    path = tmp_path / "cs.sqlite3"
    box = Outbox(db.connect(path))
    box.connection.execute("PRAGMA busy_timeout = 0")
    box.commit(_messages(1), topic="t/a", now=NOW)
    other = db.connect(path)
    other.execute("BEGIN IMMEDIATE")  # the server's writer, in the middle of a batch
    try:
        with pytest.raises(sqlite3.OperationalError):
            box.commit(_messages(2), topic="t/a", now=NOW, acknowledged=[1])
    finally:
        other.execute("ROLLBACK")
    assert [e.seq for e in box.pending()] == [1] and box.last_seq() == 1
    committed = box.commit(_messages(2), topic="t/a", now=NOW, acknowledged=[1])
    assert [e.seq for e in committed.entries] == [2, 3] and [e.seq for e in box.pending()] == [2, 3]


def test_a_full_outbox_drops_the_oldest_in_a_round_too(tmp_path: Path) -> None:
    box = Outbox(db.connect(tmp_path / "cs.sqlite3"), max_messages=4)
    box.commit(_messages(3), topic="t/a", now=NOW)
    committed = box.commit(_messages(3), topic="t/a", now=NOW + 1)
    assert committed.dropped == 2 and box.dropped == 2
    assert [e.seq for e in box.pending()] == [3, 4, 5, 6]


def test_the_outbox_has_its_own_file_and_adopts_what_an_older_version_left(tmp_path: Path) -> None:
    node = tmp_path / "cs.sqlite3"
    old = Outbox(db.connect(node))  # an older version: the outbox inside the node database
    old.commit(_messages(2), topic="t/a", now=NOW)
    old.commit([], topic="t/a", now=NOW, acknowledged=[1])
    box = Outbox.open(node)
    assert mesh_database_path(node) == tmp_path / "cs-mesh.sqlite3"
    assert [e.seq for e in box.pending()] == [2] and box.last_seq() == 2
    assert len(box.standing(NOW)) == 2
    assert old.depth() == 0 and old.last_seq() == 0 and old.standing(NOW) == []  # moved, not copied
    assert [e.seq for e in box.commit(_messages(1), topic="t/a", now=NOW).entries] == [3]
    box.connection.close()
    again = Outbox.open(node)  # nothing more to move: the counter stays
    assert again.last_seq() == 3 and [e.seq for e in again.pending()] == [2, 3]


def test_the_node_writer_holding_its_lock_does_not_stop_the_outbox(tmp_path: Path) -> None:
    node = tmp_path / "cs.sqlite3"
    box = Outbox.open(node)
    box.connection.execute("PRAGMA busy_timeout = 0")
    writer = db.connect(node)
    writer.execute("BEGIN IMMEDIATE")  # the server's writer in the middle of a batch
    try:
        assert [e.seq for e in box.commit(_messages(1), topic="t/a", now=NOW).entries] == [1]
    finally:
        writer.execute("ROLLBACK")
