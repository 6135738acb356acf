"""The admin HTTP API and dashboard (``callshield serve --http HOST:PORT``).

- :class:`HttpListener` runs the aiohttp application in the node's event loop;
- :class:`HttpContext` is what it works on (the running firewall, config, token set);
- :func:`load_tokens` / :func:`new_token` manage the bearer-token file;
- :func:`make_app` builds the application (tests use it with aiohttp's test client).
"""

from callshield.http._app import HttpContext, HttpListener, make_app
from callshield.http._auth import TokenFileError, TokenSet, load_tokens, new_token, token_id
from callshield.http._openapi import document as openapi_document

__all__ = [
    "HttpContext",
    "HttpListener",
    "TokenFileError",
    "TokenSet",
    "load_tokens",
    "make_app",
    "new_token",
    "openapi_document",
    "token_id",
]
