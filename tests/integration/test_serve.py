"""`callshield serve` as a process: FastAGI verdicts, CLI changes picked up, SIGHUP reload, graceful stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HEADER = (
    "agi_network: yes\nagi_network_script: inbound\nagi_request: agi://127.0.0.1/inbound\n"
    "agi_channel: PJSIP/callshield-trunk-00000001\nagi_language: en\nagi_type: PJSIP\nagi_uniqueid: 1.{n}\n"
    "agi_callerid: {caller}\nagi_calleridname: Test\nagi_callingpres: 0\nagi_dnid: +13125550100\n"
    "agi_context: callshield-check\nagi_extension: +13125550100\nagi_priority: 1\n\n"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def agi_session(port: int, caller: str, n: int = 1) -> dict[str, str]:
    """Speak Asterisk's side: send the header, answer every command, collect the variables set."""
    variables: dict[str, str] = {}
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(HEADER.format(caller=caller, n=n).encode())
        stream = sock.makefile("rwb")
        while line := stream.readline():
            parts = line.decode().strip().split(" ", 3)
            if parts[:2] == ["SET", "VARIABLE"]:
                variables[parts[2]] = parts[3].strip('"')
            elif parts[:2] == ["EXEC", "MSet"]:  # one command: NAME=value,NAME=value,...
                variables.update(pair.split("=", 1) for pair in parts[2].split(","))  # type: ignore[misc]
            stream.write(b"200 result=1\n")
            stream.flush()
    return variables


class Server:
    def __init__(self, tmp: Path, config: Path) -> None:
        self.tmp, self.config, self.port = tmp, config, free_port()
        self.env = {**os.environ, "XDG_DATA_HOME": str(tmp / "data")}
        self.log = tmp / "serve.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "callshield", "--config", str(config), "serve", "--port", str(self.port)],
            env=self.env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"server did not start: {self.log.read_text()}")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "callshield", "--config", str(self.config), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    config = tmp_path / "cs.toml"
    config.write_text('[[rules]]\naction = "deny"\npattern = "+1212555*"\ncause = 17\n')
    srv = Server(tmp_path, config)
    yield srv
    if srv.proc.poll() is None:
        srv.proc.kill()
        srv.proc.wait()


def test_verdicts_over_fastagi(server: Server) -> None:
    blocked = agi_session(server.port, "+12125550111")
    assert (blocked["CALLSHIELD_ACTION"], blocked["CALLSHIELD_REASON"], blocked["CALLSHIELD_CAUSE"]) == (
        "block",
        "denylist:prefix",
        "17",
    )
    assert blocked["CALLSHIELD_SCORE"] == "100" and blocked["CALLSHIELD_ID"]
    clean = agi_session(server.port, "+17735550123")
    assert clean["CALLSHIELD_ACTION"] == "connect"


def test_cli_changes_reach_the_running_server(server: Server) -> None:
    assert agi_session(server.port, "+14155550123")["CALLSHIELD_ACTION"] == "connect"
    assert server.cli("deny", "+14155550123").returncode == 0
    deadline = time.monotonic() + 5
    while agi_session(server.port, "+14155550123")["CALLSHIELD_ACTION"] != "block":
        assert time.monotonic() < deadline, "the server did not pick up the new deny entry"
        time.sleep(0.2)


def test_sighup_reload_refuses_a_bad_config_and_takes_a_good_one(server: Server) -> None:
    server.config.write_text("[policy]\nscreen_at = 'nonsense'\n")
    server.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert agi_session(server.port, "+12125550111")["CALLSHIELD_ACTION"] == "block"  # old config kept
    server.config.write_text('[[rules]]\naction = "allow"\npattern = "+1212555*"\n')
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while agi_session(server.port, "+12125550111")["CALLSHIELD_ACTION"] != "connect":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    log = server.log.read_text()
    assert "config reload refused" in log and "screen_at" in log


def test_graceful_stop_keeps_every_decision(server: Server) -> None:
    ids = [agi_session(server.port, "+12125550111", n)["CALLSHIELD_ID"] for n in range(20)]
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=15) == 0
    explained = json.loads(server.cli("explain", "+12125550111", "--json", "--limit", "50").stdout)
    assert {d["id"] for d in explained["decisions"]} >= set(ids)


def test_hostile_client_does_not_stop_the_server(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"\x00\xff" * 10_000 + b"agi_x" * 5000)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"agi_network: yes\n")  # never finishes the header
        assert agi_session(server.port, "+12125550111")["CALLSHIELD_ACTION"] == "block"
