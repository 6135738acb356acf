"""Three callshield nodes sharing verdicts through the real Mosquitto (issue 4, section 5).

Each node is a real Firewall on its own database with a MeshLink in this event loop; they talk only
through the broker, on a cluster name unique to the test.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from callshield import db
from callshield.config import parse_config
from callshield.engine import Firewall
from callshield.meshlink import MeshLink
from callshield.outbox import Outbox
from callshield.verdict import Action, Call

from .broker import Broker

KEY = "11" * 32
SPAMMER = "+17185550142"
DID = "+13125550100"


class MeshNode:
    def __init__(self, name: str, tmp: Path, broker: Broker, cluster: str, extra: str = "") -> None:
        config = parse_config(
            f"""
[node]
name = "{name}"
[mesh]
enabled = true
cluster = "{cluster}"
host = "{broker.host}"
port = {broker.listener_port("plain")}
keys = [{{ id = "k1", secret = "{KEY}" }}]
reconnect_min = "200ms"
reconnect_max = "1s"
{extra}
"""
        )
        path = tmp / f"{name}.sqlite3"
        self.firewall = Firewall(config=config, conn=db.connect(path))
        self.link = MeshLink(firewall=self.firewall, config=config, outbox=Outbox.open(path))
        self.firewall.on_shared = self.link.on_verdict
        self.firewall.on_screen_failed = self.link.on_screen_failed
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def decide(self, caller: str = SPAMMER) -> Action:
        return self.firewall.decide(Call(caller=caller, callee=DID)).action

    def check(self, caller: str = SPAMMER) -> tuple[Action, str]:
        verdict = self.firewall.decide(Call(caller=caller, callee=DID), record=False)
        return verdict.action, verdict.reason


async def eventually(probe: Callable[[], bool], timeout: float = 5.0, message: Callable[[], str] | None = None) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not probe():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s" + (f": {message()}" if message else "")) from None


@pytest.fixture
async def nodes(mosquitto: Broker, cluster: str, tmp_path: Path) -> AsyncIterator[dict[str, MeshNode]]:
    deny = f'[[rules]]\naction = "deny"\npattern = "{SPAMMER}"\n'
    made = {name: MeshNode(name, tmp_path, mosquitto, cluster) for name in ("b", "c")}
    made["a"] = MeshNode("a", tmp_path, mosquitto, cluster, extra=deny)  # A blocks SPAMMER on its own
    # One after the other, A last: A then never sees the others' catch-up requests (sent before it
    # subscribed), so it cannot re-share a verdict of the test (a second message) in answer to one.
    for node in made.values():
        node.task = asyncio.create_task(node.link.run(node.stop))
        await eventually(node.link.connected.is_set)
    try:
        yield made
    finally:
        for node in made.values():
            node.stop.set()
        for node in made.values():
            assert node.task is not None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(node.task, 5.0)
            node.firewall.close()


async def test_a_block_on_one_node_reaches_the_others(nodes: dict[str, MeshNode]) -> None:
    a, b, c = nodes["a"], nodes["b"], nodes["c"]
    assert b.check()[0] is Action.CONNECT
    assert a.decide() is Action.BLOCK  # A's deny rule
    await eventually(lambda: b.firewall.peers.subjects() == 1 and c.firewall.peers.subjects() == 1)
    assert b.check()[0] is Action.SCREEN  # one peer's block screens
    assert c.link.inbox.stats["accepted"] == 1
    await eventually(lambda: a.link.counters["published"] == 1)  # its PUBACK
    # No local (MQTT 5): the broker does not send A its own message back. C got it later than B, and
    # the broker handles A's PUBACK and the deliveries in order: an echo would have come by now.
    await asyncio.sleep(0.2)
    assert a.link.inbox.stats.total() == 0


async def test_one_rogue_node_cannot_make_another_block_but_a_quorum_can(nodes: dict[str, MeshNode]) -> None:
    a, b, c = nodes["a"], nodes["b"], nodes["c"]
    a.decide()
    await eventually(lambda: b.firewall.peers.subjects() == 1)
    assert b.check() == (Action.SCREEN, "reputation:peer")
    # C blocks too (its own decision, shared): now two distinct nodes stand behind the block.
    c.firewall.apply_config(parse_config(f'[[rules]]\naction = "deny"\npattern = "{SPAMMER}"\n' + _mesh(c)))
    assert c.decide() is Action.BLOCK
    await eventually(lambda: b.firewall.peers.view(SPAMMER, b.firewall.clock.now()).blockers == 2)
    assert b.check() == (Action.BLOCK, "peer:quorum")


async def test_a_local_allow_beats_peer_blocks(nodes: dict[str, MeshNode]) -> None:
    a, b = nodes["a"], nodes["b"]
    b.firewall.apply_config(parse_config(f'[[rules]]\naction = "allow"\npattern = "{SPAMMER}"\n' + _mesh(b)))
    a.decide()
    await eventually(lambda: b.firewall.peers.subjects() == 1)
    assert b.check()[0] is Action.CONNECT


def _mesh(node: MeshNode) -> str:
    mesh = node.firewall.config.mesh
    return (
        f'[node]\nname = "{node.firewall.config.node.name}"\n[mesh]\nenabled = true\ncluster = "{mesh.cluster}"\n'
        f'host = "{mesh.host}"\nport = {mesh.port}\nkeys = [{{ id = "k1", secret = "{KEY}" }}]\n'
    )


async def test_forged_replayed_and_garbage_messages_are_counted_and_dropped(
    nodes: dict[str, MeshNode], mosquitto: Broker, cluster: str
) -> None:
    b = nodes["b"]
    topic = f"callshield/v1/{cluster}/verdicts/evil"
    async with mosquitto.client() as raw:
        for payload in (b"not json", b"{}", b"\xff" * 100, b"x" * (10 * 1024 * 1024)):
            await raw.publish(topic, payload, qos=1)
        await raw.publish(f"callshield/v1/{cluster}/verdicts/a", b'{"kid":"k1","payload":{},"sig":"00"}', qos=1)
    await eventually(lambda: sum(v for k, v in b.link.inbox.stats.items() if k != "accepted") >= 5)
    stats = b.link.inbox.stats
    assert stats["accepted"] == 0
    assert stats["oversized"] == 1 and stats["malformed"] >= 3
    assert b.firewall.peers.subjects() == 0
    assert b.check()[0] is Action.CONNECT  # and it still decides


async def test_a_30_s_broker_outage_during_a_stream_of_verdicts_loses_none(
    nodes: dict[str, MeshNode], mosquitto: Broker
) -> None:
    a, b = nodes["a"], nodes["b"]
    a.firewall.apply_config(parse_config('[[rules]]\naction = "deny"\npattern = "+1718555*"\n' + _mesh(a)))
    callers = iter(f"+1718555{1000 + i}" for i in range(1000))
    decided = 0

    async def stream(seconds: float) -> None:
        nonlocal decided
        end = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < end:
            assert a.decide(next(callers)) is Action.BLOCK  # decisions go on, broker or not
            decided += 1
            await asyncio.sleep(0.1)

    await stream(1.0)
    mosquitto.stop()
    try:
        await eventually(lambda: not a.link.connected.is_set())
        await stream(OUTAGE)
        a.link.commit_fresh()
        assert a.link._outbox.depth() > 0  # waiting, committed
    finally:
        mosquitto.start()
    await stream(1.0)
    await eventually(
        lambda: b.firewall.peers.subjects() == decided,
        timeout=20.0,
        message=lambda: f"{b.firewall.peers.subjects()} of {decided}: {b.link.inbox.stats}",
    )
    await eventually(lambda: a.link._outbox.depth() == 0)  # acknowledged ones are removed in batches
    assert b.link.inbox.stats["accepted"] == decided  # every verdict once in effect


OUTAGE = 30.0


async def test_replayed_and_stale_messages_from_a_real_peer_are_refused(
    nodes: dict[str, MeshNode], mosquitto: Broker, cluster: str
) -> None:
    from callshield.mesh import MessageKind, Outbound

    a, b = nodes["a"], nodes["b"]
    captured: list[tuple[str, bytes]] = []
    async with mosquitto.client() as spy:
        await spy.subscribe(f"callshield/v1/{cluster}/verdicts/a", qos=1)
        a.decide()

        async def first() -> None:
            async for message in spy.messages:
                payload = message.payload
                captured.append((message.topic.value, payload if isinstance(payload, bytes) else b""))
                return

        await asyncio.wait_for(first(), 5.0)
        await eventually(lambda: b.link.inbox.stats["accepted"] == 1)
        topic, payload = captured[0]
        await spy.publish(topic, payload, qos=1)  # the same bytes again: a replay
        # A validly signed message, but ten minutes old (the key leaked with an old capture, say).
        old = Outbound(keyring=a.firewall.config.mesh.keyring(), cluster=cluster, node="a", last_seq=10_000)
        message = old.message(
            kind=MessageKind.VERDICT,
            caller="+16465550333",
            action=Action.BLOCK,
            score=90,
            now=a.firewall.clock.now() - 600,
        )
        sealed = old.seal(message)
        await spy.publish(sealed.topic, sealed.payload, qos=1)
    await eventually(lambda: b.link.inbox.stats["duplicate"] + b.link.inbox.stats["replayed"] == 1)
    await eventually(lambda: b.link.inbox.stats["stale"] == 1)
    assert b.link.inbox.stats["accepted"] == 1
    assert b.firewall.peers.subjects() == 1


async def test_reports_screen_failures_and_revocations_reach_the_peers(nodes: dict[str, MeshNode]) -> None:
    from callshield.mesh import MessageKind
    from callshield.meshlink import enqueue_event
    from callshield.verdict import ScreenResult

    a, b = nodes["a"], nodes["b"]
    reported, screened = "+16465550111", "+16465550122"
    # What `callshield report` does in its own process: straight into A's outbox, which A's link polls.
    enqueue_event(
        a.firewall.config, a.link._outbox, kind=MessageKind.REPORT, caller=reported, now=a.firewall.clock.now()
    )
    verdict = a.firewall.decide(Call(caller=screened, callee=DID))
    a.firewall.screened(verdict.id, ScreenResult.FAILED)
    await eventually(lambda: b.firewall.peers.subjects() == 2)
    now = b.firewall.clock.now()
    assert [p["kind"] for p in b.firewall.peers.standing(reported, now)] == ["report"]
    assert [p["kind"] for p in b.firewall.peers.standing(screened, now)] == ["screen_failed"]
    # An admin unlist of a number on A revokes A's standing verdicts on it everywhere.
    a.decide()
    await eventually(lambda: b.firewall.peers.view(SPAMMER, b.firewall.clock.now()).blockers == 1)
    enqueue_event(
        a.firewall.config, a.link._outbox, kind=MessageKind.REVOKE, caller=SPAMMER, now=a.firewall.clock.now()
    )
    await eventually(lambda: b.firewall.peers.view(SPAMMER, b.firewall.clock.now()).nodes == 0)


async def test_the_link_saves_a_status_for_the_cli(nodes: dict[str, MeshNode], tmp_path: Path) -> None:
    from callshield.meshlink import read_status

    a, b = nodes["a"], nodes["b"]
    a.decide()
    await eventually(lambda: b.link.inbox.stats["accepted"] == 1)
    b.link.save_status()
    status = read_status(b.link._outbox.connection)  # in the mesh's own database file
    assert status is not None and status["connected"] is True
    peers = status["peers"]
    assert isinstance(peers, list) and [p["node"] for p in peers] == ["a"]
    assert status["received"] == {"accepted": 1}


async def test_privacy_mode_puts_no_phone_number_on_the_wire(mosquitto: Broker, cluster: str, tmp_path: Path) -> None:
    privacy = f'privacy = true\nprivacy_key = "{"33" * 32}"\n'
    deny = f'[[rules]]\naction = "deny"\npattern = "{SPAMMER}"\n'
    a = MeshNode("a", tmp_path, mosquitto, cluster, extra=privacy + deny)
    b = MeshNode("b", tmp_path, mosquitto, cluster, extra=privacy)
    seen: list[tuple[str, bytes]] = []
    async with mosquitto.client() as spy:
        await spy.subscribe("#", qos=1)

        async def listen() -> None:
            async for message in spy.messages:
                payload = message.payload
                seen.append((message.topic.value, payload if isinstance(payload, bytes) else b""))

        listener = asyncio.create_task(listen())
        tasks = [asyncio.create_task(node.link.run(node.stop)) for node in (a, b)]
        try:
            await eventually(lambda: a.link.connected.is_set() and b.link.connected.is_set())
            assert a.decide() is Action.BLOCK
            await eventually(lambda: b.firewall.peers.subjects() == 1, message=lambda: str(b.link.inbox.stats))
            assert b.check()[0] is Action.SCREEN  # B matched the hash with the number it sees
            await eventually(lambda: any(cluster in topic and "/verdicts/" in topic for topic, _ in seen))
        finally:
            for node in (a, b):
                node.stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            listener.cancel()
    digits = SPAMMER[1:]
    runs = {digits[i : i + 4] for i in range(len(digits) - 3)}
    ours = [(topic, payload) for topic, payload in seen if cluster in topic]
    assert ours
    for topic, payload in ours:
        text = topic + payload.decode("utf-8", "replace")
        assert not any(run in text for run in runs), text


async def test_password_and_tls_to_the_broker(mosquitto: Broker, cluster: str, tmp_path: Path) -> None:
    def node(name: str, listener: str) -> MeshNode:
        # The ACL lets user node-X publish only under node name node-X.
        port = mosquitto.auth_port if listener == "auth" else mosquitto.tls_port
        tls = f'tls = true\ntls_ca = "{mosquitto.ca_file}"\n' if listener == "tls" else ""
        made = MeshNode(name, tmp_path / listener, mosquitto, cluster, extra="")
        config = parse_config(
            _mesh(made).replace(f"port = {mosquitto.listener_port('plain')}", f"port = {port}")
            + f'username = "{name}"\npassword = "{mosquitto.users[name]}"\n{tls}'
            + ('[[rules]]\naction = "deny"\npattern = "' + SPAMMER + '"\n' if name == "node-a" else "")
        )
        made.firewall.apply_config(config)
        made.link = MeshLink(firewall=made.firewall, config=config, outbox=made.link._outbox)
        made.firewall.on_shared = made.link.on_verdict
        return made

    for listener in ("auth", "tls"):
        (tmp_path / listener).mkdir()
        await _share_once(node("node-a", listener), node("node-b", listener))


async def _share_once(a: MeshNode, b: MeshNode) -> None:
    tasks = [asyncio.create_task(n.link.run(n.stop)) for n in (a, b)]
    try:
        await eventually(lambda: a.link.connected.is_set() and b.link.connected.is_set())
        assert a.decide() is Action.BLOCK
        await eventually(lambda: b.firewall.peers.subjects() == 1, message=lambda: str(b.link.inbox.stats))
    finally:
        for n in (a, b):
            n.stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_node_that_joins_late_catches_up_on_verdicts_in_force(
    nodes: dict[str, MeshNode], mosquitto: Broker, cluster: str, tmp_path: Path
) -> None:
    a, b = nodes["a"], nodes["b"]
    assert a.decide() is Action.BLOCK
    await eventually(lambda: b.firewall.peers.subjects() == 1)
    answers = a.link.counters["sync:answered"]  # (the nodes asked each other at start)
    late = MeshNode("d", tmp_path, mosquitto, cluster)  # a new node: no session, no history
    late.task = asyncio.create_task(late.link.run(late.stop))
    try:
        await eventually(lambda: late.firewall.peers.subjects() == 1, message=lambda: str(late.link.inbox.stats))
        assert late.check()[0] is Action.SCREEN  # A's block, shared again for it
        assert a.link.counters["sync:answered"] == answers + 1
        assert not a.link.sync_requested("d")  # asked again at once: rate-limited
        # B already had the verdict: the re-share replaced it with the same content.
        assert b.firewall.peers.view(SPAMMER, b.firewall.clock.now()).blockers == 1
        assert b.link.inbox.stats["replayed"] == 0
    finally:
        late.stop.set()
        await asyncio.wait_for(late.task, 5.0)
        late.firewall.close()
