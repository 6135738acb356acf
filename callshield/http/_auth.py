"""Bearer tokens for the admin API: the token file, its checks, and constant-time lookup.

The file holds one token per line, ``NAME:TOKEN`` or just ``TOKEN``; blank lines and ``#`` comments
are ignored. A token is identified in the audit trail by its name, else by ``token-`` and the first
8 hex digits of its SHA-256: the token itself is never logged or stored anywhere else.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from callshield.errors import ConfigError

MIN_TOKEN_LENGTH = 20
_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]+")
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,32}")


class TokenFileError(ConfigError):
    """The token file is missing, empty, readable by others, or has a malformed line."""


@dataclass(frozen=True, slots=True)
class Token:
    name: str
    """The token's name in the file, else ``token-`` + 8 hex digits of its hash: safe to log."""
    digest: bytes
    """SHA-256 of the token."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def token_id(token: str) -> str:
    """The loggable id of an unnamed token."""
    return "token-" + _digest(token).hex()[:8]


class TokenSet:
    """The accepted tokens; :meth:`identify` compares in constant time."""

    def __init__(self, tokens: list[Token]) -> None:
        if not tokens:
            raise ValueError("a token set needs at least one token")
        self._tokens = tuple(tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    def identify(self, presented: str) -> str | None:
        """The name of the token ``presented`` matches, or None. Every stored token is compared,
        each with :func:`hmac.compare_digest` over SHA-256 digests (fixed length), so the time taken
        depends neither on how much of a token matched nor on which token it was."""
        digest = _digest(presented)
        found: str | None = None
        for token in self._tokens:
            if hmac.compare_digest(digest, token.digest):
                found = token.name
        return found


def parse_tokens(text: str, *, source: str = "<tokens>") -> list[Token]:
    """Parse token file ``text``; raise :class:`TokenFileError` naming the line of a bad entry."""
    tokens: list[Token] = []
    names: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, secret = line.rpartition(":")
        if name and not _NAME.fullmatch(name):
            raise TokenFileError(f"{source}:{number}: a token name is 1-32 letters, digits or _ . @ -")
        if not _TOKEN.fullmatch(secret) or len(secret) < MIN_TOKEN_LENGTH:
            raise TokenFileError(
                f"{source}:{number}: a token is at least {MIN_TOKEN_LENGTH} characters of A-Z a-z 0-9 . _ ~ + / = - "
                "(make one with `callshield token new`)"
            )
        label = name or token_id(secret)
        if label in names:
            raise TokenFileError(f"{source}:{number}: the token name {label!r} is used twice")
        names.add(label)
        tokens.append(Token(name=label, digest=_digest(secret)))
    return tokens


def check_private(path: Path) -> None:
    """Refuse a token file that other users may read or write (group access is allowed)."""
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        raise TokenFileError(f"{path}: the token file is not a regular file")
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        raise TokenFileError(
            f"{path}: the token file is readable or writable by every user (mode {stat.S_IMODE(mode):04o}): "
            f"chmod 600 {path}"
        )


def load_tokens(path: Path) -> TokenSet:
    """Read and check the token file; raise :class:`TokenFileError` with a clear message."""
    try:
        check_private(path)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TokenFileError(
            f"{path}: no token file: create one with `callshield token new {path}` (the admin API needs a token)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"{path}: cannot read the token file: {exc}") from None
    tokens = parse_tokens(text, source=str(path))
    if not tokens:
        raise TokenFileError(f"{path}: the token file has no token: add one with `callshield token new {path}`")
    return TokenSet(tokens)


def new_token(path: Path, *, name: str = "") -> str:
    """Append a new random token (``NAME:TOKEN`` when named) to ``path``, creating it with mode 0600
    (and its directory with 0700); return the token. Refuses a file readable by others."""
    if name and not _NAME.fullmatch(name):
        raise TokenFileError(f"token name {name!r}: 1-32 letters, digits or _ . @ -")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    existing = ""
    if path.exists():
        check_private(path)
        existing = path.read_text(encoding="utf-8")
        taken = {t.name for t in parse_tokens(existing, source=str(path))}
        if name and name in taken:
            raise TokenFileError(f"{path}: a token named {name!r} is already there")
    token = secrets.token_urlsafe(32)
    line = f"{name}:{token}" if name else token
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        if existing and not existing.endswith("\n"):
            out.write("\n")
        out.write(line + "\n")
    return token
