"""The reputation mesh's message layer (issue 4, DESIGN contract 2), sans-I/O: no broker, no clock.

Verdicts become signed MQTT messages, and received MQTT messages become accepted peer messages or
counted rejections. The MQTT client (aiomqtt) and the engine only carry bytes and call these.
Modules, each headed by its rules: topic names (``_topics``), the payload (``_message``), the
envelope and keys (``_signing``), privacy-mode subjects (``_privacy``), sending (``_outbound``)
and receiving (``_inbox``).

Sending::

    outbound = Outbound(keyring=keyring, cluster="acme", node="pbx-1", last_seq=outbox.last_seq())
    message = outbound.from_verdict(verdict)             # None when the verdict is not shared
    sealed = outbound.seal(message)                      # OutboundMessage(topic, payload, seq)

Receiving::

    inbox = Inbox(keyring=keyring, cluster="acme", node="pbx-1")
    outcome = inbox.receive(topic, payload, now)         # Accepted(message, kid) or Rejected(reason)
"""

from __future__ import annotations

from callshield.mesh._inbox import (
    ACCEPTED,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_NODES,
    DEFAULT_MAX_SKEW,
    DEFAULT_REPLAY_WINDOW,
    Accepted,
    Inbox,
    PeerStatus,
    Rejected,
    RejectReason,
)
from callshield.mesh._message import (
    PROTOCOL_VERSION,
    MeshMessage,
    MessageKind,
    SubjectKind,
    decode_payload,
    encode_payload,
    stamped,
)
from callshield.mesh._outbound import DEFAULT_BLOCK_TTL, DEFAULT_SCREEN_TTL, Outbound, OutboundMessage
from callshield.mesh._privacy import subject_for
from callshield.mesh._signing import MIN_SECRET_BYTES, Keyring, SigningKey, check_key_id, decode_secret, signature
from callshield.mesh._topics import (
    MAX_NAME_LENGTH,
    TOPIC_ROOT,
    check_name,
    is_valid_name,
    parse_sync_topic,
    parse_verdict_topic,
    status_filter,
    status_topic,
    sync_filter,
    sync_topic,
    verdict_topic,
    verdicts_filter,
)

__all__ = [
    "ACCEPTED",
    "DEFAULT_BLOCK_TTL",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_NODES",
    "DEFAULT_MAX_SKEW",
    "DEFAULT_REPLAY_WINDOW",
    "DEFAULT_SCREEN_TTL",
    "MAX_NAME_LENGTH",
    "MIN_SECRET_BYTES",
    "PROTOCOL_VERSION",
    "TOPIC_ROOT",
    "Accepted",
    "Inbox",
    "Keyring",
    "MeshMessage",
    "MessageKind",
    "Outbound",
    "OutboundMessage",
    "PeerStatus",
    "RejectReason",
    "Rejected",
    "SigningKey",
    "SubjectKind",
    "check_key_id",
    "check_name",
    "decode_payload",
    "decode_secret",
    "encode_payload",
    "is_valid_name",
    "parse_sync_topic",
    "parse_verdict_topic",
    "signature",
    "stamped",
    "status_filter",
    "status_topic",
    "subject_for",
    "sync_filter",
    "sync_topic",
    "verdict_topic",
    "verdicts_filter",
]
