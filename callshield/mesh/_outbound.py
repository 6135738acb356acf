"""Sending: this node's messages, numbered, signed and encoded, ready for the outbox and the broker.

Rules:

- Sequence numbers are per node, strictly increasing, consecutive: the next message gets
  ``last_seq + 1``. The caller passes the last number it persisted (``Outbox.last_seq()``) and
  persists the numbers of the messages it builds (``Outbox.append(..., first_seq=...)``).
- Which verdicts are shared (:meth:`Outbound.from_verdict`): a ``screen`` or ``block`` decided by
  the policy (``Verdict.decided``, so a shadow-mode node shares what it would have done), on a
  caller that is an E.164 number. Connects and callers without a number (anonymous, invalid,
  ...) are not shared. A block that stands only on peers' blocks (reason ``peer:quorum``) is not
  shared either: re-published, it would count as one more independent blocker on every other node
  and let a single rogue node's verdict reach a quorum through its echoes.
- The subject is the caller's E.164, or in privacy mode its keyed hash (``_privacy``).
- TTL: a block stays in force ``block_ttl``, anything else ``screen_ttl``; a revocation is kept
  ``block_ttl`` (as long as the verdicts it withdraws could stand).
- The callee is never read: it has no field in the payload.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

import msgspec

from callshield.mesh._message import (
    E164,
    MAX_REASONS,
    PROTOCOL_VERSION,
    REASON_CODE,
    MeshMessage,
    MessageKind,
    SubjectKind,
    encode_payload,
    stamped,
)
from callshield.mesh._privacy import subject_for
from callshield.mesh._signing import Keyring
from callshield.mesh._topics import check_name, verdict_topic
from callshield.verdict import Action, Verdict

__all__ = ["DEFAULT_BLOCK_TTL", "DEFAULT_SCREEN_TTL", "Outbound", "OutboundMessage"]

DEFAULT_BLOCK_TTL: Final = 7 * 86400.0
DEFAULT_SCREEN_TTL: Final = 86400.0
REVOKE_REASON: Final = "admin:unlist"
PEER_BLOCK_REASON: Final = "peer:quorum"
_SHARED_ACTIONS: Final = frozenset({Action.SCREEN, Action.BLOCK})


class OutboundMessage(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One signed message ready to publish (QoS 1, not retained)."""

    topic: str
    payload: bytes
    """The envelope bytes (see ``_signing``)."""
    seq: int


class Outbound:
    """This node's side of the mesh: builds messages with sequence numbers, signs and encodes them."""

    def __init__(
        self,
        *,
        keyring: Keyring,
        cluster: str,
        node: str,
        last_seq: int = 0,
        privacy_key: bytes | None = None,
        block_ttl: float = DEFAULT_BLOCK_TTL,
        screen_ttl: float = DEFAULT_SCREEN_TTL,
    ) -> None:
        if last_seq < 0:
            raise ValueError("last_seq cannot be negative")
        if privacy_key is not None and len(privacy_key) < 32:
            raise ValueError("the privacy key must be at least 32 bytes")
        self._keyring = keyring
        self._node = check_name(node, what="node")
        self._topic = verdict_topic(cluster, node)
        self._last_seq = last_seq
        self._privacy_key = privacy_key
        self._block_ttl = block_ttl
        self._screen_ttl = screen_ttl

    @property
    def topic(self) -> str:
        """This node's verdict topic."""
        return self._topic

    @property
    def last_seq(self) -> int:
        """The last sequence number handed out (persist it with the messages)."""
        return self._last_seq

    @property
    def subject_kind(self) -> SubjectKind:
        """``hash`` in privacy mode, else ``e164``."""
        return SubjectKind.E164 if self._privacy_key is None else SubjectKind.HASH

    def subject(self, e164: str) -> str:
        """What the mesh calls this number: itself, or its keyed hash in privacy mode."""
        if self._privacy_key is None:
            if not E164.fullmatch(e164):
                raise ValueError("not an E.164 number")
            return e164
        return subject_for(e164, self._privacy_key)

    def message(
        self,
        *,
        kind: MessageKind,
        caller: str,
        action: Action,
        score: int,
        now: float,
        reasons: Iterable[str] = (),
        evidence: Mapping[str, int] | None = None,
        ttl: float | None = None,
    ) -> MeshMessage:
        """A new message about ``caller`` (an E.164 number) with the next sequence number.

        Raises ValueError (and uses no sequence number) if the message breaks the payload rules.
        """
        message = MeshMessage(
            v=PROTOCOL_VERSION,
            node=self._node,
            seq=self._last_seq + 1,
            ts=now,
            subject=self.subject(caller),
            subject_kind=self.subject_kind,
            kind=kind,
            action=action,
            score=score,
            reasons=_codes(reasons),
            evidence=dict(evidence or {}),
            ttl=self._ttl(kind, action) if ttl is None else ttl,
        )
        self._last_seq = message.seq
        return message

    def from_verdict(
        self, verdict: Verdict, *, now: float | None = None, evidence: Mapping[str, int] | None = None
    ) -> MeshMessage | None:
        """The ``verdict`` message for a local decision, or None when it is not shared (module rules)."""
        if verdict.decided not in _SHARED_ACTIONS or not E164.fullmatch(verdict.caller):
            return None
        codes = (verdict.reason, *(reason.code for reason in verdict.reasons))
        if PEER_BLOCK_REASON in codes:
            return None
        return self.message(
            kind=MessageKind.VERDICT,
            caller=verdict.caller,
            action=verdict.decided,
            score=verdict.score,
            now=verdict.decided_at if now is None else now,
            reasons=codes,
            evidence=evidence,
        )

    def revoke(self, caller: str, *, now: float, reasons: Iterable[str] = (REVOKE_REASON,)) -> MeshMessage:
        """A revocation: peers drop this node's earlier messages on ``caller`` (an admin unlist)."""
        return self.message(
            kind=MessageKind.REVOKE, caller=caller, action=Action.CONNECT, score=0, now=now, reasons=reasons
        )

    def seal(self, message: MeshMessage, *, now: float | None = None) -> OutboundMessage:
        """Sign and encode ``message`` with the current key; with ``now``, its ``ts`` is set to it first
        (a message kept in an outbox through a long broker outage is not stale when finally sent)."""
        if now is not None and now != message.ts:
            message = stamped(message, ts=now)
        payload = encode_payload(message)
        return OutboundMessage(topic=self._topic, payload=self._keyring.seal(self._topic, payload), seq=message.seq)

    def _ttl(self, kind: MessageKind, action: Action) -> float:
        if kind is MessageKind.REVOKE or action is Action.BLOCK:
            return self._block_ttl
        return self._screen_ttl


def _codes(reasons: Iterable[str]) -> tuple[str, ...]:
    """Valid reason codes, first occurrence each, at most MAX_REASONS (others are dropped)."""
    seen: dict[str, None] = {}
    for code in reasons:
        if len(seen) == MAX_REASONS:
            break
        if len(code) <= 64 and REASON_CODE.fullmatch(code):
            seen.setdefault(code, None)
    return tuple(seen)
