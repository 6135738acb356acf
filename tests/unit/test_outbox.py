"""The mesh outbox: committed before publishing, removed on acknowledgement, bounded, numbered."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from callshield import db
from callshield.errors import StoreError
from callshield.outbox import Outbox


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
