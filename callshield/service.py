"""``callshield serve``: the node process — FastAGI server, database writer, upkeep and signals.

Signals: SIGTERM/SIGINT stop accepting calls, let running sessions finish (``grace``), flush and exit;
SIGHUP reloads the config file (an invalid new config is refused and the old one stays).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import aiosqlite

from callshield import db
from callshield.agi.server import AgiServer, AgiServerSettings
from callshield.config import Config, load_config
from callshield.engine import Firewall
from callshield.errors import ConfigError

log = logging.getLogger("callshield")
MAINTENANCE_INTERVAL = 1.0
SHUTDOWN_GRACE = 5.0


class JsonFormatter(logging.Formatter):
    """One JSON object per log line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def setup_logging(config: Config) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if config.logging.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.logging.level.upper())


def agi_settings(config: Config, *, host: str | None = None, port: int | None = None) -> AgiServerSettings:
    agi = config.agi
    return AgiServerSettings(
        host=host or agi.host,
        port=agi.port if port is None else port,
        max_line=agi.max_line,
        header_timeout=agi.header_timeout,
        command_timeout=agi.command_timeout,
        decision_timeout=agi.decision_timeout,
        max_sessions=agi.max_sessions,
        cause_default=config.policy.block_cause,
        max_buffer=max(65536, agi.max_line),
    )


class Node:
    """A running callshield node."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | None,
        database: Path,
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.database = database
        self.firewall = Firewall.open(config, path=database)
        self.server = AgiServer(self.firewall, agi_settings(config, host=host, port=port))
        self.stop = asyncio.Event()
        self._writer: aiosqlite.Connection | None = None

    async def run(self) -> None:
        self._writer = await aiosqlite.connect(self.database, isolation_level=None)
        for pragma in db.CONNECTION_PRAGMAS:
            await self._writer.execute(pragma)
        await self.server.start()
        self._install_signals()
        gc.collect()
        gc.freeze()  # start-up objects never need scanning again: shorter GC pauses under load
        log.info(
            "callshield listening for FastAGI on %s:%s (node %s, mode %s, database %s)",
            self.server.settings.host,
            self.server.port,
            self.config.node.node_name,
            self.config.policy.mode.value,
            self.database,
        )
        tasks = [asyncio.create_task(self._flush_loop()), asyncio.create_task(self._maintenance_loop())]
        try:
            await self.stop.wait()
        finally:
            log.info("stopping: finishing sessions")
            await self.server.close(SHUTDOWN_GRACE)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.firewall.flush_async(self._writer, snapshot=True)
            await self._writer.close()
            self.firewall.close()
            log.info("stopped")

    async def _flush_loop(self) -> None:
        assert self._writer is not None
        while True:
            await asyncio.sleep(self.config.storage.flush_interval)
            await self.firewall.flush_async(self._writer)

    async def _maintenance_loop(self) -> None:
        while True:
            await asyncio.sleep(MAINTENANCE_INTERVAL)
            try:
                self.firewall.maintenance()
            except Exception:
                log.exception("maintenance failed")

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)
        loop.add_signal_handler(signal.SIGINT, self.stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)

    def reload(self) -> None:
        """Re-read the config file; keep the running config if the new one is invalid."""
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("config reload refused, keeping the running config: %s", exc)
            return
        for name, old_value, new_value in _restart_settings(self.config, new):
            if old_value != new_value:
                log.warning("%s changed: takes effect at the next restart", name)
        self.firewall.apply_config(new)
        self.config = new
        log.info("config reloaded (%d rules, mode %s)", len(self.firewall.rules), new.policy.mode.value)


def _restart_settings(old: Config, new: Config) -> list[tuple[str, object, object]]:
    """Settings a reload cannot apply to a running node (its listener, database and memory layout)."""
    return [
        ("[storage]", old.storage, new.storage),
        ("[agi]", old.agi, new.agi),
        ("[node]", old.node, new.node),
        ("reputation.half_life", old.reputation.half_life, new.reputation.half_life),
        ("reputation.bad_threshold", old.reputation.bad_threshold, new.reputation.bad_threshold),
        ("patterns.window", old.patterns.window, new.patterns.window),
        ("patterns.max_callers", old.patterns.max_callers, new.patterns.max_callers),
        ("patterns.max_events", old.patterns.max_events, new.patterns.max_events),
        ("patterns.open_call", old.patterns.open_call, new.patterns.open_call),
    ]


def serve(
    config_path: str | None, *, database: str | None = None, host: str | None = None, port: int | None = None
) -> None:
    """Run a node until SIGTERM/SIGINT."""
    config = load_config(config_path)
    setup_logging(config)
    path = Path(database) if database else config.storage.database_path()
    node = Node(config, config_path=config_path, database=path, host=host, port=port)
    try:
        import uvloop
    except ImportError:
        asyncio.run(node.run())
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(node.run())
