"""`callshield serve --http` as a process: real FastAGI sessions decide, the admin API shows and changes it."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_serve import agi_session, free_port

CONFIG = '[[rules]]\naction = "deny"\npattern = "+1212555*"\n'


def cli(env: dict[str, str], config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callshield", "--config", str(config), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


class HttpServer:
    """A `callshield serve --http` process on free ports, with a token made by `callshield token new`."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.config = tmp / "cs.toml"
        self.config.write_text(CONFIG)
        self.env = {**os.environ, "XDG_DATA_HOME": str(tmp / "data")}
        made = cli(self.env, self.config, "token", "new", "--name", "ops")
        assert made.returncode == 0, made.stderr
        self.token = made.stdout.strip()
        self.token_file = tmp / "data" / "callshield" / "http.tokens"
        self.agi_port, self.http_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.log = tmp / "serve.log"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "callshield",
                "--config",
                str(self.config),
                "serve",
                "--port",
                str(self.agi_port),
                "--http",
                f"127.0.0.1:{self.http_port}",
            ],
            env=self.env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                for port in (self.agi_port, self.http_port):
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                assert self.proc.poll() is None, self.log.read_text()
                time.sleep(0.05)
        raise AssertionError(f"server did not start: {self.log.read_text()}")

    def request(self, method: str, path: str, body: Any = None, *, token: str | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token if token is None else token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=15)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[HttpServer]:
    srv = HttpServer(tmp_path)
    yield srv
    if srv.proc.poll() is None:
        srv.proc.kill()
        srv.proc.wait()


def wait_for(predicate: Any, what: str, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_api_shows_fastagi_decisions_and_changes_the_running_server(server: HttpServer) -> None:
    assert stat.S_IMODE(server.token_file.stat().st_mode) == 0o600
    assert server.request("GET", "/api/v1/decisions", token="")[0] == 401
    blocked = agi_session(server.agi_port, "+12125550111", 1)
    assert blocked["CALLSHIELD_ACTION"] == "block"
    assert agi_session(server.agi_port, "+17735550123", 2)["CALLSHIELD_ACTION"] == "connect"

    def committed() -> list[dict[str, Any]]:
        return list(server.request("GET", "/api/v1/decisions?since=1h")[1]["decisions"])

    decisions = wait_for(lambda: len(committed()) == 2 and committed(), "the decisions were not committed")
    assert [(d["caller"], d["action"], d["reason"]) for d in decisions] == [
        ("+17735550123", "connect", "number:new"),
        ("+12125550111", "block", "denylist:prefix"),
    ]
    assert decisions[1]["id"] == blocked["CALLSHIELD_ID"]

    # a deny entry from the API is in force for the very next call, without waiting for a reload tick
    status, entry = server.request("POST", "/api/v1/lists", {"action": "deny", "pattern": "+17735550123"})
    assert (status, entry["pattern"]) == (201, "+17735550123")
    assert agi_session(server.agi_port, "+17735550123", 3)["CALLSHIELD_ACTION"] == "block"
    status, removed = server.request("DELETE", "/api/v1/lists?pattern=%2B17735550123")
    assert (status, removed["removed"]) == (200, 1)
    assert agi_session(server.agi_port, "+17735550123", 4)["CALLSHIELD_ACTION"] == "connect"

    # the CLI on the same database sees the same list and the same explanation
    status, report = server.request("POST", "/api/v1/reports", {"number": "+12125550111", "note": "robocall"})
    assert (status, report["number"]) == (201, "+12125550111")
    lists = json.loads(cli(server.env, server.config, "lists", "--json").stdout)
    assert [e["pattern"] for e in lists] == ["+1212555*"]
    wait_for(lambda: server.request("GET", "/api/v1/explain/%2B12125550111")[1].get("evidence"), "report not committed")
    via_api = server.request("GET", "/api/v1/explain/%2B12125550111")[1]
    via_cli = json.loads(cli(server.env, server.config, "explain", "+12125550111", "--json").stdout)
    assert via_api["decisions"] == via_cli["decisions"] and via_api["evidence"] == via_cli["evidence"]
    assert via_api["evidence"][0]["source"] == "api:ops"

    actions = server.request("GET", "/api/v1/admin-actions")[1]["actions"]
    assert [(a["actor"], a["action"], a["target"], a["status"]) for a in reversed(actions)] == [
        ("ops", "lists.add", "+17735550123", 201),
        ("ops", "lists.remove", "+17735550123", 200),
        ("ops", "reports.add", "+12125550111", 201),
    ]
    log = server.log.read_text()
    assert "admin action lists.add by ops" in log and server.token not in log
    assert server.stop() == 0


def test_serve_refuses_to_start_without_a_private_token_file(tmp_path: Path) -> None:
    config = tmp_path / "cs.toml"
    config.write_text(f'[http]\nlisten = "127.0.0.1:{free_port()}"\ntoken_file = "{tmp_path / "tokens"}"\n')
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    missing = cli(env, config, "serve", "--port", str(free_port()))
    assert missing.returncode == 3 and "no token file: create one with `callshield token new" in missing.stderr
    (tmp_path / "tokens").write_text("x" * 40 + "\n")
    (tmp_path / "tokens").chmod(0o604)
    readable = cli(env, config, "serve", "--port", str(free_port()))
    assert readable.returncode == 3 and "readable or writable by every user (mode 0604)" in readable.stderr
    assert "Traceback" not in missing.stderr + readable.stderr
    bad = cli(env, config, "serve", "--http", "localhost")
    assert bad.returncode == 2 and "--http: expected HOST:PORT" in bad.stderr
