"""The aiohttp application: context, middlewares (errors as JSON, bearer auth, security headers),
the dashboard's static files, and starting/stopping the listener in the node's event loop."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from callshield import db
from callshield.config import Config, parse_listen
from callshield.engine import Firewall
from callshield.http._auth import TokenSet, load_tokens
from callshield.http._trail import ActionTrail

log = logging.getLogger("callshield.http")

API_PREFIX = "/api/v1/"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_STATIC = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "app.css": "text/css",
}
AUTH_LOG_INTERVAL = 10.0
"""At most one log line per this many seconds about refused tokens (with the count in between)."""

_T = TypeVar("_T")
dumps = partial(json.dumps, default=str, ensure_ascii=False)


class ApiError(Exception):
    """An error answered as JSON: ``{"error": message, "field": field}`` with ``status``."""

    def __init__(self, status: int, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


@dataclass
class HttpContext:
    """What the API handlers work on: the node's running firewall and its surroundings."""

    firewall: Firewall
    config: Callable[[], Config]
    """The running config (it changes on SIGHUP)."""
    config_path: str | None
    database: Path
    tokens: TokenSet
    token_path: Path
    mesh_status: Callable[[], dict[str, object]] | None = None
    """The running mesh link's live status, when the mesh is on."""
    started: float = field(default_factory=time.time)
    writes: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="callshield-admin")
    )
    """Admin writes run here on their own connection: a busy writer never blocks the event loop."""
    _conn: sqlite3.Connection | None = None
    _refused: int = 0
    _refused_logged: float = 0.0

    @property
    def conn(self) -> sqlite3.Connection:
        """The admin writes' connection (used only on the ``writes`` thread)."""
        if self._conn is None:
            self._conn = db.connect(self.database)
        return self._conn

    @property
    def trail(self) -> ActionTrail:
        return ActionTrail(self.conn)

    async def write(self, func: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``func(connection)`` on the admin writes' thread."""
        return await asyncio.get_running_loop().run_in_executor(self.writes, func, self.conn)

    def reload_tokens(self) -> None:
        """Re-read the token file (SIGHUP); keep the current tokens if it became unusable."""
        try:
            self.tokens = load_tokens(self.token_path)
        except Exception as exc:
            log.error("token file reload refused, keeping the current tokens: %s", exc)
            return
        log.info("admin API tokens reloaded (%d)", len(self.tokens))

    def refused(self, remote: str | None, why: str) -> None:
        self._refused += 1
        now = time.monotonic()
        if now - self._refused_logged >= AUTH_LOG_INTERVAL:
            log.warning("admin API: refused a request from %s (%s); %d refused so far", remote, why, self._refused)
            self._refused_logged = now

    def close(self) -> None:
        self.writes.shutdown(wait=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None


CONTEXT = web.AppKey("context", HttpContext)


def context(request: web.Request) -> HttpContext:
    return request.app[CONTEXT]


def error_response(status: int, message: str, *, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message, "status": status}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status, dumps=dumps)


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error as JSON; a bug is logged with its traceback and answered 500 without one."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, field=exc.field)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(exc.status, exc.reason)
        for name in ("Allow", "WWW-Authenticate"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except Exception:
        log.exception("admin API: %s %s failed", request.method, request.path)
        return error_response(500, "internal error (logged on the server)")


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every ``/api/`` request needs ``Authorization: Bearer TOKEN``; the dashboard's files do not."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    ctx = context(request)
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        ctx.refused(request.remote, "no bearer token")
        return _unauthorized("a bearer token is required (Authorization: Bearer TOKEN)", invalid=False)
    actor = ctx.tokens.identify(presented.strip())
    if actor is None:
        ctx.refused(request.remote, "unknown token")
        return _unauthorized("the token is not valid", invalid=True)
    return await handler(request)


def actor_of(request: web.Request) -> str:
    """The name (or short hash) of the token that authenticated ``request``."""
    _, _, presented = request.headers.get("Authorization", "").partition(" ")
    return context(request).tokens.identify(presented.strip()) or "?"


def _unauthorized(message: str, *, invalid: bool) -> web.Response:
    response = error_response(401, message)
    challenge = 'Bearer realm="callshield"'
    if invalid:
        challenge += ', error="invalid_token"'
    response.headers["WWW-Authenticate"] = challenge
    return response


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "no-referrer"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Cross-Origin-Resource-Policy"] = "same-origin"
    headers["Server"] = "callshield"
    headers.setdefault("Cache-Control", "no-store" if request.path.startswith("/api/") else "no-cache")


def _static_handler(name: str, content_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    body = resources.files("callshield.http").joinpath("dashboard", name).read_bytes()

    async def serve(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, charset="utf-8")

    return serve


def make_app(ctx: HttpContext, *, max_body: int = 65536) -> web.Application:
    """The admin application: ``/api/v1/`` (see :mod:`callshield.http._api`) and the dashboard."""
    from callshield.http._api import ROUTES

    app = web.Application(middlewares=[errors_middleware, auth_middleware], client_max_size=max_body)
    app[CONTEXT] = ctx
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    app.router.add_get("/", _static_handler("index.html", _STATIC["index.html"]), allow_head=False)
    for name, content_type in _STATIC.items():
        if name != "index.html":
            app.router.add_get(f"/static/{name}", _static_handler(name, content_type), allow_head=False)
    app.on_response_prepare.append(_security_headers)
    return app


class HttpListener:
    """The admin API's listener in the node's event loop."""

    def __init__(self, ctx: HttpContext, listen: str, *, max_body: int = 65536) -> None:
        self.context = ctx
        self.host, self.port = parse_listen(listen)
        self._runner = web.AppRunner(make_app(ctx, max_body=max_body), access_log=None, handle_signals=False)

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        addresses = self._runner.addresses  # the bound port, for port 0
        if addresses:
            self.port = int(addresses[0][1])
        if self.host not in {"127.0.0.1", "::1", "localhost"}:
            log.warning("the admin API listens on %s, not loopback: put TLS in front of it", self.host)
        log.info("admin API and dashboard on http://%s:%d/", self.host, self.port)

    async def close(self) -> None:
        await self._runner.cleanup()
        self.context.close()
