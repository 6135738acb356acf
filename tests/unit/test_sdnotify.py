"""sd_notify over a real unix datagram socket (a path and the abstract namespace)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from callshield.sdnotify import Notifier


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.settimeout(2)
    yield sock, str(path)
    sock.close()


def receive(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def test_ready_status_reloading_stopping(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier(path)
    assert notifier.enabled
    assert notifier.ready("FastAGI on 127.0.0.1:4573\nsecond line")
    assert receive(sock) == {"READY": "1", "STATUS": "FastAGI on 127.0.0.1:4573 second line"}
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.reloading()
    got = receive(sock)
    assert got["RELOADING"] == "1" and before <= int(got["MONOTONIC_USEC"]) <= before + 2_000_000
    assert notifier.stopping() and receive(sock) == {"STOPPING": "1"}
    assert notifier.watchdog() and receive(sock) == {"WATCHDOG": "1"}
    assert notifier.sent == 4


def test_abstract_namespace() -> None:
    name = f"callshield-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(2)
        assert Notifier("@" + name).ready()
        assert receive(sock) == {"READY": "1"}


def test_nothing_happens_without_a_socket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not Notifier().enabled and not Notifier().ready()
    assert not Notifier("relative/path").enabled
    gone = Notifier(str(tmp_path / "nobody-listens"))
    assert gone.enabled and not gone.ready()  # a failed send is not an error
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "x"))
    assert Notifier().enabled
