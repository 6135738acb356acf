"""The v1 payload: canonical encoding, strict decoding, the rules on each field."""

from __future__ import annotations

import json

import msgspec
import pytest

from callshield.mesh import MeshMessage, MessageKind, SubjectKind, decode_payload, encode_payload
from callshield.verdict import Action
from tests.unit.mesh_support import CALLER, NOW, block, outbound, payload_fields


def encoded(**changes: object) -> bytes:
    return json.dumps(payload_fields(**changes)).encode()


def test_canonical_encoding_is_sorted_compact_utf8_and_round_trips() -> None:
    message = decode_payload(encoded())
    data = encode_payload(message)
    assert data == json.dumps(json.loads(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert b" " not in data
    assert decode_payload(data) == message
    assert encode_payload(decode_payload(data)) == data
    assert message.expires_at == NOW + 86400.0


def test_dict_order_does_not_change_the_encoding() -> None:
    a = msgspec.structs.replace(decode_payload(encoded()), evidence={"reports": 1, "blocks": 2})
    b = msgspec.structs.replace(a, evidence={"blocks": 2, "reports": 1})
    assert encode_payload(a) == encode_payload(b)


def test_there_is_no_field_for_the_callee() -> None:
    assert not any("callee" in name or "did" in name for name in MeshMessage.__struct_fields__)
    with pytest.raises(msgspec.ValidationError, match="callee"):
        decode_payload(encoded(callee="+13125550100"))


@pytest.mark.parametrize(
    "changes",
    [
        {"extra": 1},  # unknown field: v1 is closed
        {"seq": "1"},
        {"seq": -1},
        {"seq": 2**63},
        {"ts": "now"},
        {"ts": -5.0},
        {"score": 101},
        {"score": True},
        {"subject": "4155550123"},
        {"subject": "+0155550123"},
        {"subject": "+1" + "5" * 15},
        {"subject_kind": "hash"},  # an E.164 is not a hash
        {"subject_kind": "sha1"},
        {"kind": "gossip"},
        {"action": "connect"},  # a verdict is a screen or a block
        {"kind": "revoke", "action": "connect", "score": 5},
        {"reasons": ["Pattern:sweep"]},
        {"reasons": ["pattern: sweep"]},
        {"reasons": ["x"] * 17},
        {"evidence": {"reports": -1}},
        {"evidence": {"reports": 1.5}},
        {"evidence": {"Reports": 1}},
        {"evidence": {f"k{i}": 1 for i in range(17)}},
        {"ttl": -1},
        {"ttl": 400 * 86400},
        {"node": "a/b"},
        {"node": ""},
    ],
)
def test_strict_decoding_refuses(changes: dict[str, object]) -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_payload(encoded(**changes))


def test_missing_field_and_non_finite_time_are_refused() -> None:
    fields = payload_fields()
    del fields["ttl"]
    with pytest.raises(msgspec.ValidationError):
        decode_payload(json.dumps(fields).encode())
    with pytest.raises(msgspec.ValidationError):
        decode_payload(encoded().replace(str(NOW).encode(), b"1e999"))


def test_valid_variants() -> None:
    revoke = decode_payload(encoded(kind="revoke", action="connect", score=0, reasons=["admin:unlist"]))
    assert revoke.kind is MessageKind.REVOKE and revoke.action is Action.CONNECT
    hashed = decode_payload(encoded(subject="0123456789abcdef" * 2, subject_kind="hash"))
    assert hashed.subject_kind is SubjectKind.HASH
    assert decode_payload(encoded(ts=1_795_000_000)).ts == NOW  # an integer time is a time
    assert decode_payload(encoded(reasons=["peer:no-quorum"])).reasons == ("peer:no-quorum",)
    assert decode_payload(encoded()).subject == CALLER


def test_building_an_invalid_message_raises() -> None:
    fields = payload_fields(score=150)
    with pytest.raises(ValueError, match="score"):
        msgspec.convert(fields, MeshMessage)
    with pytest.raises(ValueError, match="score"):
        MeshMessage(**{**msgspec.convert(payload_fields(), dict[str, object]), "score": 150})  # type: ignore[arg-type]


def test_stamped_sets_only_seq_and_ts_on_a_copy_and_checks_them() -> None:
    from callshield.mesh import stamped

    original = block(outbound())
    copy = stamped(original, seq=99, ts=NOW + 5)
    assert (copy.seq, copy.ts) == (99, NOW + 5)
    assert (original.seq, original.ts) == (1, NOW)  # untouched
    assert msgspec.structs.replace(copy, seq=1, ts=NOW) == original
    assert decode_payload(encode_payload(copy)) == copy  # still a valid payload
    for bad in ({"seq": -1}, {"seq": 2**63}, {"ts": float("nan")}, {"ts": -1.0}):
        with pytest.raises(ValueError):
            stamped(original, **bad)
