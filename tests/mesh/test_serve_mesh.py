"""Two real `callshield serve` processes sharing a verdict through the real Mosquitto.

A FastAGI call blocked on node A (a deny rule there) makes node B screen the same caller; the CLI's
`mesh status` on B names A as a peer; SIGTERM leaves A's status `offline` (retained).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

from tests.integration.test_serve import Server, agi_session

from .broker import Broker

KEY = "44" * 32
SPAMMER = "+17185550199"


def node_config(tmp: Path, name: str, broker: Broker, cluster: str, extra: str = "") -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(
        f"""
[node]
name = "{name}"
[storage]
path = "{tmp / name / "cs.sqlite3"}"
[mesh]
enabled = true
cluster = "{cluster}"
host = "{broker.host}"
port = {broker.listener_port("plain")}
keys = [{{ id = "k1", secret = "{KEY}" }}]
{extra}
"""
    )
    return path


def wait_for(probe: object, timeout: float = 10.0) -> None:
    assert callable(probe)
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_two_serve_processes_share_a_block(mosquitto: Broker, cluster: str, tmp_path: Path) -> None:
    deny = f'[[rules]]\naction = "deny"\npattern = "{SPAMMER}"\n'
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    a = Server(tmp_path / "a", node_config(tmp_path, "a", mosquitto, cluster, deny))
    b = Server(tmp_path / "b", node_config(tmp_path, "b", mosquitto, cluster))
    try:
        assert agi_session(b.port, SPAMMER)["CALLSHIELD_ACTION"] == "connect"

        def b_knows_a() -> bool:
            out = b.cli("mesh", "status", "--json")
            data = json.loads(out.stdout) if out.returncode == 0 else {}
            return bool(data.get("server_running")) and any(p["node"] == "a" for p in data.get("peers", []))

        wait_for(lambda: json.loads(a.cli("mesh", "status", "--json").stdout).get("connected") is True)
        assert agi_session(a.port, SPAMMER)["CALLSHIELD_ACTION"] == "block"
        wait_for(b_knows_a)
        verdict = agi_session(b.port, SPAMMER)
        # Screened on A's word alone (one peer), and this stand-in Asterisk presses no key: blocked.
        assert verdict["CALLSHIELD_REASON"] == "reputation:peer"
        assert (verdict["CALLSHIELD_SCREEN"], verdict["CALLSHIELD_ACTION"]) == ("timeout", "block")
        explained = json.loads(b.cli("explain", SPAMMER, "--json").stdout)
        assert [(p["node"], p["kind"]) for p in explained["peers"]] == [("a", "block")]
        a.proc.send_signal(signal.SIGTERM)
        assert a.proc.wait(timeout=15) == 0
        assert asyncio.run(_retained_status(mosquitto, f"callshield/v1/{cluster}/nodes/a/status")) == b"offline"
    finally:
        for server in (a, b):
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait()


async def _retained_status(broker: Broker, topic: str) -> bytes:
    async with broker.client() as client:
        await client.subscribe(topic, qos=1)
        async with asyncio.timeout(5):
            async for message in client.messages:
                payload = message.payload
                return payload if isinstance(payload, bytes) else b""
    return b""
