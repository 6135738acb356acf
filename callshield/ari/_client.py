"""The ARI REST client: sends :class:`AriRequest` values over one aiohttp session.

Every request is bounded by ``timeout`` seconds. Results: the response for 2xx; :class:`ChannelGone`
for 404/409 on a channel (hung up, or no longer in the application), :class:`AriHttpError` for any
other status, :class:`AriConnectionError` when Asterisk cannot be reached or does not answer in time.
Response bodies are read up to ``MAX_BODY`` bytes.
"""

from __future__ import annotations

import base64
from typing import Final
from urllib.parse import urlencode

import aiohttp
import msgspec
from yarl import URL

from callshield.ari._requests import AriRequest

__all__ = [
    "AriClient",
    "AriConnectionError",
    "AriError",
    "AriHttpError",
    "AriResponse",
    "ChannelGone",
    "basic_auth",
]

MAX_BODY: Final = 65536
"""Most bytes of a REST response body read."""


class AriError(Exception):
    """A REST request failed."""


class AriConnectionError(AriError):
    """Asterisk could not be reached, or did not answer within the timeout."""


class AriHttpError(AriError):
    """Asterisk answered with an error status."""

    def __init__(self, request: AriRequest, status: int, body: bytes) -> None:
        super().__init__(f"{request.method} {request.template} -> {status} {body[:200]!r}")
        self.status = status
        self.body = body


class ChannelGone(AriHttpError):
    """404 or 409: the channel hung up, or is no longer in the application."""


class AriResponse(msgspec.Struct, frozen=True):
    """A successful response: status and (bounded) body."""

    status: int
    body: bytes = b""


def basic_auth(user: str, password: str) -> str:
    """The ``Authorization`` header value for HTTP basic authentication."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


class AriClient:
    """REST calls to ``base_url`` (e.g. ``http://127.0.0.1:8088``; ARI lives under ``/ari``)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, *, timeout: float = 2.0) -> None:
        self._session = session
        self._base = base_url.rstrip("/") + "/ari"
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def send(self, request: AriRequest) -> AriResponse:
        """Send one request; see the module docstring for what it raises."""
        url = self._base + request.path
        if request.query:
            url += "?" + urlencode(request.query)
        try:
            async with self._session.request(
                request.method, URL(url, encoded=True), timeout=self._timeout, allow_redirects=False
            ) as response:
                body = await response.content.read(MAX_BODY)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise AriConnectionError(f"{request.method} {request.template}: {exc!r}") from None
        if 200 <= status < 300:
            return AriResponse(status, body)
        if status in (404, 409) and request.template.startswith("/channels/"):
            raise ChannelGone(request, status, body)
        raise AriHttpError(request, status, body)
