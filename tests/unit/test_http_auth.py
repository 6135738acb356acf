"""The admin API's token file: creation, checks that refuse to start, constant-time identification."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from callshield.errors import ConfigError
from callshield.http import TokenFileError, load_tokens, new_token, token_id
from callshield.http._auth import parse_tokens


def test_new_token_creates_a_private_file_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "tokens"
    first = new_token(path, name="alice")
    second = new_token(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_text().splitlines() == [f"alice:{first}", second]
    tokens = load_tokens(path)
    assert len(tokens) == 2
    assert tokens.identify(first) == "alice"
    assert tokens.identify(second) == token_id(second) == "token-" + hashlib.sha256(second.encode()).hexdigest()[:8]
    assert tokens.identify(first[:-1]) is None and tokens.identify("") is None
    with pytest.raises(TokenFileError, match="already there"):
        new_token(path, name="alice")


def test_refused_token_files_have_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    with pytest.raises(TokenFileError, match="no token file: create one with `callshield token new"):
        load_tokens(path)
    path.write_text("# only a comment\n\n")
    path.chmod(0o600)
    with pytest.raises(TokenFileError, match="has no token"):
        load_tokens(path)
    path.write_text("a" * 40 + "\n")
    path.chmod(0o644)
    with pytest.raises(TokenFileError, match=r"readable or writable by every user \(mode 0644\): chmod 600"):
        load_tokens(path)
    with pytest.raises(TokenFileError, match="readable or writable by every user"):
        new_token(path)  # nor appended to
    path.chmod(0o640)  # a group of admins may share it
    assert len(load_tokens(path)) == 1
    assert issubclass(TokenFileError, ConfigError)  # serve exits with the configuration error code


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("short\n", ":1: a token is at least 20"),
        ("# c\nbad name:" + "a" * 30 + "\n", ":2: a token name"),
        ("x:" + "a" * 30 + "\nx:" + "b" * 30 + "\n", ":2: the token name 'x' is used twice"),
        ("a" * 30 + " trailing words\n", ":1: a token is"),
    ],
)
def test_malformed_lines_are_named(text: str, message: str) -> None:
    with pytest.raises(TokenFileError, match=message):
        parse_tokens(text, source="tokens")


def test_names_and_hashes_are_what_gets_logged() -> None:
    tokens = parse_tokens("ops.team@pbx1:" + "t" * 32 + "\n" + "u" * 32)
    assert [t.name for t in tokens] == ["ops.team@pbx1", token_id("u" * 32)]
    assert all("t" * 32 not in t.name and "u" * 32 not in t.name for t in tokens)
