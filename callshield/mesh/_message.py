"""The mesh payload (version 1): one frozen record, its canonical encoding and its strict decoding.

Payload rules (the only place that knows them):

- A JSON object with exactly these fields, all required; any other field, a missing field or a
  wrong type is ``malformed``. The v1 schema is closed: a new field means a new version ``v``, so
  what a node signed is always everything its peers understood (a field a v1 receiver skipped
  could change the meaning, e.g. widen a revocation).

  ======================  ===================================================================
  ``v``                   1
  ``node``                sending node (a valid topic level, see ``_topics``)
  ``seq``                 per-node sequence number, 0 <= seq < 2**63, strictly increasing
  ``ts``                  sending time, float seconds since the epoch by the sender's clock
  ``subject``             ``e164``: ``+`` and 2-15 digits; ``hash``: 32 lowercase hex digits
  ``subject_kind``        ``e164`` or ``hash`` (privacy mode, see ``_privacy``)
  ``kind``                ``verdict``        the node screened or blocked a call from subject
                          ``screen_failed``  a caller failed (or timed out of) screening
                          ``report``         a user reported the subject as spam
                          ``revoke``         an admin unlisted the subject: peers drop this
                                             node's earlier messages on it
  ``action``              ``connect``/``screen``/``block``: ``verdict`` needs screen or block,
                          ``revoke`` needs connect; otherwise the node's current action
  ``score``               risk 0-100 (``revoke``: 0)
  ``reasons``             up to 16 machine reason codes (<= 64 characters): ``[a-z][a-z0-9_-]*``
                          parts joined by ``:``, e.g. ``pattern:fanout``, ``peer:no-quorum``
  ``evidence``            up to 16 counts, ``{"reports": 3, "screen_failed": 1, "blocks": 7}``:
                          keys ``[a-z][a-z0-9_]*`` (<= 32), values 0 <= n < 2**31
  ``ttl``                 seconds the message stays in force after ``ts`` (0 <= ttl <= 366 days)
  ======================  ===================================================================

- There is no field for the callee: the protected subscribers' numbers never leave the node.
- Canonical encoding: JSON with keys sorted, no whitespace, UTF-8 (msgspec ``order="sorted"``;
  floats in shortest round-trip form). The signature covers exactly these bytes.
- ``ts`` must be finite; ``ts`` and ``ttl`` are floats in JSON (``ts`` may be written as an integer).
"""

from __future__ import annotations

import math
import re
from copy import copy as _copy
from enum import StrEnum
from typing import Final

import msgspec

from callshield.mesh._topics import is_valid_name
from callshield.verdict import Action

__all__ = [
    "MAX_SEQ",
    "PROTOCOL_VERSION",
    "MeshMessage",
    "MessageKind",
    "SubjectKind",
    "decode_payload",
    "encode_payload",
    "stamped",
]

PROTOCOL_VERSION: Final = 1
MAX_SEQ: Final = 2**63 - 1
MAX_TTL: Final = 366 * 86400.0
MAX_REASONS: Final = 16
MAX_EVIDENCE: Final = 16
MAX_COUNT: Final = 2**31 - 1

E164: Final = re.compile(r"\+[1-9][0-9]{1,14}", re.ASCII)
HASHED_SUBJECT: Final = re.compile(r"[0-9a-f]{32}", re.ASCII)
REASON_CODE: Final = re.compile(r"[a-z][a-z0-9_-]*(?::[a-z0-9_-]+)*", re.ASCII)
EVIDENCE_KEY: Final = re.compile(r"[a-z][a-z0-9_]{0,31}", re.ASCII)
_MAX_REASON_LENGTH: Final = 64


class SubjectKind(StrEnum):
    """What ``subject`` holds: the caller's E.164 number, or its keyed hash (privacy mode)."""

    E164 = "e164"
    HASH = "hash"


class MessageKind(StrEnum):
    """What happened to the subject on the sending node."""

    VERDICT = "verdict"
    SCREEN_FAILED = "screen_failed"
    REPORT = "report"
    REVOKE = "revoke"


class MeshMessage(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One peer message (payload v1). Validated when built and when decoded (rules above)."""

    v: int
    node: str
    seq: int
    ts: float
    subject: str
    subject_kind: SubjectKind
    kind: MessageKind
    action: Action
    score: int
    reasons: tuple[str, ...]
    evidence: dict[str, int]
    """Counts behind the message; treat as read-only."""
    ttl: float

    def __post_init__(self) -> None:
        _check(self)

    @property
    def expires_at(self) -> float:
        """When the message stops being in force (``ts + ttl``, sender's clock)."""
        return self.ts + self.ttl


def _check(message: MeshMessage) -> None:
    """Raise ValueError for a message breaking the payload rules (types are checked by msgspec)."""
    if message.v != PROTOCOL_VERSION:
        raise ValueError(f"unsupported payload version {message.v!r}")
    if not is_valid_name(message.node):
        raise ValueError("node is not a valid node name")
    if not 0 <= message.seq <= MAX_SEQ:
        raise ValueError("seq out of range")
    if not math.isfinite(message.ts) or message.ts < 0:
        raise ValueError("ts must be a finite, non-negative time")
    if not 0 <= message.ttl <= MAX_TTL:  # also false for NaN
        raise ValueError("ttl out of range")
    _check_subject(message.subject, message.subject_kind)
    _check_action(message.kind, message.action, message.score)
    _check_reasons(message.reasons)
    _check_evidence(message.evidence)


def _check_subject(subject: str, kind: SubjectKind) -> None:
    pattern = E164 if kind == SubjectKind.E164 else HASHED_SUBJECT
    if not pattern.fullmatch(subject):
        raise ValueError(f"subject is not a valid {kind} subject")


def _check_action(kind: MessageKind, action: Action, score: int) -> None:
    if not 0 <= score <= 100:
        raise ValueError("score must be 0-100")
    if kind == MessageKind.VERDICT and action == Action.CONNECT:
        raise ValueError("a verdict message is a screen or a block")
    if kind == MessageKind.REVOKE and (action != Action.CONNECT or score != 0):
        raise ValueError("a revoke has action connect and score 0")


_VALID_REASONS: Final[set[str]] = set()
"""Reason codes that passed the check (the same few come in every message); at most _KNOWN_REASONS."""
_KNOWN_REASONS: Final = 4096


def _check_reasons(reasons: tuple[str, ...]) -> None:
    if len(reasons) > MAX_REASONS:
        raise ValueError(f"more than {MAX_REASONS} reasons")
    for code in reasons:
        if code in _VALID_REASONS:
            continue
        if len(code) > _MAX_REASON_LENGTH or not REASON_CODE.fullmatch(code):
            raise ValueError("a reason is not a machine reason code")
        if len(_VALID_REASONS) < _KNOWN_REASONS:
            _VALID_REASONS.add(code)


def _check_evidence(evidence: dict[str, int]) -> None:
    if len(evidence) > MAX_EVIDENCE:
        raise ValueError(f"more than {MAX_EVIDENCE} evidence counts")
    for key, count in evidence.items():
        if not EVIDENCE_KEY.fullmatch(key) or isinstance(count, bool) or not 0 <= count <= MAX_COUNT:
            raise ValueError("an evidence count is not a name with a count 0 <= n < 2**31")


_ENCODER: Final = msgspec.json.Encoder(order="sorted")
_DECODER: Final = msgspec.json.Decoder(MeshMessage)


class _Versioned(msgspec.Struct):
    """Only the version of a payload (any other field ignored): read before the strict decoding."""

    v: int


_VERSION_DECODER: Final = msgspec.json.Decoder(_Versioned)


def stamped(message: MeshMessage, *, seq: int | None = None, ts: float | None = None) -> MeshMessage:
    """A copy of ``message`` with a new ``seq`` and/or ``ts`` (numbered when committed, stamped when sent).

    Only these two fields change, and only they are checked (ValueError out of range): the rest
    was validated when ``message`` was built, so the copy skips the full validation (~7 µs).
    """
    copy = _copy(message)  # a struct's copy does not run __post_init__
    if seq is not None:
        if not 0 <= seq <= MAX_SEQ:
            raise ValueError("seq out of range")
        msgspec.structs.force_setattr(copy, "seq", seq)
    if ts is not None:
        if not math.isfinite(ts) or ts < 0:
            raise ValueError("ts must be a finite, non-negative time")
        msgspec.structs.force_setattr(copy, "ts", float(ts))
    return copy


def encode_payload(message: MeshMessage) -> bytes:
    """The canonical bytes of ``message``: sorted keys, no whitespace, UTF-8."""
    return _ENCODER.encode(message)


def decode_payload(data: bytes | bytearray | memoryview) -> MeshMessage:
    """Strictly decode a v1 payload; raise ``msgspec.DecodeError``/``ValidationError`` otherwise."""
    return _DECODER.decode(data)


def payload_version(data: bytes | bytearray | memoryview) -> int:
    """The ``v`` of a payload object (other fields not checked); raise ``msgspec.DecodeError`` otherwise."""
    return _VERSION_DECODER.decode(data).v
