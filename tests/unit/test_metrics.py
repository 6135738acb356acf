"""Metrics: the reason label guard, the decision counters and histogram, the scrape-time collector."""

from __future__ import annotations

import re
from collections.abc import Iterator

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from callshield.config import parse_config
from callshield.errors import ConfigError
from callshield.metrics import DECISION_BUCKETS, DecisionMetrics, NodeCollector, node_registry, reason_label
from callshield.observed import ObservedEngine
from callshield.verdict import Action, Call, CallOutcome, Mode, Verdict
from tests.conftest import FirewallFactory

LABEL = re.compile(r"[a-z_]+(:[a-z_-]+)?")


def verdict(action: Action, reason: str, *, decided: Action | None = None) -> Verdict:
    return Verdict(
        id="x",
        action=action,
        decided=decided or action,
        score=0,
        reason=reason,
        reasons=(),
        cause=21,
        mode=Mode.ENFORCE if decided is None else Mode.SHADOW,
        caller="+14155550123",
        callee="+13125550100",
        decided_at=0.0,
    )


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_reason_codes_of_ours_are_labels_and_anything_else_is_not() -> None:
    for code in ("clean", "denylist:prefix", "pattern:short_calls", "peer:no-quorum", "safety:emergency"):
        assert reason_label(code) == code
    assert reason_label("denylist:+14155550123") == "denylist:other"
    assert reason_label("+14155550123") == "other"
    assert reason_label("pattern:Rate") == "pattern:other"
    assert reason_label("somebody's free text") == "other"


@given(st.text(max_size=40))
def test_no_reason_label_ever_carries_a_digit(code: str) -> None:
    label = reason_label(code)
    assert LABEL.fullmatch(label) and not any(c.isdigit() for c in label)


def test_decisions_are_counted_by_action_and_reason_and_timed() -> None:
    metrics = DecisionMetrics()
    metrics.observe(verdict(Action.BLOCK, "denylist:prefix"), 40e-6)
    metrics.observe(verdict(Action.BLOCK, "denylist:prefix"), 60e-6)
    metrics.observe(verdict(Action.CONNECT, "clean"), 2.0)  # beyond the last bound: +Inf only
    metrics.observe(verdict(Action.CONNECT, "denylist:+12125550111"), 25e-6)  # on a bound: le is inclusive
    metrics.observe(verdict(Action.CONNECT, "pattern:fanout", decided=Action.BLOCK), 1e-3)
    registry = node_registry_for(metrics)
    got = samples(generate_latest(registry).decode())
    assert got[("callshield_decisions_total", (("action", "block"), ("reason", "denylist:prefix")))] == 2
    assert got[("callshield_decisions_total", (("action", "connect"), ("reason", "clean")))] == 1
    assert got[("callshield_decisions_total", (("action", "connect"), ("reason", "denylist:other")))] == 1
    assert got[("callshield_shadow_decisions_total", (("decided", "block"),))] == 1
    assert got[("callshield_decision_seconds_count", ())] == 5 == metrics.count
    assert abs(got[("callshield_decision_seconds_sum", ())] - (40e-6 + 60e-6 + 2.0 + 25e-6 + 1e-3)) < 1e-9
    assert got[("callshield_decision_seconds_bucket", (("le", "2.5e-05"),))] == 1
    assert got[("callshield_decision_seconds_bucket", (("le", "5e-05"),))] == 2
    assert got[("callshield_decision_seconds_bucket", (("le", "0.0001"),))] == 3
    assert got[("callshield_decision_seconds_bucket", (("le", "0.001"),))] == 4
    assert got[("callshield_decision_seconds_bucket", (("le", repr(DECISION_BUCKETS[-1])),))] == 4
    assert got[("callshield_decision_seconds_bucket", (("le", "+Inf"),))] == 5


def node_registry_for(metrics: DecisionMetrics) -> CollectorRegistry:
    class Only(Collector):
        def collect(self) -> Iterator[Metric]:
            return metrics.families()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Only())
    return registry


def test_the_collector_reads_the_engine_when_scraped(make_firewall: FirewallFactory) -> None:
    firewall = make_firewall('[[rules]]\naction = "deny"\npattern = "+1212555*"\n')
    metrics = DecisionMetrics()
    engine = ObservedEngine(firewall, metrics=metrics, log=None)
    registry = node_registry(NodeCollector(firewall=firewall, decisions=metrics))
    before = samples(generate_latest(registry).decode())
    assert before[("callshield_decision_seconds_count", ())] == 0
    assert before[("callshield_rules", ())] == 1
    blocked = engine.decide(Call(caller="+12125550111", callee="+13125550100"))
    engine.decide(Call(caller="+17735550123", callee="+13125550100"))
    engine.feedback(CallOutcome(decision_id=blocked.id, dialstatus="ANSWER", billsec=90))
    engine.feedback(CallOutcome(decision_id="nonsense"))
    firewall.flush()
    after = samples(generate_latest(registry).decode())
    assert after[("callshield_decision_seconds_count", ())] == 2
    assert after[("callshield_decisions_total", (("action", "block"), ("reason", "denylist:prefix")))] == 1
    assert after[("callshield_engine_events_total", (("event", "feedback"),))] == 1
    assert after[("callshield_engine_events_total", (("event", "feedback:unknown"),))] == 1
    assert after[("callshield_pattern_callers", ())] == 2
    assert after[("process_resident_memory_bytes", ())] > 0
    for (_, labels), _value in after.items():
        for name, value in labels:
            if name != "le":  # the histogram's bucket bounds
                assert not re.search(r"\d", value), f"a label carries a digit: {name}={value}"


def test_metrics_listen_is_validated() -> None:
    assert parse_config('[metrics]\nlisten = "[::1]:9000"\n').metrics.address() == ("::1", 9000)
    assert parse_config('[metrics]\nlisten = "0.0.0.0:9464"\n').metrics.address() == ("0.0.0.0", 9464)
    for bad in ("9464", "localhost:99999", "a b:1", "[::1]"):
        try:
            parse_config(f'[metrics]\nlisten = "{bad}"\n')
        except ConfigError as exc:
            assert "metrics: expected HOST:PORT" in str(exc) or "metrics: port" in str(exc)
        else:
            raise AssertionError(f"{bad!r} was accepted")


def test_the_collector_reads_the_adapters_and_the_mesh_link(make_firewall: FirewallFactory) -> None:
    from callshield import db
    from callshield.agi.server import AgiServer
    from callshield.ari import AriRunner
    from callshield.meshlink import MeshLink
    from callshield.outbox import Outbox
    from tests.unit.mesh_support import CLUSTER, NOW, SECRET, block, outbound

    firewall = make_firewall(
        f'[node]\nname = "pbx-b"\ncluster = "{CLUSTER}"\n'
        f'[mesh]\nenabled = true\nkeys = [{{ id = "k1", secret = "{SECRET.hex()}" }}]\n'
    )
    link = MeshLink(firewall=firewall, config=firewall.config, outbox=Outbox(db.connect(firewall_path(firewall))))
    sender = outbound("pbx-a")
    sealed = sender.seal(block(sender, now=NOW))
    assert link.receive(sealed.topic, sealed.payload)
    assert not link.receive(sealed.topic, sealed.payload)  # the same message again
    assert not link.receive(sealed.topic, b"not json")
    collector = NodeCollector(firewall=firewall, agi=AgiServer(firewall), ari=AriRunner(firewall), mesh=link)
    got = samples(generate_latest(node_registry(collector)).decode())
    received = {
        labels[0][1]: v for (name, labels), v in got.items() if name == "callshield_mesh_messages_received_total"
    }
    assert received["accepted"] == 1 and sum(received.values()) == 3 and len(received) == 3
    assert got[("callshield_mesh_peers", ())] == 1
    assert got[("callshield_mesh_peer_last_seen_timestamp_seconds", (("peer", "pbx-a"),))] > 0
    assert got[("callshield_mesh_connected", ())] == 0
    assert got[("callshield_mesh_outbox_depth", ())] == 0
    assert got[("callshield_agi_sessions_active", ())] == 0 and got[("callshield_ari_channels_active", ())] == 0
    assert got[("callshield_ari_connected", ())] == 0
    assert got[("callshield_engine_events_total", (("event", "peer:accepted"),))] == 1


def firewall_path(firewall: object) -> str:
    from callshield.engine import Firewall

    assert isinstance(firewall, Firewall)
    row = firewall.connection.execute("PRAGMA database_list").fetchone()
    return str(row[2])


async def test_healthz_and_the_health_check(make_firewall: FirewallFactory) -> None:
    import asyncio

    from callshield.metrics import MetricsServer, check_health

    serving = True
    registry = node_registry(NodeCollector(firewall=make_firewall()))
    server = MetricsServer(registry, host="127.0.0.1", port=0, healthy=lambda: serving)
    await server.start()
    port = server.port
    try:
        # check_health blocks (urllib): run it off the loop that serves the request.
        ok, seen = await asyncio.to_thread(check_health, f"0.0.0.0:{server.port}")  # a wildcard: asked on loopback
        assert ok and seen.endswith("200 ok"), seen
        serving = False
        ok, seen = await asyncio.to_thread(check_health, f"127.0.0.1:{server.port}")
        assert not ok and "503" in seen
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
    finally:
        await server.close()
    ok, seen = await asyncio.to_thread(check_health, f"127.0.0.1:{port}", timeout=1)
    assert not ok and "refused" in seen
