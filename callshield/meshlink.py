"""The node's link to the mesh: its verdicts out through the outbox, peers' verdicts in to the engine.

The I/O half of issue 4 (the message rules are in :mod:`callshield.mesh`, sans-I/O). One
:class:`MeshLink` per node, in the server's event loop, with one aiomqtt client (MQTT 5):

- Out: the engine calls :meth:`MeshLink.on_verdict` for each decision; shared ones (blocks and
  screens on a caller's own evidence) become messages. The link's pump commits what came since its
  last round to the outbox in one transaction (numbered, stamped with the sending time, with their
  ``mesh_standing`` rows and the removal of what the broker acknowledged meanwhile), then signs and
  publishes them at QoS 1, oldest first, at most ``PUBLISH_WINDOW`` (or the broker's Receive Maximum)
  unacknowledged at once, and removes each once the broker has acknowledged it (PUBACK). Broker down:
  decisions go on, the pump
  still commits, messages wait in the outbox and drain in order on reconnect. A message published
  twice (a crash between PUBACK and the removal) is harmless: receivers drop it by its sequence number.
- In: messages on the cluster's verdict topics go through :class:`callshield.mesh.Inbox` (verify,
  drop stale, replayed, oversized, forged; count each reason); accepted verdicts become
  ``Firewall.peer_verdict`` / ``peer_revoke``. The subscription is "no local" (MQTT 5): the broker
  does not send a node its own messages back.
- Status: ``online`` retained on connect, ``offline`` retained as the last will and on a clean stop.
- Reconnect with exponential backoff and jitter between ``reconnect_min`` and ``reconnect_max``.
- Catching up: the session is persistent (clean start off, a session that never expires: the broker
  queues verdicts while we are away, and keeps them across its own restarts with persistence on),
  and when the process starts the node also asks its peers on ``callshield/v1/{cluster}/sync/{node}``;
  each peer answers, at most once per ``SYNC_COOLDOWN`` for each requester, by sharing again (new
  sequence numbers, remaining TTL) its verdicts still in force, kept in ``mesh_standing``. Peers that
  already hold them just replace them with the same content; a node that joins late or was away
  beyond the broker's queue gets them all. The request carries no data, so a forged one can only cost
  a rate-limited re-send.

Below aiomqtt (each per message, so each costs at 5,000 verdicts/s; the paho client is aiomqtt's own,
``aiomqtt.Client._client``, driven by aiomqtt's socket callbacks on this loop):

- publishing calls paho's ``publish`` and tracks the PUBACKs itself (one dict entry per message,
  through paho's ``on_publish``, which is chained to aiomqtt's for aiomqtt's own publishes) instead of
  ``aiomqtt.Client.publish``: that awaits an ``asyncio.Event`` under ``wait_for`` per message and
  scans every pending call twice per call;
- receiving takes paho's ``on_message`` and handles each message in that callback instead of
  aiomqtt's queue, whose iterator makes a task and an ``asyncio.wait`` per message. aiomqtt's message
  iterator is still awaited: it ends the session when the connection drops.
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
from collections import Counter, deque
from collections.abc import Callable
from typing import Any, Final, cast

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

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
    stamped,
    status_topic,
    sync_filter,
    sync_topic,
    verdicts_filter,
)
from callshield.outbox import Outbox, OutboxEntry, StandingRow
from callshield.peers import PeerKind
from callshield.verdict import Action, Verdict

__all__ = ["STATUS_KEY", "MeshLink", "enqueue_event", "read_status"]

log = logging.getLogger(__name__)

PUBLISH_WINDOW: Final = 1000
"""Messages handed to the MQTT client and not yet acknowledged, at most; the rest wait (in memory and
in the outbox). Fewer if the broker's CONNACK says so: MQTT 5's Receive Maximum, which paho does not
apply itself (Mosquitto says its ``max_inflight_messages``, 20 by default)."""
UNSENT_MAX: Final = 10_000
"""Committed messages kept signed in memory until sent; beyond that they are read back from the outbox."""
ACK_LINGER: Final = 0.05
"""Seconds acknowledged messages may wait for the next round's transaction before one of their own."""
ACK_BATCH: Final = 500
"""Acknowledged messages that make a round of their own at once."""
RESTAMP_AFTER: Final = 30.0
"""A message committed longer ago than this (seconds) is stamped with the sending time and signed again
when it is finally sent, so a long outage does not make it stale at the receivers (``max_skew`` 300 s)."""
OUTBOX_POLL: Final = 0.5
"""Seconds between looks at the outbox for rows other processes (the CLI) added."""
STANDING_PRUNE: Final = 600.0
"""Seconds between two removals of shared verdicts no longer in force from ``mesh_standing``."""
READ_BURST: Final = 100
"""Packets read at most in one go before the loop's other callbacks run again."""
_NODELAY: Final = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
CONNECT_TIMEOUT: Final = 10.0
DRAIN_TIMEOUT: Final = 2.0
"""Seconds a clean stop waits for the outbox to be published and acknowledged."""
LAST_COMMIT_WAIT: Final = 5.0
"""Seconds the final commit of a stopping link may wait for the database."""
OUTBOX_BUSY_RETRY: Final = 0.005
"""Seconds before the pump tries the outbox again when the database was busy."""
SESSION_NEVER_EXPIRES: Final = 0xFFFFFFFF
PASSWORD_VARIABLE: Final = "CALLSHIELD_MQTT_PASSWORD"  # noqa: S105 (a variable name, not a secret)
"""Environment variable that overrides ``mesh.password`` (keep secrets out of config files)."""
SYNC_COOLDOWN: Final = 30.0
"""Seconds between two catch-up answers of this node to the same peer."""
MAX_SYNC_PEERS: Final = 1024
STATUS_KEY: Final = "mesh_status"
"""meta key of the running link's status (JSON), for ``callshield mesh status``."""
_REFUSED: Final = 0x80
"""PUBACK reason codes from here on are the broker's refusal (MQTT 5); below, success."""

_OnPublish = Callable[[paho.Client, Any, int, ReasonCode, Properties], None]
_OnConnect = Callable[[paho.Client, Any, paho.ConnectFlags, ReasonCode, Properties | None], None]


class MeshLink:
    """This node's MQTT client for the reputation mesh (see the module docstring)."""

    def __init__(self, *, firewall: Firewall, config: Config, outbox: Outbox) -> None:
        mesh = config.mesh
        self._firewall = firewall
        self._config = config
        self._outbox = outbox
        self.cluster, self.node = config.mesh_identity()
        self._outbound = _outbound(config, last_seq=outbox.last_seq())
        self._keyring = mesh.keyring()
        self.inbox = Inbox(
            keyring=mesh.keyring(),
            cluster=self.cluster,
            node=self.node,
            subject_kind=SubjectKind.HASH if mesh.privacy else SubjectKind.E164,
            max_bytes=mesh.max_message_bytes,
            max_skew=float(mesh.max_skew),
        )
        # The outbox commits on the event loop while the server's writer thread may hold the database's
        # write lock for a batch: fail at once instead of blocking the loop; the pump retries shortly.
        outbox.connection.execute("PRAGMA busy_timeout = 0")
        self._fresh: list[MeshMessage] = []
        """Messages made since the pump's last round (not committed yet)."""
        self._acked: list[int] = []
        """Sequence numbers the broker acknowledged, to remove from the outbox in the next round."""
        self._unsent: deque[tuple[int, bytes, float]] = deque()
        """(seq, signed payload, ts): committed, not yet handed to the client; exactly the outbox's rows
        after ``_cursor`` unless ``_behind``."""
        self._behind = True
        """The outbox may hold rows after ``_cursor`` that are not in ``_unsent``: read them from it."""
        self._cursor = 0
        """The last sequence number handed to the client in this session."""
        self._last_committed = outbox.last_seq()
        self._in_flight: dict[int, int] = {}
        """paho message id -> sequence number, for the publishes awaiting their PUBACK."""
        self._paho: paho.Client | None = None
        """The connected session's paho client (aiomqtt's), or None between sessions."""
        self._window = PUBLISH_WINDOW
        """The session's window: what the broker accepts unacknowledged (CONNACK), capped at PUBLISH_WINDOW."""
        self._answered: dict[str, float] = {}  # requester -> when we last answered it
        self._asked_to_sync = False
        self._last_prune = float("-inf")
        self._loop: asyncio.AbstractEventLoop | None = None
        """The running link's loop (set by :meth:`run`): rounds are its callbacks."""
        self._round_due = False
        self._remove_acked = False
        self._flush_due = False
        self._read_due = False
        self._reading = False
        self._progress = False
        self._poll: asyncio.TimerHandle | None = None
        self.connected = asyncio.Event()
        self.counters: Counter[str] = Counter()
        """published, publish_failed, connects, disconnects, peer messages applied, ..."""

    # -- out -----------------------------------------------------------------------------------------

    def on_verdict(self, verdict: Verdict) -> None:
        """The engine decided: share a block or screen made on this node's own evidence."""
        message = self._outbound.from_verdict(verdict, now=self._firewall.clock.now())
        if message is not None:
            self._fresh.append(message)
            self._schedule()

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
        self._schedule()

    def backlog(self) -> int:
        """Messages made here and not yet acknowledged by the broker (memory and outbox)."""
        return len(self._fresh) + self._outbox.depth()

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
            "peer_subjects": self._firewall.peers.subjects(),
            "peer_evicted": self._firewall.peers.evicted,
        }

    def save_status(self) -> None:
        """Write :meth:`status` to the mesh's database (``callshield mesh status`` reads it from there)."""
        self._outbox.save_meta(STATUS_KEY, json.dumps(self.status(), separators=(",", ":")))

    # -- the pump: outbox in, client out -------------------------------------------------------------

    def commit_fresh(self) -> int:
        """Commit the messages made since the last call to the outbox, and remove the ones the broker
        acknowledged, in one transaction; return how many were committed.

        Raises ``sqlite3.OperationalError`` when the database is busy: everything is kept for the
        next call.
        """
        fresh, acked = self._fresh, self._acked
        if not fresh and not acked:
            return 0
        now = self._firewall.clock.now()
        topic = self._outbound.topic
        committed = self._outbox.commit(fresh, topic=topic, now=now, acknowledged=acked)
        self._fresh, self._acked = [], []
        entries = committed.entries
        if not entries:
            return 0
        if (
            self._behind
            or committed.dropped
            or committed.after != self._last_committed  # another process's rows lie in between
            or len(self._unsent) + len(entries) > UNSENT_MAX
        ):
            self._fall_behind()
        else:
            seal = self._keyring.seal
            self._unsent.extend((e.seq, seal(topic, e.payload), now) for e in entries)
        self._last_committed = entries[-1].seq
        self.counters["committed"] += len(entries)
        return len(entries)

    def _fall_behind(self) -> None:
        self._behind = True
        self._unsent.clear()

    def _send(self) -> bool:
        """Hand committed messages to the client, oldest first, within the window; False if it refused."""
        client = self._paho
        if client is None:
            return True
        room = self._window - len(self._in_flight)
        now = self._firewall.clock.now()
        while room > 0:
            if self._behind:
                rows = self._outbox.pending(room, after=self._cursor)
                if len(rows) < room:  # read to the end: from here on the fresh ones follow the cursor
                    self._behind = False
                    self._last_committed = max(self._last_committed, self._outbox.last_seq())
                batch = [(row.seq, self._sealed(row, now), row.created) for row in rows]
            else:
                unsent = self._unsent
                batch = [unsent.popleft() for _ in range(min(room, len(unsent)))]
                if batch and now - batch[0][2] > RESTAMP_AFTER:  # waited long (an outage): stamp again
                    self._fall_behind()
                    continue
            if not batch:
                return True
            for seq, payload, _ in batch:
                if not self._publish(client, seq, payload):
                    self._fall_behind()
                    return False
            room -= len(batch)
        return True

    def _sealed(self, row: OutboxEntry, now: float) -> bytes:
        """A waiting row signed for sending (stamped again first if it waited more than RESTAMP_AFTER)."""
        payload = row.payload
        if now - row.created > RESTAMP_AFTER:
            payload = encode_payload(stamped(decode_payload(payload), ts=now))
        return self._keyring.seal(self._outbound.topic, payload)  # the topic it is published on

    def _publish(self, client: paho.Client, seq: int, payload: bytes) -> bool:
        info = client.publish(self._outbound.topic, payload, qos=1)
        if info.rc != paho.MQTT_ERR_SUCCESS:  # no connection: the session is ending; the outbox keeps it
            self.counters["publish_failed"] += 1
            return False
        self._in_flight[info.mid] = seq
        self._cursor = seq
        return True

    def _chain_on_publish(self, aiomqtt_on_publish: _OnPublish | None) -> _OnPublish:
        """paho's PUBACK callback: ours for the link's publishes, aiomqtt's for the others."""
        in_flight, counters, schedule = self._in_flight, self.counters, self._schedule
        later = asyncio.get_running_loop().call_later

        def on_publish(client: paho.Client, userdata: Any, mid: int, reason: ReasonCode, props: Properties) -> None:
            seq = in_flight.pop(mid, None)
            if seq is None:
                if aiomqtt_on_publish is not None:
                    aiomqtt_on_publish(client, userdata, mid, reason, props)
                return
            if reason.value >= _REFUSED:  # kept in the outbox: sent again with the next session
                counters[f"publish_refused:{reason.getName()}"] += 1
                return
            self._read_on(client)
            acked = self._acked  # (the pump swaps the list at each round)
            acked.append(seq)
            counters["published"] += 1
            if len(acked) == 1:  # removed with the next round, or at the latest after ACK_LINGER
                later(ACK_LINGER, self._acks_due)
            if len(acked) >= ACK_BATCH or (len(in_flight) <= self._window // 2 and self._waiting()):
                schedule()

        return on_publish

    def _waiting(self) -> bool:
        """Whether committed messages wait for room in the window."""
        return self._behind or bool(self._unsent)

    def _schedule(self) -> None:
        """Run a round soon (once per loop iteration, whatever asked for it); before :meth:`run`, nothing."""
        if not self._round_due and self._loop is not None:
            self._round_due = True
            self._loop.call_soon(self._round)

    def _acks_due(self) -> None:
        """Acknowledged messages waited ACK_LINGER: remove them in the next round even without new ones."""
        self._remove_acked = True
        self._schedule()

    def _round(self) -> None:
        """Commit what came since the last round, then hand what the window allows to the client.

        A round with nothing new (one to fill the window as PUBACKs come) leaves acknowledged rows for
        a later one (at most ACK_LINGER, or ACK_BATCH of them): no transaction just to remove a few.
        """
        self._round_due = False
        try:
            if self._fresh or self._remove_acked or len(self._acked) >= ACK_BATCH:
                self.commit_fresh()
                self._remove_acked = False
        except sqlite3.OperationalError:  # the database is busy (the writer's batch): again shortly
            self.counters["outbox:busy"] += 1
            if self._loop is not None:
                self._loop.call_later(OUTBOX_BUSY_RETRY, self._schedule)
            return
        self._send()

    def _tick(self) -> None:
        """Every OUTBOX_POLL: rows of other processes (the CLI), acknowledgements left over, upkeep."""
        assert self._loop is not None
        self._poll = self._loop.call_later(OUTBOX_POLL, self._tick)
        self._idle()
        if self._acked:
            self._remove_acked = True
        if self._acked or self._fresh or (self._paho is not None and self._waiting()):
            self._schedule()

    def _idle(self) -> None:
        """Nothing happened for a while: look for rows other processes added; tidy ``mesh_standing``."""
        if not self._behind and self._outbox.last_seq() != self._last_committed:
            self._fall_behind()
        now = self._firewall.clock.now()
        if now - self._last_prune >= STANDING_PRUNE:
            self._last_prune = now
            with contextlib.suppress(sqlite3.OperationalError):
                self._outbox.prune_standing(now)

    async def _drain(self) -> None:
        """Before a clean stop: publish what waits and wait for the acknowledgements (bounded by the caller)."""
        while True:
            try:
                self.commit_fresh()
            except sqlite3.OperationalError:
                await asyncio.sleep(OUTBOX_BUSY_RETRY)
                continue
            if not self._send():
                return
            if not self._in_flight and not self._unsent and not self._behind and not self._acked:
                return
            await asyncio.sleep(0.01)

    # -- writing to the socket -----------------------------------------------------------------------

    def _on_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        """paho has packets to write: write them at the end of this loop iteration, all together.

        (aiomqtt's handler registers a writer through ``call_soon_threadsafe`` for each burst: a wake-up
        write, two epoll changes and one more loop iteration per packet written.)
        """
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush_writes, client)

    def _flush_writes(self, client: paho.Client) -> None:
        self._flush_due = False
        try:
            client.loop_write()
        except Exception:  # (paho reports a broken connection by its return code and on_disconnect)
            self.counters["write:error"] += 1
            log.exception("mesh: writing to the broker failed")
            return
        sock = client.socket()
        if client.want_write() and sock is not None:
            # The socket's buffer is full: wait until it is writable (paho removes the writer through
            # aiomqtt's unregister callback once everything is written).
            asyncio.get_running_loop().add_writer(sock.fileno(), self._flush_writes, client)

    # -- in ------------------------------------------------------------------------------------------

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        """paho's message callback (in aiomqtt's socket reader, on this loop): handle it at once."""
        try:
            payload = message.payload
            self._dispatch(message.topic, payload if isinstance(payload, bytes) else bytes(payload))
        except Exception:  # never into paho: it would end the session
            self.counters["receive:error"] += 1
            log.exception("mesh: a received message could not be handled")
        self._read_on(client)

    def _read_on(self, client: paho.Client) -> None:
        """A packet was read: read what else has arrived in this loop iteration.

        aiomqtt's reader reads one packet per readable event when nothing of ours awaits a PUBACK
        (paho's ``loop_read`` reads as many packets as messages are in flight): a busy loop then
        takes a whole iteration (a chunk of decisions) per peer verdict.
        """
        self._progress = True
        if not self._read_due and not self._reading:
            self._read_due = True
            asyncio.get_running_loop().call_soon(self._read_more, client)

    def _read_more(self, client: paho.Client) -> None:
        self._read_due = False
        if client is not self._paho:
            return
        self._reading = True
        try:
            for _ in range(READ_BURST):
                self._progress = False
                # A packet handled calls back (_on_message, the PUBACK callback): progress. Nothing
                # left to read, half a packet, or another kind of packet: stop; the socket's next
                # readable event continues (aiomqtt's reader).
                if client.loop_read() != paho.MQTT_ERR_SUCCESS or not self._progress:
                    return
        except Exception:  # paho reports a lost connection by its return code and on_disconnect
            self.counters["read:error"] += 1
            log.exception("mesh: reading from the broker failed")
            client.disconnect()
            return
        finally:
            self._reading = False
        self._read_on(client)  # more may wait: after the loop's other callbacks

    async def _receiver(self, client: aiomqtt.Client) -> None:
        # Messages reach _on_message; this iterator ends the session when the connection drops (and
        # takes what arrived before _on_message was installed).
        async for message in client.messages:
            payload = message.payload
            self._dispatch(message.topic.value, payload if isinstance(payload, bytes) else str(payload or "").encode())

    def _dispatch(self, topic: str, payload: bytes) -> None:
        requester = parse_sync_topic(topic)
        if requester is not None:
            self.sync_requested(requester[1])
            return
        self.receive(topic, payload)

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
        again = [_reshared(row, node=self.node, now=now) for row in self._outbox.standing(now)]
        self._fresh.extend(again)
        self._schedule()
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
        self._loop = asyncio.get_running_loop()
        self._poll = self._loop.call_later(OUTBOX_POLL, self._tick)
        self._schedule()  # what was made before the link ran
        try:
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
        finally:
            if self._poll is not None:
                self._poll.cancel()
            self._loop = None  # no more rounds
            self._commit_last()

    def _commit_last(self) -> None:
        """Stopping: commit what was made, waiting for the database if it must (the loop has no more to do)."""
        conn = self._outbox.connection
        conn.execute(f"PRAGMA busy_timeout = {int(LAST_COMMIT_WAIT * 1000)}")
        try:
            self.commit_fresh()
        except sqlite3.OperationalError as exc:
            log.error("mesh: %d messages could not be committed to the outbox: %s", len(self._fresh), exc)
        finally:
            conn.execute("PRAGMA busy_timeout = 0")

    async def _session(self, stop: asyncio.Event) -> None:
        status = status_topic(self.cluster, self.node)
        async with self._new_client(aiomqtt.Will(status, b"offline", qos=1, retain=True)) as client:
            self.counters["connects"] += 1
            # Subscribed before anything else: the session then holds the subscription, and the broker
            # keeps verdicts for us from this moment on, across reconnects. No local: not our own.
            no_local = SubscribeOptions(qos=1, noLocal=True)
            await client.subscribe(verdicts_filter(self.cluster), options=no_local)
            await client.subscribe(sync_filter(self.cluster), options=no_local)
            await client.publish(status, b"online", qos=1, retain=True)
            if not self._asked_to_sync:  # once per process: a reconnect resumes the persistent session
                await client.publish(sync_topic(self.cluster, self.node), b"", qos=1)
                self._asked_to_sync = True
            self._attach(client._client)  # aiomqtt's paho client: see the module docstring
            self.connected.set()
            log.info(
                "mesh: connected to %s:%s as %s/%s",
                self._config.mesh.host,
                self._config.mesh.port,
                self.cluster,
                self.node,
            )
            tasks = [asyncio.create_task(self._receiver(client)), asyncio.create_task(stop.wait())]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                if stop.is_set():
                    with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                        async with asyncio.timeout(DRAIN_TIMEOUT):
                            await self._drain()
                            await client.publish(status, b"offline", qos=1, retain=True)
            finally:
                self._detach()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    def _attach(self, client: paho.Client) -> None:
        """A session begins: publish from the outbox's oldest row; take paho's message and PUBACK callbacks."""
        self._in_flight.clear()
        self._cursor = 0
        self._fall_behind()
        # aiomqtt made its paho client with callback API version 2: this is its _on_publish.
        client.on_publish = self._chain_on_publish(cast("_OnPublish | None", client.on_publish))
        client.on_message = self._on_message
        client.on_socket_register_write = self._on_register_write
        self._paho = client
        self._schedule()

    def _detach(self) -> None:
        """The session ended: what was not acknowledged stays in the outbox, for the next one."""
        self._paho = None
        self._in_flight.clear()
        self._fall_behind()

    def _new_client(self, will: aiomqtt.Will) -> aiomqtt.Client:
        mesh = self._config.mesh
        tls_context: ssl.SSLContext | None = None
        if mesh.tls:
            tls_context = ssl.create_default_context(cafile=mesh.tls_ca or None)
            if mesh.tls_cert:
                tls_context.load_cert_chain(mesh.tls_cert, mesh.tls_key or None)
        # A persistent session: the broker keeps our subscription and queues QoS 1 verdicts while we
        # are away (a reconnect, a restart of this node), so none published meanwhile is missed.
        connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        connect.SessionExpiryInterval = SESSION_NEVER_EXPIRES
        client = aiomqtt.Client(
            mesh.host,
            mesh.port,
            username=mesh.username or None,
            password=os.environ.get(PASSWORD_VARIABLE) or mesh.password or None,
            identifier=f"callshield-{self.cluster}-{self.node}",
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=connect,
            will=will,
            keepalive=int(mesh.keepalive),
            timeout=CONNECT_TIMEOUT,  # aiomqtt waits forever for a CONNACK that a wrong listener never sends
            tls_context=tls_context,
            socket_options=[_NODELAY],
            max_inflight_messages=PUBLISH_WINDOW,  # the link's window applies first
        )
        paho_client = client._client  # aiomqtt's paho client: see the module docstring
        # (aiomqtt made it with callback API version 2: this is its _on_connect)
        paho_client.on_connect = self._chain_on_connect(cast("_OnConnect", paho_client.on_connect))
        return client

    def _chain_on_connect(self, aiomqtt_on_connect: _OnConnect) -> _OnConnect:
        """paho's CONNACK callback: note the broker's Receive Maximum, then aiomqtt's."""

        def on_connect(
            client: paho.Client, userdata: Any, flags: paho.ConnectFlags, reason: ReasonCode, props: Properties | None
        ) -> None:
            maximum = getattr(props, "ReceiveMaximum", None)  # absent: 65,535 (MQTT 5)
            self._window = PUBLISH_WINDOW
            if isinstance(maximum, int) and maximum > 0:
                self._window = min(PUBLISH_WINDOW, maximum)
            aiomqtt_on_connect(client, userdata, flags, reason, props)

        return on_connect


_PEER_KIND: Final = {
    (MessageKind.VERDICT, Action.BLOCK): PeerKind.BLOCK,
    (MessageKind.VERDICT, Action.SCREEN): PeerKind.SCREEN,
}
_PEER_EVIDENCE: Final = {MessageKind.SCREEN_FAILED: PeerKind.SCREEN_FAILED, MessageKind.REPORT: PeerKind.REPORT}


def enqueue_event(config: Config, outbox: Outbox, *, kind: MessageKind, caller: str, now: float) -> int:
    """A message about an event outside a call (a CLI report, an admin unlist of a number) put
    straight into the outbox, where the running server's link finds and publishes it. Returns its
    sequence number. Raises ValueError for a caller that is not an E.164 number."""
    outbound = _outbound(config, last_seq=0)  # numbered by the outbox, in its transaction
    if kind is MessageKind.REVOKE:
        message = outbound.revoke(caller, now=now)
    else:
        message = outbound.message(
            kind=kind, caller=caller, action=Action.SCREEN, score=0, now=now, reasons=(f"{kind.value}:cli",)
        )
    try:
        committed = outbox.commit([message], topic=outbound.topic, now=now)
    except sqlite3.OperationalError as exc:
        raise StoreError(f"could not queue the mesh message: {exc}") from None
    return committed.entries[0].seq


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


def _reshared(row: StandingRow, *, node: str, now: float) -> MeshMessage:
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
