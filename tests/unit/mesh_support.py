"""Shared helpers of the mesh tests: keys, a sending node and a receiving node."""

from __future__ import annotations

from callshield.mesh import Inbox, Keyring, MeshMessage, MessageKind, Outbound, SigningKey, SubjectKind
from callshield.verdict import Action

NOW = 1_795_000_000.0
CLUSTER = "acme"
CALLER = "+14155550123"
SECRET = bytes(range(32))
OTHER_SECRET = bytes(range(100, 132))
PRIVACY_KEY = b"p" * 32


def keyring(secret: bytes = SECRET, kid: str = "k1") -> Keyring:
    return Keyring(current=SigningKey(kid=kid, secret=secret))


def outbound(node: str = "pbx-a", *, ring: Keyring | None = None, last_seq: int = 0, **kwargs: object) -> Outbound:
    return Outbound(keyring=ring or keyring(), cluster=CLUSTER, node=node, last_seq=last_seq, **kwargs)  # type: ignore[arg-type]


def inbox(node: str = "pbx-b", *, ring: Keyring | None = None, **kwargs: object) -> Inbox:
    return Inbox(keyring=ring or keyring(), cluster=CLUSTER, node=node, **kwargs)  # type: ignore[arg-type]


def block(sender: Outbound, *, now: float = NOW, caller: str = CALLER) -> MeshMessage:
    return sender.message(
        kind=MessageKind.VERDICT,
        caller=caller,
        action=Action.BLOCK,
        score=91,
        now=now,
        reasons=("pattern:sweep", "reputation:reports"),
        evidence={"reports": 3, "blocks": 7},
    )


def payload_fields(**changes: object) -> dict[str, object]:
    """A valid v1 payload as a dict, with ``changes`` applied."""
    fields: dict[str, object] = {
        "v": 1,
        "node": "pbx-a",
        "seq": 1,
        "ts": NOW,
        "subject": CALLER,
        "subject_kind": SubjectKind.E164.value,
        "kind": "verdict",
        "action": "block",
        "score": 91,
        "reasons": ["pattern:sweep"],
        "evidence": {"reports": 3},
        "ttl": 86400.0,
    }
    fields.update(changes)
    return fields
