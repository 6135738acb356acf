"""Keys, the envelope and HMAC signatures; key rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from callshield.mesh import (
    Accepted,
    Keyring,
    Outbound,
    Rejected,
    RejectReason,
    SigningKey,
    check_key_id,
    decode_secret,
    signature,
)
from tests.unit.mesh_support import NOW, OTHER_SECRET, SECRET, block, inbox, keyring, outbound

RAW = bytes(range(40))


@pytest.mark.parametrize(
    "text",
    [
        RAW.hex(),
        RAW.hex().upper(),
        base64.b64encode(RAW).decode(),
        base64.urlsafe_b64encode(RAW).decode().rstrip("="),
        f"  {RAW.hex()}\n",
    ],
)
def test_secrets_as_hex_or_base64(text: str) -> None:
    assert decode_secret(text) == RAW


@pytest.mark.parametrize("text", ["", "00" * 31, base64.b64encode(b"x" * 31).decode(), "not a key!", "a" * 45])
def test_short_or_garbled_secrets_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="secret"):
        decode_secret(text)


def test_key_ids_and_short_keys() -> None:
    assert check_key_id("k-2026.01_a") == "k-2026.01_a"
    for bad in ("", "a b", "x" * 33, "k/1"):
        with pytest.raises(ValueError):
            check_key_id(bad)
    with pytest.raises(ValueError, match="32 bytes"):
        SigningKey(kid="k", secret=b"short")
    assert "secret" not in repr(SigningKey(kid="k", secret=SECRET))
    with pytest.raises(ValueError, match="twice"):
        Keyring(current=SigningKey(kid="k", secret=SECRET), accepted=[SigningKey(kid="k", secret=OTHER_SECRET)])


def test_envelope_format_and_signature_over_topic_and_payload() -> None:
    sender = outbound()
    sealed = sender.seal(block(sender))
    envelope = json.loads(sealed.payload)
    assert list(envelope) == ["kid", "payload", "sig"]
    assert envelope["kid"] == "k1"
    start = sealed.payload.index(b'"payload":') + len(b'"payload":')
    end = sealed.payload.rindex(b',"sig":')
    raw = sealed.payload[start:end]
    expected = hmac.new(SECRET, sealed.topic.encode() + b"\n" + raw, hashlib.sha256).hexdigest()
    assert envelope["sig"] == expected == signature(SECRET, sealed.topic, raw)
    assert b" " not in sealed.payload


def test_key_rotation_old_key_accepted_until_its_time() -> None:
    old = SigningKey(kid="k1", secret=SECRET, valid_until=NOW + 3600)
    new = SigningKey(kid="k2", secret=OTHER_SECRET)
    receiver = inbox(ring=Keyring(current=new, accepted=[old]))
    old_sender = outbound("pbx-a", ring=Keyring(current=old))
    new_sender = outbound("pbx-c", ring=Keyring(current=new))

    assert isinstance(receiver.receive(*sealed(new_sender, NOW), NOW), Accepted)
    assert isinstance(receiver.receive(*sealed(old_sender, NOW + 3599), NOW + 3599), Accepted)
    assert receiver.receive(*sealed(old_sender, NOW + 3601), NOW + 3601) == Rejected(RejectReason.EXPIRED_KEY, "pbx-a")
    assert isinstance(receiver.receive(*sealed(new_sender, NOW + 3601), NOW + 3601), Accepted)
    assert receiver.stats == {"accepted": 3, "expired_key": 1}


def test_a_node_without_the_new_key_refuses_it() -> None:
    """Hence the rotation order: every node gets the new key before any node signs with it."""
    new_sender = outbound("pbx-c", ring=Keyring(current=SigningKey(kid="k2", secret=OTHER_SECRET)))
    outcome = inbox(ring=keyring()).receive(*sealed(new_sender, NOW), NOW)
    assert outcome == Rejected(RejectReason.UNKNOWN_KEY, "pbx-c")


def test_the_same_key_id_with_another_secret_is_a_bad_signature() -> None:
    forger = outbound("pbx-c", ring=keyring(OTHER_SECRET, kid="k1"))
    assert inbox().receive(*sealed(forger, NOW), NOW) == Rejected(RejectReason.BAD_SIGNATURE, "pbx-c")


def sealed(sender: Outbound, now: float) -> tuple[str, bytes]:
    message = sender.seal(block(sender, now=now))
    return message.topic, message.payload
