"""The ARI runner against a small aiohttp server standing in for Asterisk: auth, events, REST, reconnects."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from callshield.ari import AriAppSettings, AriConnectSettings, AriRunner, backoff_delay, basic_auth, events_url
from tests.conftest import FirewallFactory

AUTH = basic_auth("callshield", "secret")


class FakeAsterisk:
    """``/ari/events`` sends each connection one StasisStart then closes; REST calls are recorded."""

    def __init__(self) -> None:
        self.rest: list[str] = []
        self.connections = 0
        self.refused = 0
        self.close_after_start = True

    def start_event(self, channel: str) -> str:
        return json.dumps(
            {
                "type": "StasisStart",
                "timestamp": "2026-11-28T05:55:52.478+0000",
                "args": ["inbound"],
                "channel": {
                    "id": channel,
                    "name": "PJSIP/trunk-00000001",
                    "caller": {"name": "", "number": "+16175550123"},
                    "dialplan": {"context": "c", "exten": "+18005550100", "priority": 1},
                },
            }
        )

    async def events(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != AUTH or request.query.get("app") != "callshield":
            self.refused += 1
            return web.Response(status=401)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        await ws.send_str("garbage")  # counted, never fatal
        await ws.send_str(self.start_event(f"chan-{self.connections}"))
        if self.close_after_start:
            await asyncio.sleep(0.2)
            await ws.close()
        else:
            async for message in ws:
                if message.type is WSMsgType.CLOSE:
                    break
        return ws

    async def rest_call(self, request: web.Request) -> web.Response:
        assert request.headers.get("Authorization") == AUTH
        self.rest.append(f"{request.method} {request.path}?{request.query_string}")
        if request.method == "GET":
            return web.json_response({"value": "allowed"})
        return web.Response(status=204)


@pytest.fixture
async def asterisk() -> AsyncIterator[tuple[FakeAsterisk, str]]:
    fake = FakeAsterisk()
    app = web.Application()
    app.router.add_get("/ari/events", fake.events)
    app.router.add_route("*", "/ari/channels/{tail:.*}", fake.rest_call)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield fake, f"http://127.0.0.1:{port}"
    await runner.cleanup()


def settings(url: str, **extra: Any) -> AriConnectSettings:
    options: dict[str, Any] = {"password": "secret", "reconnect_min": 0.05, "reconnect_max": 0.2, **extra}
    return AriConnectSettings(url=url, **options)


async def wait_until(probe: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not probe():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_events_drive_rest_calls_and_the_runner_reconnects(
    asterisk: tuple[FakeAsterisk, str], make_firewall: FirewallFactory
) -> None:
    fake, url = asterisk
    runner = AriRunner(make_firewall(""), settings(url), AriAppSettings(feedback_delay=0.0), rng=random.Random(1))
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop, grace=1.0))
    await wait_until(lambda: fake.connections >= 2 and any("chan-2/continue" in line for line in fake.rest))
    stop.set()
    await asyncio.wait_for(task, 5.0)
    assert "POST /ari/channels/chan-1/continue?" in fake.rest
    first_variable = "POST /ari/channels/chan-1/variable?variable=CALLSHIELD_ID&value="
    assert any(line.startswith(first_variable) for line in fake.rest)
    assert runner.connections >= 2
    assert runner.app.stats.malformed_events >= 2
    assert not runner.connected.is_set()


async def test_stop_while_connected_returns_promptly(
    asterisk: tuple[FakeAsterisk, str], make_firewall: FirewallFactory
) -> None:
    fake, url = asterisk
    fake.close_after_start = False
    runner = AriRunner(make_firewall(""), settings(url))
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop, grace=1.0))
    await wait_until(runner.connected.is_set)
    await wait_until(lambda: any("continue" in line for line in fake.rest))
    stop.set()
    await asyncio.wait_for(task, 3.0)
    assert runner.connections == 1


async def test_wrong_password_and_unreachable_asterisk_are_retried(
    asterisk: tuple[FakeAsterisk, str], make_firewall: FirewallFactory, caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = asterisk
    runner = AriRunner(make_firewall(""), settings(url, password="wrong"))
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop, grace=0.5))
    await wait_until(lambda: fake.refused >= 3)
    stop.set()
    await asyncio.wait_for(task, 3.0)
    assert fake.connections == 0
    assert "check ari.user and ari.password" in caplog.text
    down = AriRunner(make_firewall(""), settings("http://127.0.0.1:9"))  # nothing listens on port 9
    stop2 = asyncio.Event()
    task2 = asyncio.create_task(down.run(stop2, grace=0.5))
    await asyncio.sleep(0.3)
    stop2.set()
    await asyncio.wait_for(task2, 3.0)
    assert down.connections == 0


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(3)
    delays = [backoff_delay(n, 0.5, 30.0, rng) for n in range(12)]
    for n, delay in enumerate(delays):
        cap = min(30.0, 0.5 * 2**n)
        assert cap / 2 <= delay <= cap
    assert max(delays) <= 30.0 and delays[-1] >= 15.0
    assert len({round(backoff_delay(3, 0.5, 30.0, rng), 6) for _ in range(20)}) > 1  # jittered
    assert backoff_delay(10_000, 0.5, 30.0, rng) <= 30.0


def test_events_url_and_settings() -> None:
    assert events_url("http://127.0.0.1:8088", "callshield") == (
        "ws://127.0.0.1:8088/ari/events?app=callshield&subscribeAll=false"
    )
    assert events_url("https://pbx.example:8089/", "cs").startswith("wss://pbx.example:8089/ari/events?app=cs")
    with pytest.raises(ValueError, match="url"):
        AriConnectSettings(url="ftp://x")
    with pytest.raises(ValueError, match="app"):
        AriConnectSettings(app="a&b")
    with pytest.raises(ValueError, match="reconnect_max"):
        AriConnectSettings(reconnect_min=5, reconnect_max=1)
