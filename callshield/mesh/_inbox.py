"""Receiving: a sans-I/O inbox, MQTT (topic, payload bytes) in, an accepted message or a counted rejection out.

Checks, in this fixed order (cheapest first; the first that fails names the rejection):

  ==================  ==============================================================================
  ``oversized``       ``len(payload) > max_bytes`` (8 KiB): decided before any parsing, O(1)
  ``bad_topic``       the topic is not ``callshield/v1/{cluster}/verdicts/{node}`` with valid names
  ``foreign_cluster`` the topic's cluster is not ours
  ``own``             the topic's node is ours: the broker echoing our own message back
  ``malformed``       not UTF-8 JSON, not an envelope ``{"kid", "payload", "sig"}``, or the payload
                      object has no integer ``v``; or, for v1, breaks the payload rules (unknown
                      field, missing field, wrong type, value out of range)
  ``unknown_version`` the payload's ``v`` is not a version we speak (only 1)
  ``unsigned``        no (or an empty) ``kid`` or ``sig``
  ``unknown_key``     ``kid`` is not in the keyring
  ``expired_key``     ``kid`` is past its ``valid_until`` (key rotation ended)
  ``bad_signature``   ``sig`` is not HMAC-SHA256 of topic + ``\\n`` + the payload bytes under that key
  ``node_mismatch``   the payload's ``node`` is not the topic's node
  ``subject_kind``    the payload's ``subject_kind`` is not the cluster's (privacy mode or not)
  ``stale``           ``|now - ts| > max_skew`` (300 s): too old, or from a clock too far ahead
  ``replayed``        ``seq`` is older than the node's replay window (too old to tell: refused)
  ``duplicate``       ``seq`` was already accepted (QoS 1 redelivery, or a replay inside the window)
  ==================  ==============================================================================

Sequence rules, per sending node: the highest ``seq`` accepted and a bitmap of the ``replay_window``
numbers below it. A higher ``seq`` is accepted and moves the window; one inside the window not seen
before is accepted (a message that arrives late, e.g. an outbox drained while new verdicts flow);
one seen is a ``duplicate``; one below the window is ``replayed``. The first message of an unknown
node is accepted whatever its ``seq``. At most ``max_nodes`` nodes are tracked; beyond that the
least recently heard one is forgotten (counted in ``evicted_nodes``): after that, only the
``max_skew`` bound stops a replay of its messages (as after a restart, unless the caller persisted
:meth:`Inbox.high_water` and passes it back). Only messages that passed every check change this state.

Nothing raises, whatever the topic or the bytes: every outcome is an :class:`Accepted` or a
:class:`Rejected`, counted in :attr:`Inbox.stats` (``accepted`` and each reason). ``now`` is
given by the caller (the inbox never reads a clock).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import msgspec

from callshield.mesh._message import PROTOCOL_VERSION, MeshMessage, SubjectKind, decode_payload, payload_version
from callshield.mesh._signing import Keyring, open_envelope
from callshield.mesh._topics import check_name, parse_verdict_topic

__all__ = [
    "ACCEPTED",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_NODES",
    "DEFAULT_MAX_SKEW",
    "DEFAULT_REPLAY_WINDOW",
    "Accepted",
    "Inbox",
    "PeerStatus",
    "RejectReason",
    "Rejected",
]

DEFAULT_MAX_BYTES: Final = 8192
DEFAULT_MAX_SKEW: Final = 300.0
DEFAULT_REPLAY_WINDOW: Final = 4096
DEFAULT_MAX_NODES: Final = 1024
ACCEPTED: Final = "accepted"
"""The key of accepted messages in :attr:`Inbox.stats`."""


class RejectReason(StrEnum):
    """Why a message was dropped (in check order)."""

    OVERSIZED = "oversized"
    BAD_TOPIC = "bad_topic"
    FOREIGN_CLUSTER = "foreign_cluster"
    OWN = "own"
    MALFORMED = "malformed"
    UNKNOWN_VERSION = "unknown_version"
    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown_key"
    EXPIRED_KEY = "expired_key"
    BAD_SIGNATURE = "bad_signature"
    NODE_MISMATCH = "node_mismatch"
    SUBJECT_KIND = "subject_kind"
    STALE = "stale"
    REPLAYED = "replayed"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class Accepted:
    """A verified, fresh, first-seen message from a peer."""

    message: MeshMessage
    kid: str
    """The key it was signed with."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A dropped message and why."""

    reason: RejectReason
    node: str | None = None
    """The sending node named by the topic, when the topic could be parsed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerStatus:
    """What the inbox knows of one peer node (``callshield mesh status``)."""

    node: str
    highest_seq: int
    last_seen: float
    """``now`` of the last accepted message."""
    lag: float
    """``last_seen - ts`` of that message: transit delay plus clock difference."""
    accepted: int


class _Window:
    """The replay window of one node (see the sequence rules)."""

    __slots__ = ("accepted", "bits", "highest", "lag", "last_seen")

    def __init__(self, seq: int, bits: int = 1) -> None:
        self.highest = seq
        self.bits = bits  # bit i set: seq (highest - i) was accepted
        self.accepted = 0
        self.last_seen = 0.0
        self.lag = 0.0

    def check(self, seq: int, size: int) -> RejectReason | None:
        if seq > self.highest:
            return None
        offset = self.highest - seq
        if offset >= size:
            return RejectReason.REPLAYED
        return RejectReason.DUPLICATE if self.bits >> offset & 1 else None

    def mark(self, seq: int, size: int) -> None:
        if seq > self.highest:
            shift = seq - self.highest
            self.bits = (self.bits << shift | 1) & ((1 << size) - 1) if shift < size else 1
            self.highest = seq
        else:
            self.bits |= 1 << (self.highest - seq)


class Inbox:
    """Verifies and filters peer messages (module rules); one per node, fed by the MQTT client."""

    def __init__(
        self,
        *,
        keyring: Keyring,
        cluster: str,
        node: str,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_skew: float = DEFAULT_MAX_SKEW,
        replay_window: int = DEFAULT_REPLAY_WINDOW,
        max_nodes: int = DEFAULT_MAX_NODES,
        subject_kind: SubjectKind | None = None,
        high_water: Mapping[str, int] | None = None,
    ) -> None:
        """``subject_kind``: the cluster's (``hash`` in privacy mode); None accepts both.
        ``high_water``: the highest ``seq`` per node from a previous run, if the caller persisted it."""
        if max_bytes < 1 or max_skew <= 0 or replay_window < 1 or max_nodes < 1:
            raise ValueError("max_bytes, max_skew, replay_window and max_nodes must be positive")
        self._keyring = keyring
        self._cluster = check_name(cluster, what="cluster")
        self._node = check_name(node, what="node")
        self._max_bytes = max_bytes
        self._max_skew = max_skew
        self._window = replay_window
        self._max_nodes = max_nodes
        self._subject_kind = subject_kind
        self._peers: OrderedDict[str, _Window] = OrderedDict()
        for peer, seq in (high_water or {}).items():
            self._peers[peer] = _Window(seq, (1 << replay_window) - 1)  # below it: taken as seen
        self.stats: Counter[str] = Counter()
        """Messages ``accepted`` and rejected, by :class:`RejectReason` value."""
        self.evicted_nodes = 0
        """Peers forgotten because more than ``max_nodes`` were tracked."""

    def receive(self, topic: str, payload: bytes, now: float) -> Accepted | Rejected:
        """Check one MQTT message (module rules); never raises."""
        try:
            outcome = self._receive(topic, payload, now)
        except Exception:  # a bug must not take the receiver down: count it as malformed
            outcome = Rejected(RejectReason.MALFORMED)
        self.stats[ACCEPTED if isinstance(outcome, Accepted) else outcome.reason.value] += 1
        return outcome

    def peers(self) -> tuple[PeerStatus, ...]:
        """Every tracked peer, least recently heard first."""
        return tuple(
            PeerStatus(node=name, highest_seq=w.highest, last_seen=w.last_seen, lag=w.lag, accepted=w.accepted)
            for name, w in self._peers.items()
        )

    def high_water(self) -> dict[str, int]:
        """The highest accepted ``seq`` per node (to persist and pass back as ``high_water``)."""
        return {name: window.highest for name, window in self._peers.items()}

    def _receive(self, topic: str, payload: bytes, now: float) -> Accepted | Rejected:
        if not isinstance(payload, bytes | bytearray | memoryview):
            return Rejected(RejectReason.MALFORMED)
        if len(payload) > self._max_bytes:
            return Rejected(RejectReason.OVERSIZED, _topic_node(topic))
        where = parse_verdict_topic(topic)
        if where is None:
            return Rejected(RejectReason.BAD_TOPIC)
        cluster, node = where
        if cluster != self._cluster:
            return Rejected(RejectReason.FOREIGN_CLUSTER, node)
        if node == self._node:
            return Rejected(RejectReason.OWN, node)
        parsed = _parse(payload)
        if isinstance(parsed, RejectReason):
            return Rejected(parsed, node)
        kid, sig, raw, message = parsed
        reason = self._check_signature(topic, kid, sig, raw, now) or self._check_message(node, message, now)
        if reason is not None:
            return Rejected(reason, node)
        self._remember(message, now)
        assert kid is not None
        return Accepted(message, kid)

    def _check_signature(
        self, topic: str, kid: str | None, sig: str | None, raw: bytes, now: float
    ) -> RejectReason | None:
        if not kid or not sig:
            return RejectReason.UNSIGNED
        key = self._keyring.key(kid)
        if key is None:
            return RejectReason.UNKNOWN_KEY
        if key.valid_until is not None and now > key.valid_until:
            return RejectReason.EXPIRED_KEY
        if not self._keyring.verify(key, topic, raw, sig):
            return RejectReason.BAD_SIGNATURE
        return None

    def _check_message(self, node: str, message: MeshMessage, now: float) -> RejectReason | None:
        if message.node != node:
            return RejectReason.NODE_MISMATCH
        if self._subject_kind is not None and message.subject_kind is not self._subject_kind:
            return RejectReason.SUBJECT_KIND
        if not abs(now - message.ts) <= self._max_skew:
            return RejectReason.STALE
        window = self._peers.get(node)
        return None if window is None else window.check(message.seq, self._window)

    def _remember(self, message: MeshMessage, now: float) -> None:
        window = self._peers.get(message.node)
        if window is None:
            window = self._peers[message.node] = _Window(message.seq)
            if len(self._peers) > self._max_nodes:
                self._peers.popitem(last=False)
                self.evicted_nodes += 1
        else:
            window.mark(message.seq, self._window)
            self._peers.move_to_end(message.node)
        window.accepted += 1
        window.last_seen = now
        window.lag = now - message.ts


def _parse(payload: bytes | bytearray | memoryview) -> tuple[str | None, str | None, bytes, MeshMessage] | RejectReason:
    """The envelope's key id, signature, raw payload bytes and decoded v1 payload; or why not."""
    try:  # msgspec raises RecursionError for deep nesting ({"payload":[[[[...): a few KiB are enough
        kid, sig, raw = open_envelope(payload)
    except (msgspec.DecodeError, RecursionError):
        return RejectReason.MALFORMED
    try:  # the usual case first: a valid v1 payload (its rules include v == 1)
        return kid, sig, raw, decode_payload(raw)
    except (msgspec.DecodeError, RecursionError):
        pass
    try:  # not one: a version we do not speak, or malformed
        version = payload_version(raw)
    except (msgspec.DecodeError, RecursionError):
        return RejectReason.MALFORMED
    return RejectReason.UNKNOWN_VERSION if version != PROTOCOL_VERSION else RejectReason.MALFORMED


def _topic_node(topic: str) -> str | None:
    """The node of a verdict topic, for the rejection record only (the topic is not otherwise trusted)."""
    where = parse_verdict_topic(topic)
    return None if where is None else where[1]
