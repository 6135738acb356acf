"""Prometheus metrics for a running node (``[metrics]``: ``http://127.0.0.1:9464/metrics``).

Only two things are counted on the decision path, by :class:`DecisionMetrics`: decisions by action and
primary reason, and the decision time histogram; they are plain ints (one thread decides, no locks) and
cost ~0.5 µs a decision. Everything else is read from the node's parts when Prometheus scrapes
(:class:`NodeCollector`): the engine's event counters, reputation and list sizes, FastAGI and ARI session
counters, screening outcomes, mesh messages accepted and rejected by reason, outbox depth and peers.

Label values come from code, never from a call: a reason code is used as a label only when it looks
like one of ours (``family:name``, lower-case letters, no digits), anything else counts as ``other``
(see :func:`reason_label`), so a phone number can never become a label.

The endpoint is an aiohttp handler on the node's event loop (:class:`MetricsServer`): the scrape reads
the node's state on the thread that changes it, so no lock is needed and none is taken on the decision
path; a scrape holds the loop for about a millisecond (bench/RESULTS.md).
"""

from __future__ import annotations

import dataclasses
import re
import time
import urllib.error
import urllib.request
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from callshield.verdict import Action, Verdict

if TYPE_CHECKING:
    from callshield.agi.server import AgiServer
    from callshield.ari import AriRunner
    from callshield.engine import Firewall
    from callshield.meshlink import MeshLink

__all__ = [
    "DECISION_BUCKETS",
    "DecisionMetrics",
    "MetricsServer",
    "NodeCollector",
    "check_health",
    "node_registry",
    "reason_label",
]

DECISION_BUCKETS: tuple[float, ...] = (
    25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3,
)  # fmt: skip
"""Upper bounds (seconds) of the decision time histogram: decide() takes ~15-150 µs, a timeout 300 ms."""
REASON_FAMILIES = frozenset(
    {
        "clean", "timeout", "error", "safety", "allowlist", "denylist", "screen", "reputation", "pattern",
        "number", "peer", "model",
    }
)  # fmt: skip
"""First parts of the reason codes the engine produces (``denylist:prefix``, ``pattern:fanout``, ...)."""
MAX_REASON_LABELS = 200
"""Distinct reason labels kept; later new codes count under ``FAMILY:other``."""
_REASON = re.compile(r"[a-z][a-z_]*(?::[a-z][a-z_-]*)?")
ACTIVE_PEER = 300.0
"""A mesh peer heard from within this many seconds counts as active."""
MAX_PEER_LABELS = 100
"""Peers listed one by one in ``callshield_mesh_peer_last_seen_timestamp_seconds`` (most recent first)."""
REPUTATION_COUNT_EVERY = 60.0
"""Seconds between two counts of the reputation table (a full table scan on a large database)."""


def reason_label(code: str) -> str:
    """``code`` if it is a reason code of a known family, else ``FAMILY:other`` or ``other``."""
    family = code.partition(":")[0]
    if family not in REASON_FAMILIES:
        return "other"
    return code if _REASON.fullmatch(code) else f"{family}:other"


class DecisionMetrics:
    """Decisions by action and reason, and decision times: the only metrics kept on the decision path."""

    def __init__(self, buckets: tuple[float, ...] = DECISION_BUCKETS) -> None:
        self._bounds = buckets
        self._buckets = [0] * (len(buckets) + 1)
        self._sum = 0.0
        self._by_action: dict[Action, dict[str, int]] = {action: {} for action in Action}
        self._decided: dict[Action, int] = dict.fromkeys(Action, 0)
        self._labels: dict[str, str] = {}

    def observe(self, verdict: Verdict, seconds: float) -> None:
        """Count one decision that took ``seconds``."""
        counts = self._by_action[verdict.action]
        reason = verdict.reason
        n = counts.get(reason)
        if n is None:
            reason = self._label(reason)
            n = counts.get(reason, 0)
        counts[reason] = n + 1
        if verdict.decided is not verdict.action:
            self._decided[verdict.decided] += 1
        self._buckets[bisect_left(self._bounds, seconds)] += 1
        self._sum += seconds

    def _label(self, reason: str) -> str:
        label = self._labels.get(reason)
        if label is None:
            label = reason_label(reason)
            if len(self._labels) >= MAX_REASON_LABELS and label not in self._labels.values():
                label = f"{reason.partition(':')[0]}:other" if label != "other" else label
            self._labels[reason] = label
        return label

    @property
    def count(self) -> int:
        """Decisions observed."""
        return sum(self._buckets)

    def families(self) -> Iterator[Metric]:
        """The decision metrics, as of now."""
        decisions = CounterMetricFamily(
            "callshield_decisions",
            "Decisions by the action taken and the primary reason code",
            labels=["action", "reason"],
        )
        for action, counts in self._by_action.items():
            for reason, n in list(counts.items()):
                decisions.add_metric([action.value, reason], n)
        yield decisions
        shadow = CounterMetricFamily(
            "callshield_shadow_decisions",
            "Decisions whose action differs from what the policy decided (shadow mode), by the decision",
            labels=["decided"],
        )
        for action, n in self._decided.items():
            shadow.add_metric([action.value], n)
        yield shadow
        cumulative, buckets = 0, []
        for bound, n in zip((*self._bounds, float("inf")), self._buckets, strict=True):
            cumulative += n
            buckets.append((_bound(bound), cumulative))
        yield HistogramMetricFamily(
            "callshield_decision_seconds",
            "Time to decide a call (the engine's decide(), without the FastAGI/ARI exchange)",
            buckets=buckets,
            sum_value=self._sum,
        )


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)


class NodeCollector(Collector):
    """Reads a node's state when Prometheus scrapes (nothing of this is counted on the decision path)."""

    def __init__(
        self,
        *,
        firewall: Firewall,
        decisions: DecisionMetrics | None = None,
        agi: AgiServer | None = None,
        ari: AriRunner | None = None,
        mesh: MeshLink | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._firewall = firewall
        self._decisions = decisions
        self._agi = agi
        self._ari = ari
        self._mesh = mesh
        self._monotonic = monotonic
        self._reputation_count: tuple[float, int] | None = None

    def collect(self) -> Iterator[Metric]:
        if self._decisions is not None:
            yield from self._decisions.families()
        yield from self._engine()
        if self._agi is not None:
            yield from _stats_families("callshield_agi", "FastAGI", dataclasses.asdict(self._agi.stats))
        if self._ari is not None:
            yield from _stats_families("callshield_ari", "ARI", dataclasses.asdict(self._ari.app.stats))
            yield GaugeMetricFamily(
                "callshield_ari_connected", "1 while the ARI event websocket is open", int(self._ari.connected.is_set())
            )
        if self._mesh is not None:
            yield from self._mesh_families(self._mesh)

    def _engine(self) -> Iterator[Metric]:
        firewall = self._firewall
        events = CounterMetricFamily(
            "callshield_engine_events",
            "Engine events (feedback, screening results, peer verdicts, ...)",
            labels=["event"],
        )
        screenings = CounterMetricFamily(
            "callshield_screenings", "Screening challenge results taken by the engine", labels=["result"]
        )
        for key, n in list(firewall.counters.items()):
            if isinstance(key, Action):
                continue  # decisions: callshield_decisions_total
            family, _, result = key.partition(":")
            if family == "screen" and result in ("passed", "failed", "timeout"):
                screenings.add_metric([result], n)
            else:
                events.add_metric([_event_label(key)], n)
        yield events
        yield screenings
        yield GaugeMetricFamily(
            "callshield_rules", "Rules in force (config rules and list entries)", len(firewall.rules)
        )
        yield GaugeMetricFamily(
            "callshield_pattern_callers", "Callers whose dialing pattern is tracked in memory", len(firewall.patterns)
        )
        yield GaugeMetricFamily(
            "callshield_peer_subjects", "Callers with standing verdicts from mesh peers", firewall.peers.subjects()
        )
        yield GaugeMetricFamily(
            "callshield_reputation_numbers",
            f"Numbers with reputation evidence in the database (counted at most every {REPUTATION_COUNT_EVERY:g} s)",
            self._reputation_numbers(),
        )

    def _reputation_numbers(self) -> int:
        now = self._monotonic()
        cached = self._reputation_count
        if cached is None or now - cached[0] >= REPUTATION_COUNT_EVERY:
            cached = self._reputation_count = (now, self._firewall.store.count())
        return cached[1]

    def _mesh_families(self, mesh: MeshLink) -> Iterator[Metric]:
        status = mesh.status()
        yield GaugeMetricFamily(
            "callshield_mesh_connected", "1 while connected to the MQTT broker", int(mesh.connected.is_set())
        )
        received = CounterMetricFamily(
            "callshield_mesh_messages_received",
            "Peer messages received, by result: accepted or the reason they were rejected",
            labels=["result"],
        )
        for result, n in _int_items(status.get("received")):
            received.add_metric([_event_label(result)], n)
        yield received
        events = CounterMetricFamily(
            "callshield_mesh_events", "Mesh link events (published, connects, sync requests, ...)", labels=["event"]
        )
        for event, n in _int_items(status.get("counters")):
            events.add_metric([_event_label(event)], n)
        yield events
        yield GaugeMetricFamily(
            "callshield_mesh_outbox_depth", "Messages waiting in the outbox", _int(status.get("outbox"))
        )
        yield CounterMetricFamily(
            "callshield_mesh_outbox_dropped",
            "Outbox messages dropped (outbox full)",
            _int(status.get("outbox_dropped")),
        )
        peers = [p for p in mesh.inbox.peers()]
        now = float(_number(status.get("at")))
        yield GaugeMetricFamily("callshield_mesh_peers", "Peer nodes heard from since the start", len(peers))
        yield GaugeMetricFamily(
            "callshield_mesh_peers_active",
            f"Peer nodes heard from in the last {ACTIVE_PEER:g} s",
            sum(1 for p in peers if now - p.last_seen <= ACTIVE_PEER),
        )
        last_seen = GaugeMetricFamily(
            "callshield_mesh_peer_last_seen_timestamp_seconds",
            "When each peer node was last heard from",
            labels=["peer"],
        )
        for peer in sorted(peers, key=lambda p: p.last_seen, reverse=True)[:MAX_PEER_LABELS]:
            last_seen.add_metric([peer.node], peer.last_seen)
        yield last_seen


_EVENT = re.compile(r"[a-z][a-z_]*(?::[a-z][a-z_-]*)?")


def _event_label(key: str) -> str:
    """Counter keys are fixed strings in the code; anything else (a digit, say) is ``other``."""
    return key if _EVENT.fullmatch(key) else "other"


def _int_items(value: object) -> list[tuple[str, int]]:
    if not isinstance(value, Mapping):
        return []
    return [(str(k), int(v)) for k, v in value.items() if isinstance(v, int)]


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _stats_families(prefix: str, what: str, stats: Mapping[str, int]) -> Iterator[Metric]:
    """An adapter's stats record: ``*_active`` fields as gauges, every other field as a counter."""
    for name, value in stats.items():
        if name.endswith("_active"):
            yield GaugeMetricFamily(f"{prefix}_{name}", f"{what}: {name.replace('_', ' ')} now", value)
        else:
            base = name.removesuffix("_total")
            yield CounterMetricFamily(f"{prefix}_{base}", f"{what}: {name.replace('_', ' ')}", value)


def node_registry(collector: NodeCollector) -> CollectorRegistry:
    """A registry with the node's metrics and the process's (CPU, memory, file descriptors)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry


class MetricsServer:
    """``/metrics`` (Prometheus text format) and ``/healthz`` on the node's event loop."""

    def __init__(
        self, registry: CollectorRegistry, *, host: str, port: int, healthy: Callable[[], bool] = lambda: True
    ) -> None:
        self._registry = registry
        self._host = host
        self._port = port
        self._healthy = healthy
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.scrapes = 0

    async def start(self) -> None:
        """Listen; OSError when the address is in use or not ours."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._health)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._site = runner, site

    @property
    def port(self) -> int:
        """The port listened on (the one chosen when ``port`` was 0)."""
        if self._runner is None or not self._runner.addresses:
            raise RuntimeError("the metrics server is not listening")
        return int(self._runner.addresses[0][1])

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/metrics"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = self._site = None

    async def _metrics(self, request: web.Request) -> web.Response:
        self.scrapes += 1
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _health(self, request: web.Request) -> web.Response:
        if self._healthy():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="not serving calls\n")


def check_health(listen: str, *, timeout: float = 3.0) -> tuple[bool, str]:
    """GET ``http://LISTEN/healthz`` (``HOST:PORT``); ``(healthy, what was seen)``. Standard library only."""
    host, _, port = listen.rpartition(":")
    if host in ("0.0.0.0", ""):  # noqa: S104 - a wildcard listener is reached on loopback
        host = "127.0.0.1"
    elif host == "[::]":
        host = "[::1]"
    url = f"http://{host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return (
                response.status == 200,
                f"{url}: {response.status} {response.read(200).decode(errors='replace').strip()}",
            )
    except urllib.error.HTTPError as exc:
        return False, f"{url}: {exc.code} {exc.read(200).decode(errors='replace').strip()}"
    except OSError as exc:
        return False, f"{url}: {exc}"
