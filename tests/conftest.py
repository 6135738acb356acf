"""Shared fixtures: an engine on a fresh database with a manual clock, and the shared reference data."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from callshield import db
from callshield.clock import ManualClock
from callshield.config import Config, parse_config
from callshield.engine import Firewall

START = 1_795_000_000.0  # 2026-11-18, a Wednesday


def shared_data() -> Path:
    """The reference data folder (``../shared/data`` beside the repository, or $CALLSHIELD_SHARED_DATA)."""
    env = os.environ.get("CALLSHIELD_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def need_shared(*parts: str) -> Path:
    path = shared_data().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data {path} is not available on this machine")
    return path


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


FirewallFactory = Callable[..., Firewall]


@pytest.fixture
def make_firewall(tmp_path: Path, clock: ManualClock) -> Iterator[FirewallFactory]:
    opened: list[Firewall] = []

    def make(toml: str = "", *, path: Path | None = None, config: Config | None = None) -> Firewall:
        cfg = config if config is not None else parse_config(toml)
        fw = Firewall(config=cfg, conn=db.connect(path or tmp_path / "cs.sqlite3"), clock=clock)
        opened.append(fw)
        return fw

    yield make
    for fw in opened:
        with contextlib.suppress(sqlite3.ProgrammingError):  # already closed by the test
            fw.close()
