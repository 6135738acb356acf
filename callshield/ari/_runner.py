"""The ARI connection: one websocket for events, REST for commands, reconnecting for ever.

The runner keeps one HTTP session (basic authentication; the password never goes into a URL that
could end up in a log) for its whole life, opens the event websocket
``ws://HOST:PORT/ari/events?app=NAME`` and feeds every message to the :class:`AriApp`. When the
websocket cannot be opened or drops (Asterisk restarting, network trouble), it tries again after
an exponential backoff with jitter (``reconnect_min`` doubling up to ``reconnect_max``, each wait
drawn from its upper half), so a fleet of nodes does not reconnect in lockstep. While it is down,
Asterisk's ``Stasis()`` fails at once and the sample dialplan connects the call (fail open).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp

from callshield.ari._app import AriApp, AriAppSettings, AriEngine
from callshield.ari._client import AriClient, AriConnectionError, AriResponse, basic_auth
from callshield.ari._requests import AriRequest

__all__ = ["AriConnectSettings", "AriRunner", "backoff_delay", "events_url"]

logger = logging.getLogger(__name__)

FAILURES_LOGGED_EVERY: Final = 10
"""After the first failed attempt of a series, only every Nth is logged at WARNING (others at DEBUG)."""
STABLE_AFTER: Final = 10.0
"""Seconds a websocket must stay open for the backoff to start again from ``reconnect_min``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AriConnectSettings:
    """Where Asterisk's ARI is and how to reach it (times in seconds)."""

    url: str = "http://127.0.0.1:8088"
    """Base URL of Asterisk's HTTP server (``http.conf``); ARI lives under ``/ari``."""
    user: str = "callshield"
    password: str = ""
    """ARI password (``ari.conf``); there is no default that would work with a real ari.conf."""
    app: str = "callshield"
    """The Stasis application name (``Stasis(callshield,inbound)``)."""
    request_timeout: float = 2.0
    """Bound on each REST request."""
    connect_timeout: float = 5.0
    """Bound on opening the websocket."""
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    heartbeat: float = 20.0
    """Websocket ping interval; a dead connection is noticed within about twice this."""
    max_message: int = 1 << 20
    """Largest event accepted, in bytes (a bigger one drops the connection)."""

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"url must be http(s)://HOST:PORT, got {self.url!r}")
        if not self.app or any(c in self.app for c in "/?&#= "):
            raise ValueError(f"app must be a plain name, got {self.app!r}")
        for name in ("request_timeout", "connect_timeout", "reconnect_min", "reconnect_max", "heartbeat"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must be at least reconnect_min")


def events_url(url: str, app: str) -> str:
    """The event websocket URL for the HTTP base ``url``: ``ws://HOST:PORT/ari/events?app=APP``."""
    parts = urlsplit(url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = parts.path.rstrip("/") + "/ari/events"
    return urlunsplit((scheme, parts.netloc, path, urlencode({"app": app, "subscribeAll": "false"}), ""))


def backoff_delay(attempt: int, low: float, high: float, rng: random.Random) -> float:
    """Seconds to wait before reconnect ``attempt`` (0-based): the upper half of ``min(high, low * 2**attempt)``."""
    cap = min(high, low * 2.0 ** min(attempt, 32))
    return cap / 2 + rng.uniform(0.0, cap / 2)


class AriRunner:
    """Runs the Stasis application against one Asterisk until told to stop.

    Usage::

        runner = AriRunner(firewall, AriConnectSettings(url="http://127.0.0.1:8088", password=...))
        await runner.run(stop)   # returns after ``stop`` is set and running channels finished
    """

    def __init__(
        self,
        engine: AriEngine,
        settings: AriConnectSettings | None = None,
        app_settings: AriAppSettings | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings if settings is not None else AriConnectSettings()
        self._client: AriClient | None = None
        self._app = AriApp(engine, self, app_settings, rng=rng)
        self._jitter = random.Random()
        self.connected = asyncio.Event()
        """Set while the event websocket is open."""
        self.connections = 0
        """Websocket connections opened so far."""

    @property
    def app(self) -> AriApp:
        """The application (its stats, for metrics and tests)."""
        return self._app

    @property
    def settings(self) -> AriConnectSettings:
        """The settings the runner was created with."""
        return self._settings

    async def send(self, request: AriRequest) -> AriResponse:
        """Send a REST request through the current session (the application's :class:`AriRest`)."""
        if self._client is None:
            raise AriConnectionError("not connected to ARI")
        return await self._client.send(request)

    async def run(self, stop: asyncio.Event, *, grace: float = 5.0) -> None:
        """Connect and reconnect until ``stop`` is set; then let channels finish within ``grace`` s."""
        settings = self._settings
        headers = {"Authorization": basic_auth(settings.user, settings.password)}
        async with aiohttp.ClientSession(headers=headers) as session:
            self._client = AriClient(session, settings.url, timeout=settings.request_timeout)
            connection = asyncio.create_task(self._connect_forever(session), name="ari-events")
            stopping = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({connection, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (connection, stopping):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                self.connected.clear()
                await self._app.close(grace)  # channels in flight still need REST: before the session closes
                self._client = None

    async def _connect_forever(self, session: aiohttp.ClientSession) -> None:
        settings = self._settings
        url = events_url(settings.url, settings.app)
        loop = asyncio.get_running_loop()
        failures = 0  # attempts since the last connection that held
        while True:
            opened_at: float | None = None
            try:
                async with asyncio.timeout(settings.connect_timeout):
                    ws = await session.ws_connect(
                        url,
                        heartbeat=settings.heartbeat,
                        max_msg_size=settings.max_message,
                        timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=settings.request_timeout),
                    )
                opened_at = loop.time()
                self.connections += 1
                self.connected.set()
                logger.info("ARI connected: %s as application %r", settings.url, settings.app)
                try:
                    await self._receive(ws)
                finally:
                    await ws.close()
                logger.warning("ARI websocket closed by Asterisk (code %s); reconnecting", ws.close_code)
            except aiohttp.WSServerHandshakeError as exc:
                failures += 1
                hint = " (check ari.user and ari.password)" if exc.status == 401 else ""
                self._log_failure(failures, "ARI refused the websocket: %s %s%s", exc.status, exc.message, hint)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                failures += 1
                if opened_at is not None:
                    logger.warning("ARI connection lost: %r; reconnecting", exc)
                else:
                    self._log_failure(failures, "cannot reach ARI at %s: %r", settings.url, exc)
            except Exception:
                failures += 1
                logger.exception("ARI connection failed unexpectedly; reconnecting")
            else:
                failures += 1
            finally:
                if opened_at is not None and loop.time() - opened_at >= STABLE_AFTER:
                    failures = 1  # a connection that held: start again from the shortest wait
                self.connected.clear()
                forgotten = self._app.connection_lost()
                if forgotten:
                    logger.debug("forgot %d finished channels after the websocket closed", forgotten)
            delay = backoff_delay(max(0, failures - 1), settings.reconnect_min, settings.reconnect_max, self._jitter)
            await asyncio.sleep(delay)

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        app = self._app
        async for message in ws:
            if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                app.handle_message(message.data)
            elif message.type is aiohttp.WSMsgType.ERROR:
                raise aiohttp.ClientError(f"websocket error: {ws.exception()!r}")

    @staticmethod
    def _log_failure(failures: int, message: str, *args: object) -> None:
        level = logging.WARNING if failures == 1 or failures % FAILURES_LOGGED_EVERY == 0 else logging.DEBUG
        logger.log(level, message, *args)
