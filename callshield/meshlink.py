"""The node's link to the mesh: its verdicts out through the outbox, peers' verdicts in to the engine.

The I/O half of issue 4 (the message rules are in :mod:`callshield.mesh`, sans-I/O). One
:class:`MeshLink` per node, in the server's event loop, with one aiomqtt client:

- Out: the engine calls :meth:`MeshLink.on_verdict` for each decision; shared ones (blocks and
  screens on a caller's own evidence) become messages with the next sequence number, which the
  publisher commits to the outbox (unsigned payloads), then signs with the send time and publishes
  at QoS 1, oldest first, and removes once the broker has acknowledged them. Broker down: decisions go
  on, messages wait in the outbox and drain in order on reconnect. A message published twice (a crash
  between PUBACK and the removal) is harmless: receivers drop it by its sequence number.
- In: messages on the cluster's verdict topics go through :class:`callshield.mesh.Inbox` (verify,
  drop stale, replayed, oversized, forged; count each reason); accepted verdicts become
  ``Firewall.peer_verdict`` / ``peer_revoke``.
- Status: ``online`` retained on connect, ``offline`` retained as the last will and on a clean stop.
- Reconnect with exponential backoff and jitter between ``reconnect_min`` and ``reconnect_max``.
- Catching up: the session is persistent (the broker queues verdicts while we are away, and keeps
  them across its own restarts with persistence on), and when the process starts the node also asks
  its peers on ``callshield/v1/{cluster}/sync/{node}``; each peer
  answers, at most once per ``SYNC_COOLDOWN`` for each requester, by sharing again (new sequence numbers, remaining TTL)
  its verdicts still in force, kept in ``mesh_standing``. Peers that already hold them just replace
  them with the same content; a node that joins late or was away beyond the broker's queue gets
  them all. The request carries no data, so a forged one can only cost a rate-limited re-send.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import sqlite3
import ssl
from collections import Counter
from typing import Final

import aiomqtt
from msgspec.structs import replace

from callshield.config import Config
from callshield.engine import Firewall
from callshield.errors import StoreError
from callshield.mesh import (
    PROTOCOL_VERSION,
    Accepted,
    Inbox,
    MeshMessage,
    MessageKind,
    Outbound,
    SubjectKind,
    decode_payload,
    encode_payload,
    parse_sync_topic,
    status_topic,
    sync_filter,
    sync_topic,
    verdicts_filter,
)
from callshield.outbox import Outbox
from callshield.peers import PeerKind
from callshield.verdict import Action, Verdict

__all__ = ["STATUS_KEY", "MeshLink", "enqueue_event", "read_status"]

log = logging.getLogger(__name__)

PUBLISH_BATCH: Final = 100
"""Messages in flight at once (QoS 1 acknowledgements are awaited together)."""
OUTBOX_POLL: Final = 0.5
"""Seconds between looks at the outbox for rows other processes (the CLI) added."""
_NODELAY: Final = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
CONNECT_TIMEOUT: Final = 10.0
OUTBOX_BUSY_RETRY: Final = 0.005
"""Seconds before the publisher tries the outbox again when the database was busy."""
PASSWORD_VARIABLE: Final = "CALLSHIELD_MQTT_PASSWORD"  # noqa: S105 (a variable name, not a secret)
"""Environment variable that overrides ``mesh.password`` (keep secrets out of config files)."""
SYNC_COOLDOWN: Final = 30.0
"""Seconds between two catch-up answers of this node to the same peer."""
MAX_SYNC_PEERS: Final = 1024
STANDING_UPSERT: Final = (
    "INSERT INTO mesh_standing (subject, subject_kind, kind, action, score, reasons, expires) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (subject) DO UPDATE SET subject_kind = excluded.subject_kind, "
    "kind = excluded.kind, action = excluded.action, score = excluded.score, reasons = excluded.reasons, "
    "expires = excluded.expires"
)
STANDING_DELETE: Final = "DELETE FROM mesh_standing WHERE subject = ?"
STATUS_KEY: Final = "mesh_status"
"""meta key of the running link's status (JSON), for ``callshield mesh status``."""


class MeshLink:
    """This node's MQTT client for the reputation mesh (see the module docstring)."""

    def __init__(self, *, firewall: Firewall, config: Config, outbox: Outbox) -> None:
        mesh = config.mesh
        self._firewall = firewall
        self._config = config
        self._outbox = outbox
        self.cluster, self.node = config.mesh_identity()
        self._outbound = _outbound(config, last_seq=outbox.last_seq())
        self.inbox = Inbox(
            keyring=mesh.keyring(),
            cluster=self.cluster,
            node=self.node,
            subject_kind=SubjectKind.HASH if mesh.privacy else SubjectKind.E164,
            max_bytes=mesh.max_message_bytes,
            max_skew=float(mesh.max_skew),
        )
        # The outbox writes on the event loop while the server's aiosqlite writer may hold the write lock
        # across several awaits: waiting for it here would block the loop it needs to finish (5 s, then
        # "database is locked"). Fail at once instead; the publisher retries a moment later.
        outbox.connection.execute("PRAGMA busy_timeout = 0")
        self._fresh: list[MeshMessage] = []
        self._answered: dict[str, float] = {}  # requester -> when we last answered it
        self._asked_to_sync = False
        self._wake = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.counters: Counter[str] = Counter()
        """published, publish_failed, connects, disconnects, peer messages applied, ..."""

    # -- out -----------------------------------------------------------------------------------------

    def on_verdict(self, verdict: Verdict) -> None:
        """The engine decided: share a block or screen made on this node's own evidence."""
        message = self._outbound.from_verdict(verdict, now=self._firewall.clock.now())
        if message is not None:
            self._fresh.append(message)
            self._wake.set()

    def on_screen_failed(self, caller: str) -> None:
        """A caller (E.164) failed a screening challenge here: evidence for the peers."""
        now = self._firewall.clock.now()
        message = self._outbound.message(
            kind=MessageKind.SCREEN_FAILED,
            caller=caller,
            action=Action.SCREEN,
            score=0,
            now=now,
            reasons=("screen:failed",),
        )
        self._fresh.append(message)
        self._wake.set()

    # -- status --------------------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        """What ``callshield mesh status`` shows: connection, peers, message counts, outbox."""
        return {
            "cluster": self.cluster,
            "node": self.node,
            "connected": self.connected.is_set(),
            "at": self._firewall.clock.now(),
            "counters": dict(self.counters),
            "received": dict(self.inbox.stats),
            "peers": [
                {
                    "node": p.node,
                    "highest_seq": p.highest_seq,
                    "last_seen": p.last_seen,
                    "lag": p.lag,
                    "accepted": p.accepted,
                }
                for p in self.inbox.peers()
            ],
            "outbox": self._outbox.depth(),
            "outbox_dropped": self._outbox.dropped,
        }

    def save_status(self) -> None:
        """Write :meth:`status` to the node database (the CLI reads it from there)."""
        self._outbox.save_meta(STATUS_KEY, json.dumps(self.status(), separators=(",", ":")))

    def commit_fresh(self) -> int:
        """Commit the messages made since the last call to the outbox; return how many.

        Sequence numbers are the outbox's: read, then checked again inside the append's transaction,
        so messages the CLI added meanwhile (revocations) never share a number with ours.
        """
        fresh, self._fresh = self._fresh, []
        if not fresh:
            return 0
        now = self._firewall.clock.now()
        topic = self._outbound.topic
        for _ in range(3):
            start = self._outbox.last_seq() + 1
            rows = [(topic, encode_payload(replace(m, seq=start + i))) for i, m in enumerate(fresh)]
            try:
                self._outbox.append(rows, now, first_seq=start)
            except StoreError:
                continue  # another process took numbers between the read and the append
            except sqlite3.OperationalError:  # busy (see __init__): keep them for the next try
                self._fresh = fresh + self._fresh
                raise
            try:
                _remember_standing(self._outbox.connection, fresh)
            except sqlite3.OperationalError:  # busy: only catch-up answers miss them; they are committed
                self.counters["standing:busy"] += len(fresh)
            return len(fresh)
        self._fresh = fresh + self._fresh
        return 0

    async def _publish_waiting(self, client: aiomqtt.Client) -> None:
        """Publish the outbox, oldest first, in batches; remove what the broker acknowledged."""
        while True:
            self.commit_fresh()
            waiting = self._outbox.pending(PUBLISH_BATCH)
            if not waiting:
                return
            now = self._firewall.clock.now()
            sealed = [self._outbound.seal(decode_payload(row.payload), now=now) for row in waiting]
            results = await asyncio.gather(
                *(client.publish(m.topic, m.payload, qos=1) for m in sealed), return_exceptions=True
            )
            done = [row.seq for row, result in zip(waiting, results, strict=True) if result is None]
            self._outbox.acknowledged(done)
            self.counters["published"] += len(done)
            failed = len(waiting) - len(done)
            if failed:
                self.counters["publish_failed"] += failed
                raise aiomqtt.MqttError(f"{failed} publishes failed")

    async def _publisher(self, client: aiomqtt.Client) -> None:
        while True:
            try:
                await self._publish_waiting(client)
            except sqlite3.OperationalError:  # the database is busy (the writer's batch): retry shortly
                self.counters["outbox:busy"] += 1
                await asyncio.sleep(OUTBOX_BUSY_RETRY)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(OUTBOX_POLL):
                    await self._wake.wait()

    # -- in ------------------------------------------------------------------------------------------

    async def _receiver(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = message.topic.value
            requester = parse_sync_topic(topic)
            if requester is not None:
                self.sync_requested(requester[1])
                continue
            payload = message.payload
            data = payload if isinstance(payload, bytes) else str(payload or "").encode()
            self.receive(topic, data)

    def sync_requested(self, requester: str) -> bool:
        """A peer asks to catch up: share our verdicts in force again (rate-limited); True if we do."""
        now = self._firewall.clock.now()
        answered = self._answered
        if requester == self.node or now - answered.get(requester, float("-inf")) < SYNC_COOLDOWN:
            self.counters["sync:ignored"] += 1
            return False
        answered[requester] = now
        if len(answered) > MAX_SYNC_PEERS:  # forged names must not grow this without bound
            del answered[min(answered, key=answered.__getitem__)]
        again = [_reshared(row, node=self.node, now=now) for row in _standing(self._outbox.connection, now)]
        self._fresh.extend(again)
        self._wake.set()
        self.counters["sync:answered"] += 1
        log.info("mesh: %s asked to catch up: sharing %d verdicts in force again", requester, len(again))
        return True

    def receive(self, topic: str, payload: bytes) -> bool:
        """One message from the broker; True when it was accepted and applied."""
        outcome = self.inbox.receive(topic, payload, self._firewall.clock.now())
        if not isinstance(outcome, Accepted):
            return False
        self._apply(outcome.message)
        return True

    def _apply(self, message: MeshMessage) -> None:
        firewall = self._firewall
        if message.kind is MessageKind.REVOKE:
            firewall.peer_revoke(subject=message.subject, node=message.node, seq=message.seq)
            return
        kind = _PEER_KIND.get((message.kind, message.action)) or _PEER_EVIDENCE.get(message.kind)
        if kind is None:
            self.counters["peer:unused"] += 1
            return
        firewall.peer_verdict(
            subject=message.subject, node=message.node, kind=kind, seq=message.seq, at=message.ts, ttl=message.ttl
        )

    # -- the connection ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected (reconnecting with backoff and jitter) until ``stop`` is set."""
        mesh = self._config.mesh
        delay = float(mesh.reconnect_min)
        while not stop.is_set():
            try:
                await self._session(stop)
                delay = float(mesh.reconnect_min)
            except aiomqtt.MqttError as exc:
                self.counters["disconnects"] += 1
                log.warning("mesh broker %s:%s: %s; retrying in %.1f s", mesh.host, mesh.port, exc, delay)
            self.connected.clear()
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay * random.uniform(0.5, 1.0)):
                    await stop.wait()
            delay = min(float(mesh.reconnect_max), delay * 2)

    async def _session(self, stop: asyncio.Event) -> None:
        status = status_topic(self.cluster, self.node)
        async with self._new_client(aiomqtt.Will(status, b"offline", qos=1, retain=True)) as client:
            # aiomqtt logs a warning per call beyond 10 unacknowledged: a batch in flight is normal here.
            client.pending_calls_threshold = 4 * PUBLISH_BATCH
            self._client = client
            self.counters["connects"] += 1
            # Subscribed before anything else: the session then holds the subscription, and the broker
            # keeps verdicts for us from this moment on, across reconnects.
            await client.subscribe(verdicts_filter(self.cluster), qos=1)
            await client.subscribe(sync_filter(self.cluster), qos=1)
            await client.publish(status, b"online", qos=1, retain=True)
            if not self._asked_to_sync:  # once per process: a reconnect resumes the persistent session
                await client.publish(sync_topic(self.cluster, self.node), b"", qos=1)
                self._asked_to_sync = True
            self.connected.set()
            log.info(
                "mesh: connected to %s:%s as %s/%s",
                self._config.mesh.host,
                self._config.mesh.port,
                self.cluster,
                self.node,
            )
            tasks = [
                asyncio.create_task(self._publisher(client)),
                asyncio.create_task(self._receiver(client)),
                asyncio.create_task(stop.wait()),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                if stop.is_set():
                    self.commit_fresh()
                    with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                        async with asyncio.timeout(2.0):
                            await self._publish_waiting(client)
                            await client.publish(status, b"offline", qos=1, retain=True)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                self._client = None

    def _new_client(self, will: aiomqtt.Will) -> aiomqtt.Client:
        mesh = self._config.mesh
        tls_context: ssl.SSLContext | None = None
        if mesh.tls:
            tls_context = ssl.create_default_context(cafile=mesh.tls_ca or None)
            if mesh.tls_cert:
                tls_context.load_cert_chain(mesh.tls_cert, mesh.tls_key or None)
        return aiomqtt.Client(
            mesh.host,
            mesh.port,
            username=mesh.username or None,
            password=os.environ.get(PASSWORD_VARIABLE) or mesh.password or None,
            identifier=f"callshield-{self.cluster}-{self.node}",
            # A persistent session: the broker keeps our subscription and queues QoS 1 verdicts while
            # we are away (a reconnect, a restart of this node), so none published meanwhile is missed.
            clean_session=False,
            will=will,
            keepalive=int(mesh.keepalive),
            timeout=CONNECT_TIMEOUT,  # aiomqtt waits forever for a CONNACK that a wrong listener never sends
            tls_context=tls_context,
            socket_options=[_NODELAY],
        )


_PEER_KIND: Final = {
    (MessageKind.VERDICT, Action.BLOCK): PeerKind.BLOCK,
    (MessageKind.VERDICT, Action.SCREEN): PeerKind.SCREEN,
}
_PEER_EVIDENCE: Final = {MessageKind.SCREEN_FAILED: PeerKind.SCREEN_FAILED, MessageKind.REPORT: PeerKind.REPORT}


def enqueue_event(config: Config, outbox: Outbox, *, kind: MessageKind, caller: str, now: float) -> int:
    """A message about an event outside a call (a CLI report, an admin unlist of a number) put
    straight into the outbox, where the running server's link finds and publishes it. Returns its
    sequence number. Raises ValueError for a caller that is not an E.164 number."""
    for _ in range(3):
        outbound = _outbound(config, last_seq=outbox.last_seq())
        if kind is MessageKind.REVOKE:
            message = outbound.revoke(caller, now=now)
        else:
            message = outbound.message(
                kind=kind, caller=caller, action=Action.SCREEN, score=0, now=now, reasons=(f"{kind.value}:cli",)
            )
        try:
            seq = outbox.append([(outbound.topic, encode_payload(message))], now, first_seq=message.seq)
        except StoreError:
            continue  # the server took the number meanwhile
        _remember_standing(outbox.connection, [message])
        return seq
    raise StoreError("could not take a mesh sequence number (the outbox is busy)")


def _outbound(config: Config, *, last_seq: int) -> Outbound:
    """This node's message builder and signer, as configured."""
    mesh = config.mesh
    cluster, node = config.mesh_identity()
    return Outbound(
        keyring=mesh.keyring(),
        cluster=cluster,
        node=node,
        last_seq=last_seq,
        privacy_key=mesh.privacy_secret(),
        block_ttl=float(mesh.block_ttl),
        screen_ttl=float(mesh.screen_ttl),
    )


def _remember_standing(conn: sqlite3.Connection, messages: list[MeshMessage]) -> None:
    """Keep this node's verdicts in force (one per subject, the newest) for catch-up answers."""
    with conn:
        for m in messages:
            if m.kind is MessageKind.REVOKE:
                conn.execute(STANDING_DELETE, (m.subject,))
            elif m.kind is MessageKind.VERDICT:
                conn.execute(
                    STANDING_UPSERT,
                    (
                        m.subject,
                        m.subject_kind.value,
                        m.kind.value,
                        m.action.value,
                        m.score,
                        json.dumps(m.reasons),
                        m.expires_at,
                    ),
                )


def _standing(conn: sqlite3.Connection, now: float) -> list[tuple[str, str, str, str, int, str, float]]:
    rows: list[tuple[str, str, str, str, int, str, float]] = conn.execute(
        "SELECT subject, subject_kind, kind, action, score, reasons, expires FROM mesh_standing WHERE expires > ?",
        (now,),
    ).fetchall()
    return rows


def _reshared(row: tuple[str, str, str, str, int, str, float], *, node: str, now: float) -> MeshMessage:
    """A standing verdict as a new message (its sequence number is given when it is committed)."""
    subject, subject_kind, kind, action, score, reasons, expires = row
    return MeshMessage(
        v=PROTOCOL_VERSION,
        node=node,
        seq=0,
        ts=now,
        subject=subject,
        subject_kind=SubjectKind(subject_kind),
        kind=MessageKind(kind),
        action=Action(action),
        score=score,
        reasons=tuple(json.loads(reasons)),
        evidence={},
        ttl=max(1.0, expires - now),
    )


def read_status(conn: sqlite3.Connection) -> dict[str, object] | None:
    """The last status a running link saved, or None."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (STATUS_KEY,)).fetchone()
    if row is None:
        return None
    data = json.loads(row[0])
    return data if isinstance(data, dict) else None
