"""``callshield serve`` / ``callshield ari``: the node process — FastAGI server and/or ARI app,
database writer, upkeep and signals.

Signals: SIGTERM/SIGINT stop accepting calls, let running sessions finish (``grace``), flush and exit;
SIGHUP reloads the config file (an invalid new config is refused and the old one stays).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from callshield import db
from callshield.adapter import DecisionEngine
from callshield.agi.server import AgiServer, AgiServerSettings
from callshield.ari import AriAppSettings, AriConnectSettings, AriRunner
from callshield.config import Config, load_config
from callshield.decisionlog import DecisionLog
from callshield.engine import Firewall
from callshield.errors import ConfigError
from callshield.http import HttpContext, HttpListener, load_tokens
from callshield.meshlink import MeshLink
from callshield.metrics import DecisionMetrics, MetricsServer, NodeCollector, node_registry
from callshield.observed import ObservedEngine
from callshield.outbox import Outbox
from callshield.sdnotify import Notifier

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
        mset=agi.mset,
    )


def ari_settings(
    config: Config,
    *,
    url: str | None = None,
    user: str | None = None,
    password: str | None = None,
    app: str | None = None,
) -> tuple[AriConnectSettings, AriAppSettings]:
    """The ARI connection and application settings from ``[ari]`` (and ``[agi]``'s decision_timeout)."""
    ari = config.ari
    connect = AriConnectSettings(
        url=url or ari.url,
        user=user or ari.user,
        password=password if password is not None else ari.password,
        app=app or ari.app,
        request_timeout=ari.request_timeout,
        connect_timeout=ari.connect_timeout,
        reconnect_min=ari.reconnect_min,
        reconnect_max=ari.reconnect_max,
    )
    application = AriAppSettings(
        decision_timeout=config.agi.decision_timeout,
        read_presentation=ari.read_presentation,
        max_channels=ari.max_channels,
        cause_default=config.policy.block_cause,
    )
    return connect, application


class Node:
    """A running callshield node: the FastAGI server (``agi``) and/or the ARI app (``ari`` settings)."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | None,
        database: Path,
        host: str | None = None,
        port: int | None = None,
        agi: bool = True,
        ari: tuple[AriConnectSettings, AriAppSettings] | None = None,
        http: str | None = None,
    ) -> None:
        if not agi and ari is None:
            raise ValueError("a node needs the FastAGI server, the ARI app, or both")
        listen = http or config.http.listen
        tokens = load_tokens(config.http.token_path(database)) if listen else None  # refuse before opening anything
        self.config = config
        self.config_path = config_path
        self.database = database
        self.firewall = Firewall.open(config, path=database)
        self.decision_metrics = DecisionMetrics() if config.metrics.enabled else None
        logs_info = config.logging.level in ("debug", "info")
        self.decision_log = (
            DecisionLog(fmt=config.logging.format, numbers=config.logging.numbers)
            if (config.logging.decisions and logs_info)
            else None
        )
        engine: DecisionEngine = self.firewall
        if self.decision_metrics is not None or self.decision_log is not None:
            engine = ObservedEngine(self.firewall, metrics=self.decision_metrics, log=self.decision_log)
        self.server = AgiServer(engine, agi_settings(config, host=host, port=port)) if agi else None
        self.ari = AriRunner(engine, *ari) if ari is not None else None
        self.notifier = Notifier()
        self.metrics_server: MetricsServer | None = None
        self._watchdog = self.notifier.enabled and bool(os.environ.get("WATCHDOG_USEC"))
        self.stop = asyncio.Event()
        # The writer: its own connection, used only by one thread, one whole transaction per hop.
        self._writer = db.connect(database)
        self._write_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="callshield-writer")
        self.mesh: MeshLink | None = None
        if config.mesh.enabled:
            # Its own file (outbox.py): the outbox commits on the loop, never behind the writer's batches.
            self.mesh = MeshLink(firewall=self.firewall, config=config, outbox=Outbox.open(database))
            self.firewall.on_shared = self.mesh.on_verdict
            self.firewall.on_screen_failed = self.mesh.on_screen_failed
        self.http: HttpListener | None = None
        if listen and tokens is not None:
            context = HttpContext(
                firewall=self.firewall,
                config=lambda: self.config,
                config_path=config_path,
                database=database,
                tokens=tokens,
                token_path=config.http.token_path(database),
                mesh_status=self.mesh.status if self.mesh is not None else None,
            )
            self.http = HttpListener(context, listen, max_body=config.http.max_body)

    async def _start_listeners(self) -> None:
        """FastAGI, then HTTP; a failure closes what was started and propagates."""
        if self.server is not None:
            try:
                await self.server.start()
            except BaseException:
                self._write_thread.shutdown(wait=False)
                raise
        if self.http is not None:
            try:
                await self.http.start()
            except BaseException:
                if self.server is not None:
                    await self.server.close(0)
                self._write_thread.shutdown(wait=False)
                raise

    async def run(self) -> None:
        await self._start_listeners()
        self._install_signals()
        await self._start_metrics()
        if self.decision_log is not None:
            for handler in logging.getLogger().handlers:
                handler.addFilter(self.decision_log.ordering_filter)
        gc.collect()
        gc.freeze()  # start-up objects never need scanning again: shorter GC pauses under load
        if self.server is not None:
            log.info(
                "callshield listening for FastAGI on %s:%s (node %s, mode %s, database %s)",
                self.server.settings.host,
                self.server.port,
                self.config.node.node_name,
                self.config.policy.mode.value,
                self.database,
            )
        ari_task: asyncio.Task[None] | None = None
        if self.ari is not None:
            log.info(
                "callshield ARI app %r for %s (node %s, mode %s, database %s)",
                self.ari.settings.app,
                self.ari.settings.url,
                self.config.node.node_name,
                self.config.policy.mode.value,
                self.database,
            )
            ari_task = asyncio.create_task(self.ari.run(self.stop, grace=SHUTDOWN_GRACE), name="ari")
            ari_task.add_done_callback(lambda _: self.stop.set())  # it only ends early by a bug: stop
        tasks = [asyncio.create_task(self._flush_loop()), asyncio.create_task(self._maintenance_loop())]
        mesh_stop = asyncio.Event()
        mesh_task = asyncio.create_task(self.mesh.run(mesh_stop), name="mesh") if self.mesh is not None else None
        self.notifier.ready(self._status())
        try:
            await self.stop.wait()
        finally:
            self.notifier.stopping()
            log.info("stopping: finishing sessions")
            if self.http is not None:
                await self.http.close()
            closing: list[Awaitable[None]] = [] if ari_task is None else [_finish_ari(ari_task)]
            if self.server is not None:
                closing.append(self.server.close(SHUTDOWN_GRACE))
            await asyncio.gather(*closing)  # both listeners finish their calls at the same time
            if mesh_task is not None:  # after the calls: their verdicts are published or in the outbox
                mesh_stop.set()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(mesh_task, SHUTDOWN_GRACE)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._close_storage_and_observers()
            log.info("stopped")

    async def _close_storage_and_observers(self) -> None:
        """Last flush, the writer thread and database, then metrics and the decision log."""
        await self.firewall.flush_async(self._writer, self._write_thread, snapshot=True)
        self._write_thread.shutdown(wait=True)
        self._writer.close()
        self.firewall.close()
        if self.metrics_server is not None:
            await self.metrics_server.close()
        if self.decision_log is not None:
            self.decision_log.flush()
            for handler in logging.getLogger().handlers:
                handler.removeFilter(self.decision_log.ordering_filter)

    async def _start_metrics(self) -> None:
        """The metrics listener; a failure to listen is logged and the node serves calls without it."""
        if not self.config.metrics.enabled:
            return
        collector = NodeCollector(
            firewall=self.firewall,
            decisions=self.decision_metrics,
            agi=self.server,
            ari=self.ari,
            mesh=self.mesh,
        )
        host, port = self.config.metrics.address()
        server = MetricsServer(node_registry(collector), host=host, port=port, healthy=self._healthy)
        try:
            await server.start()
        except OSError as exc:
            log.error(
                "metrics: cannot listen on %s (%s); serving calls without metrics", self.config.metrics.listen, exc
            )
            return
        self.metrics_server = server
        log.info("metrics on %s", server.url)

    def _healthy(self) -> bool:
        """Serving calls: not stopping, and the FastAGI listener (if any) open."""
        return not self.stop.is_set() and (self.server is None or not self.server.closing)

    def _status(self) -> str:
        """One line for ``systemctl status``."""
        parts = []
        if self.server is not None:
            parts.append(f"FastAGI on {self.server.settings.host}:{self.server.port}")
        if self.ari is not None:
            parts.append(f"ARI app {self.ari.settings.app}")
        if self.metrics_server is not None:
            parts.append(f"metrics on {self.metrics_server.url}")
        parts.append(f"mode {self.config.policy.mode.value}, {len(self.firewall.rules)} rules")
        return "; ".join(parts)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.storage.flush_interval)
            await self.firewall.flush_async(self._writer, self._write_thread)

    async def _maintenance_loop(self) -> None:
        while True:
            await asyncio.sleep(MAINTENANCE_INTERVAL)
            try:
                if self._watchdog:
                    self.notifier.watchdog()  # the loop still turns
                self.firewall.maintenance()
                if self.mesh is not None:
                    self.mesh.save_status()
            except Exception:
                log.exception("maintenance failed")

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)
        loop.add_signal_handler(signal.SIGINT, self.stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)

    def reload(self) -> None:
        """Re-read the config file; keep the running config if the new one is invalid."""
        self.notifier.reloading()
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("config reload refused, keeping the running config: %s", exc)
            self.notifier.ready(f"config reload refused: {exc}")
            return
        restart = _restart_settings(self.config, new)
        if self.ari is not None:
            restart.append(("[ari]", self.config.ari, new.ari))
        for name, old_value, new_value in restart:
            if old_value != new_value:
                log.warning("%s changed: takes effect at the next restart", name)
        self.firewall.apply_config(new)
        self.config = new
        if self.http is not None:
            self.http.context.reload_tokens()
        log.info("config reloaded (%d rules, mode %s)", len(self.firewall.rules), new.policy.mode.value)
        self.notifier.ready(self._status())


async def _finish_ari(task: asyncio.Task[None]) -> None:
    """Wait for the ARI runner to finish its calls; a failure is logged so the database still gets flushed."""
    try:
        await task
    except Exception:
        log.exception("the ARI app failed")


def _restart_settings(old: Config, new: Config) -> list[tuple[str, object, object]]:
    """Settings a reload cannot apply to a running node (its listener, database and memory layout)."""
    return [
        ("[storage]", old.storage, new.storage),
        ("[agi]", old.agi, new.agi),
        ("[node]", old.node, new.node),
        ("[http]", old.http, new.http),
        ("[logging]", old.logging, new.logging),
        ("[metrics]", old.metrics, new.metrics),
        ("reputation.half_life", old.reputation.half_life, new.reputation.half_life),
        ("reputation.bad_threshold", old.reputation.bad_threshold, new.reputation.bad_threshold),
        ("patterns.window", old.patterns.window, new.patterns.window),
        ("patterns.max_callers", old.patterns.max_callers, new.patterns.max_callers),
        ("patterns.max_events", old.patterns.max_events, new.patterns.max_events),
        ("patterns.open_call", old.patterns.open_call, new.patterns.open_call),
    ]


def serve(
    config_path: str | None,
    *,
    database: str | None = None,
    host: str | None = None,
    port: int | None = None,
    http: str | None = None,
) -> None:
    """Run a node until SIGTERM/SIGINT (with the admin API on ``http``, else ``http.listen``, if set)."""
    config = load_config(config_path)
    setup_logging(config)
    path = Path(database) if database else config.storage.database_path()
    node = Node(config, config_path=config_path, database=path, host=host, port=port, http=http)
    _run_node(node)


def serve_ari(
    config_path: str | None,
    *,
    database: str | None = None,
    url: str | None = None,
    user: str | None = None,
    password: str | None = None,
    app: str | None = None,
    agi: bool | None = None,
    host: str | None = None,
    port: int | None = None,
) -> None:
    """Run a node with the ARI app (and the FastAGI listener unless ``agi`` is False) until SIGTERM/SIGINT."""
    config = load_config(config_path)
    setup_logging(config)
    path = Path(database) if database else config.storage.database_path()
    with_agi = config.ari.fastagi if agi is None else agi
    ari = ari_settings(config, url=url, user=user, password=password, app=app)
    node = Node(config, config_path=config_path, database=path, host=host, port=port, agi=with_agi, ari=ari)
    _run_node(node)


def _run_node(node: Node) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(node.run())
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(node.run())
