"""Receiving: round trips, every rejection reason in its order, replay windows, privacy mode, fuzzing."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callshield.mesh import (
    Accepted,
    Inbox,
    Keyring,
    MeshMessage,
    MessageKind,
    Rejected,
    RejectReason,
    SigningKey,
    SubjectKind,
    decode_payload,
    subject_for,
    verdict_topic,
)
from callshield.verdict import Action, Mode, Reason, Verdict
from tests.unit.mesh_support import (
    CALLER,
    CLUSTER,
    NOW,
    OTHER_SECRET,
    PRIVACY_KEY,
    SECRET,
    block,
    inbox,
    outbound,
    payload_fields,
)

TOPIC_A = verdict_topic(CLUSTER, "pbx-a")


def forge(
    fields: dict[str, Any] | None = None,
    *,
    topic: str = TOPIC_A,
    secret: bytes = SECRET,
    kid: Any = "k1",
    sig: str | None = None,
    **envelope_extra: Any,
) -> bytes:
    """An envelope around ``fields`` (canonical JSON), signed for ``topic`` unless ``sig`` is given."""
    raw = json.dumps(fields or payload_fields(), sort_keys=True, separators=(",", ":")).encode()
    envelope: dict[str, Any] = {"payload": "@@RAW@@", **envelope_extra}
    if kid is not None:
        envelope["kid"] = kid
    if sig is None:
        sig = hmac.new(secret, topic.encode() + b"\n" + raw, hashlib.sha256).hexdigest()
    if sig != "-":
        envelope["sig"] = sig
    return json.dumps(envelope, sort_keys=True, separators=(",", ":")).encode().replace(b'"@@RAW@@"', raw)


def reason(outcome: Accepted | Rejected) -> str:
    return "accepted" if isinstance(outcome, Accepted) else outcome.reason.value


# --- round trip ------------------------------------------------------------------------------------


def test_round_trip_sign_then_receive() -> None:
    sender, receiver = outbound("pbx-a", last_seq=41), inbox("pbx-b")
    message = block(sender)
    sealed = sender.seal(message)
    assert (sealed.topic, sealed.seq, message.seq) == (TOPIC_A, 42, 42)
    assert sender.last_seq == 42
    outcome = receiver.receive(sealed.topic, sealed.payload, NOW + 0.01)
    assert outcome == Accepted(message, "k1")
    assert isinstance(outcome, Accepted)
    assert outcome.message.evidence == {"reports": 3, "blocks": 7}
    assert outcome.message.reasons == ("pattern:sweep", "reputation:reports")
    assert receiver.stats == {"accepted": 1}
    [peer] = receiver.peers()
    assert (peer.node, peer.highest_seq, peer.accepted, peer.last_seen) == ("pbx-a", 42, 1, NOW + 0.01)
    assert peer.lag == pytest.approx(0.01)
    assert receiver.high_water() == {"pbx-a": 42}


def test_revoke_round_trip() -> None:
    sender = outbound("pbx-a")
    sealed = sender.seal(sender.revoke(CALLER, now=NOW))
    outcome = inbox().receive(sealed.topic, sealed.payload, NOW)
    assert isinstance(outcome, Accepted)
    message = outcome.message
    assert (message.kind, message.action, message.score, message.reasons) == (
        MessageKind.REVOKE,
        Action.CONNECT,
        0,
        ("admin:unlist",),
    )
    assert message.ttl == 7 * 86400


# --- every rejection reason --------------------------------------------------------------------------

OTHER_TOPIC = verdict_topic(CLUSTER, "pbx-c")

REJECTIONS: list[tuple[str, str, bytes]] = [
    ("oversized", TOPIC_A, b" " * 8193),
    ("bad_topic", f"callshield/v1/{CLUSTER}/nodes/pbx-a/status", forge()),
    ("bad_topic", "callshield/v1/acme/verdicts/pbx-a/x", forge()),
    ("foreign_cluster", verdict_topic("other", "pbx-a"), forge(topic=verdict_topic("other", "pbx-a"))),
    ("own", verdict_topic(CLUSTER, "pbx-b"), forge(topic=verdict_topic(CLUSTER, "pbx-b"))),
    ("malformed", TOPIC_A, b""),
    ("malformed", TOPIC_A, b"not json"),
    ("malformed", TOPIC_A, b"\xff\xfe{}"),
    ("malformed", TOPIC_A, b"[]"),
    ("malformed", TOPIC_A, b'{"kid":"k1","sig":"00"}'),  # no payload
    ("malformed", TOPIC_A, b'{"kid":"k1","payload":[1],"sig":"00"}'),
    ("malformed", TOPIC_A, b'{"kid":"k1","payload":{"seq":1},"sig":"00"}'),  # no version
    ("malformed", TOPIC_A, b'{"kid":"k1","payload":{"v":"1"},"sig":"00"}'),
    ("malformed", TOPIC_A, forge(extra="x")),  # unknown envelope field
    ("malformed", TOPIC_A, forge(payload_fields(extra=1))),  # unknown payload field (v1 is closed)
    ("malformed", TOPIC_A, forge(payload_fields(score="high"))),
    ("malformed", TOPIC_A, forge(payload_fields(kind="revoke"))),  # a revoke is a connect with score 0
    ("malformed", TOPIC_A, forge(kid=7)),  # wrong type
    ("unknown_version", TOPIC_A, forge({"v": 2, "anything": ["goes"]})),
    ("unknown_version", TOPIC_A, forge(payload_fields(v=0))),
    ("unsigned", TOPIC_A, forge(sig="-")),
    ("unsigned", TOPIC_A, forge(kid=None)),
    ("unsigned", TOPIC_A, forge(sig="")),
    ("unknown_key", TOPIC_A, forge(kid="k9")),
    ("bad_signature", TOPIC_A, forge(secret=OTHER_SECRET)),
    ("bad_signature", TOPIC_A, forge(sig="00" * 32)),
    ("bad_signature", TOPIC_A, forge(sig="abc")),
    ("bad_signature", TOPIC_A, forge(topic=OTHER_TOPIC)),  # moved to another node's topic
    ("node_mismatch", OTHER_TOPIC, forge(topic=OTHER_TOPIC)),  # a key holder speaking for another node
    ("stale", TOPIC_A, forge(payload_fields(ts=NOW - 301))),
    ("stale", TOPIC_A, forge(payload_fields(ts=NOW + 301))),
]


@pytest.mark.parametrize(("expected", "topic", "payload"), REJECTIONS)
def test_each_rejection_reason_is_returned_and_counted(expected: str, topic: str, payload: bytes) -> None:
    receiver = inbox("pbx-b")
    outcome = receiver.receive(topic, payload, NOW)
    assert reason(outcome) == expected
    assert receiver.stats == {expected: 1}
    assert receiver.peers() == ()


def test_check_order_cheapest_first() -> None:
    receiver = inbox("pbx-b")
    # oversized wins over a bad topic, a bad topic over garbage, garbage over a missing signature, ...
    assert reason(receiver.receive("junk", b"x" * 9000, NOW)) == "oversized"
    assert reason(receiver.receive("junk", b"garbage", NOW)) == "bad_topic"
    assert reason(receiver.receive(verdict_topic(CLUSTER, "pbx-b"), b"garbage", NOW)) == "own"
    assert reason(receiver.receive(TOPIC_A, forge({"v": 2}, sig="-"), NOW)) == "unknown_version"
    assert reason(receiver.receive(TOPIC_A, forge(payload_fields(ts=0.0), sig="-"), NOW)) == "unsigned"
    stale_forged = forge(payload_fields(ts=0.0), secret=OTHER_SECRET)
    assert reason(receiver.receive(TOPIC_A, stale_forged, NOW)) == "bad_signature"
    assert reason(receiver.receive(OTHER_TOPIC, forge(payload_fields(ts=0.0), topic=OTHER_TOPIC), NOW)) == (
        "node_mismatch"
    )


def test_subject_kind_of_the_cluster_is_enforced() -> None:
    receiver = inbox("pbx-b", subject_kind=SubjectKind.HASH)
    assert reason(receiver.receive(TOPIC_A, forge(), NOW)) == "subject_kind"


def test_max_skew_is_configurable() -> None:
    receiver = inbox("pbx-b", max_skew=10.0)
    assert reason(receiver.receive(TOPIC_A, forge(payload_fields(ts=NOW - 11)), NOW)) == "stale"
    assert reason(receiver.receive(TOPIC_A, forge(payload_fields(ts=NOW - 9)), NOW)) == "accepted"


def test_ten_megabytes_are_refused_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_parsing(data: object) -> None:
        raise AssertionError("an oversized message was parsed")

    monkeypatch.setattr("callshield.mesh._inbox.open_envelope", no_parsing)
    receiver = inbox("pbx-b")
    huge = b"{" * (10 * 1024 * 1024)
    outcome = receiver.receive(TOPIC_A, huge, NOW)
    assert outcome == Rejected(RejectReason.OVERSIZED, "pbx-a")
    assert receiver.stats == {"oversized": 1}


# --- sequence numbers: duplicates, replays, late messages -------------------------------------------------


def test_duplicates_are_dropped() -> None:
    sender, receiver = outbound("pbx-a"), inbox("pbx-b")
    sealed = sender.seal(block(sender))
    assert reason(receiver.receive(sealed.topic, sealed.payload, NOW)) == "accepted"
    assert reason(receiver.receive(sealed.topic, sealed.payload, NOW + 1)) == "duplicate"
    assert receiver.stats == {"accepted": 1, "duplicate": 1}


def test_out_of_order_older_seq() -> None:
    receiver = inbox("pbx-b", replay_window=8)

    def send(seq: int) -> str:
        return reason(receiver.receive(TOPIC_A, forge(payload_fields(seq=seq)), NOW))

    assert send(5) == "accepted"
    assert send(3) == "accepted"  # late but never seen: inside the window
    assert send(3) == "duplicate"
    assert send(5) == "duplicate"
    assert send(100) == "accepted"
    assert send(93) == "accepted"  # 100 - 7: the oldest the window holds
    assert send(92) == "replayed"  # below the window: too old to tell, refused
    assert send(5) == "replayed"
    assert send(101) == "accepted"
    assert send(100) == "duplicate"
    assert send(93) == "replayed"  # the window moved on: 94..101
    assert receiver.high_water() == {"pbx-a": 101}


def test_sequences_are_per_node() -> None:
    receiver = inbox("pbx-b")
    topic_c = verdict_topic(CLUSTER, "pbx-c")
    assert reason(receiver.receive(TOPIC_A, forge(payload_fields(seq=7)), NOW)) == "accepted"
    c_payload = forge(payload_fields(seq=7, node="pbx-c"), topic=topic_c)
    assert reason(receiver.receive(topic_c, c_payload, NOW)) == "accepted"


def test_high_water_from_a_previous_run() -> None:
    receiver = inbox("pbx-b", high_water={"pbx-a": 10})
    assert reason(receiver.receive(TOPIC_A, forge(payload_fields(seq=10)), NOW)) == "duplicate"
    assert reason(receiver.receive(TOPIC_A, forge(payload_fields(seq=9)), NOW)) == "duplicate"
    assert reason(receiver.receive(TOPIC_A, forge(payload_fields(seq=11)), NOW)) == "accepted"


def test_rejected_messages_do_not_move_the_window() -> None:
    receiver = inbox("pbx-b")
    forged = forge(payload_fields(seq=1000), secret=OTHER_SECRET)
    assert reason(receiver.receive(TOPIC_A, forged, NOW)) == "bad_signature"
    assert reason(receiver.receive(TOPIC_A, forge(payload_fields(seq=1)), NOW)) == "accepted"


def test_number_of_tracked_nodes_is_bounded() -> None:
    receiver = inbox("pbx-b", max_nodes=2)
    for name in ("n1", "n2", "n3"):
        topic = verdict_topic(CLUSTER, name)
        assert reason(receiver.receive(topic, forge(payload_fields(node=name), topic=topic), NOW)) == "accepted"
    assert [peer.node for peer in receiver.peers()] == ["n2", "n3"]
    assert receiver.evicted_nodes == 1


# --- sending -------------------------------------------------------------------------------------------


def verdict(**changes: Any) -> Verdict:
    fields: dict[str, Any] = {
        "id": "d1",
        "action": Action.BLOCK,
        "decided": Action.BLOCK,
        "score": 88,
        "reason": "pattern:fanout",
        "reasons": (
            Reason(code="pattern:fanout", points=60.0, detail="12 callees"),
            Reason(code="number:new", points=5.0, detail="new"),
        ),
        "cause": 21,
        "mode": Mode.ENFORCE,
        "caller": CALLER,
        "callee": "+13125550100",
        "decided_at": NOW,
    }
    fields.update(changes)
    return Verdict(**fields)


def test_message_from_a_verdict_never_carries_the_callee() -> None:
    sender = outbound("pbx-a")
    message = sender.from_verdict(verdict(), evidence={"blocks": 2})
    assert message is not None
    assert (message.kind, message.action, message.score, message.subject, message.ts) == (
        MessageKind.VERDICT,
        Action.BLOCK,
        88,
        CALLER,
        NOW,
    )
    assert message.reasons == ("pattern:fanout", "number:new")
    assert message.ttl == 7 * 86400
    payload = sender.seal(message).payload
    assert b"3125550100" not in payload
    screen = sender.from_verdict(verdict(action=Action.SCREEN, decided=Action.SCREEN, score=60))
    assert screen is not None and screen.ttl == 86400 and screen.seq == message.seq + 1


@pytest.mark.parametrize(
    "changes",
    [
        {"action": Action.CONNECT, "decided": Action.CONNECT, "score": 10},
        {"caller": "anonymous"},
        {"caller": "invalid"},
        {"reason": "peer:quorum"},
    ],
)
def test_verdicts_not_shared(changes: dict[str, Any]) -> None:
    sender = outbound("pbx-a")
    assert sender.from_verdict(verdict(**changes)) is None
    assert sender.last_seq == 0


def test_shadow_mode_shares_what_the_policy_decided() -> None:
    message = outbound().from_verdict(verdict(action=Action.CONNECT, mode=Mode.SHADOW))
    assert message is not None and message.action is Action.BLOCK


def test_an_invalid_message_uses_no_sequence_number() -> None:
    sender = outbound(last_seq=5)
    with pytest.raises(ValueError):
        sender.message(kind=MessageKind.VERDICT, caller=CALLER, action=Action.BLOCK, score=500, now=NOW)
    with pytest.raises(ValueError):
        sender.message(kind=MessageKind.VERDICT, caller="12345", action=Action.BLOCK, score=50, now=NOW)
    assert sender.last_seq == 5
    assert block(sender).seq == 6


def test_sealing_later_restamps_the_time() -> None:
    """A message kept in the outbox through a long outage is sent with the time it is sent."""
    sender, receiver = outbound("pbx-a"), inbox("pbx-b")
    message = block(sender, now=NOW)
    late = sender.seal(message, now=NOW + 3600)
    outcome = receiver.receive(late.topic, late.payload, NOW + 3600)
    assert isinstance(outcome, Accepted) and outcome.message.ts == NOW + 3600 and outcome.message.seq == message.seq
    stored = sender.seal(message)
    assert reason(inbox("pbx-b").receive(stored.topic, stored.payload, NOW + 3600)) == "stale"


# --- privacy mode ---------------------------------------------------------------------------------------


def digit_runs(number: str, length: int = 4) -> set[bytes]:
    digits = number.lstrip("+")
    return {digits[i : i + length].encode() for i in range(len(digits) - length + 1)}


def test_privacy_mode_shows_no_digits_of_the_number() -> None:
    sender = outbound("pbx-a", privacy_key=PRIVACY_KEY)
    receiver = inbox("pbx-b", subject_kind=SubjectKind.HASH)
    sealed = sender.seal(block(sender))
    for run in digit_runs(CALLER):
        assert run not in sealed.topic.encode()
        assert run not in sealed.payload, run
    outcome = receiver.receive(sealed.topic, sealed.payload, NOW)
    assert isinstance(outcome, Accepted)
    # a peer that sees the same number computes the same subject and can match it
    assert outcome.message.subject == subject_for(CALLER, PRIVACY_KEY)
    assert outcome.message.subject_kind is SubjectKind.HASH
    assert re.fullmatch(r"[0-9a-f]{32}", outcome.message.subject)


def test_privacy_subjects() -> None:
    assert subject_for(CALLER, PRIVACY_KEY) == subject_for(CALLER, PRIVACY_KEY)
    assert subject_for(CALLER, PRIVACY_KEY) != subject_for("+14155550124", PRIVACY_KEY)
    assert subject_for(CALLER, PRIVACY_KEY) != subject_for(CALLER, b"q" * 32)
    with pytest.raises(ValueError):
        subject_for("4155550123", PRIVACY_KEY)
    with pytest.raises(ValueError):
        subject_for(CALLER, b"short")


@settings(max_examples=200)
@given(st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True))
def test_privacy_mode_never_shows_the_number(number: str) -> None:
    """Only the subject depends on the number, and it is a keyed hash: the digits may show up
    elsewhere only by coincidence (the timestamp's digits), never because of the number."""
    message = block(outbound("pbx-a", privacy_key=PRIVACY_KEY), caller=number)
    other = block(outbound("pbx-a", privacy_key=PRIVACY_KEY), caller="+14155550123")
    assert msgspec.structs.replace(message, subject=other.subject) == other
    assert re.fullmatch(r"[0-9a-f]{32}", message.subject)
    assert number[1:] not in message.subject
    sealed = outbound("pbx-a", privacy_key=PRIVACY_KEY).seal(message)
    assert number.encode() not in sealed.payload
    assert number[1:] not in sealed.topic


# --- fuzzing: nothing raises, any altered byte fails ---------------------------------------------------

TOPICS = st.one_of(
    st.text(max_size=100),
    st.sampled_from([TOPIC_A, OTHER_TOPIC, verdict_topic(CLUSTER, "pbx-b"), verdict_topic("other", "x")]),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)


def _never_raises(receiver: Inbox, topic: str, payload: bytes) -> None:
    outcome = receiver._receive(topic, payload, NOW)  # the inner method: no safety net
    assert isinstance(outcome, Accepted | Rejected)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(topic=TOPICS, payload=st.binary(max_size=10_000))
def test_arbitrary_bytes_never_raise(topic: str, payload: bytes) -> None:
    _never_raises(inbox("pbx-b"), topic, payload)


@settings(max_examples=500)
@given(payload=JSON, kid=JSON, sig=JSON)
def test_arbitrary_json_envelopes_never_raise(payload: Any, kid: Any, sig: Any) -> None:
    data = msgspec.json.encode({"kid": kid, "payload": payload, "sig": sig})
    _never_raises(inbox("pbx-b"), TOPIC_A, data)


@settings(max_examples=300)
@given(changes=st.dictionaries(st.sampled_from(sorted(payload_fields())), JSON, max_size=4))
def test_arbitrary_fields_in_a_signed_payload_never_raise(changes: dict[str, Any]) -> None:
    _never_raises(inbox("pbx-b"), TOPIC_A, forge(payload_fields(**changes)))


def test_deep_nesting_is_malformed() -> None:
    """msgspec raises RecursionError past ~1000 levels: well within 8 KiB."""
    for receiver in (inbox("pbx-b"), inbox("pbx-b", max_bytes=100_000)):
        for depth in (4000, 40_000):
            nested = b'{"payload":' + b"[" * depth + b"]" * depth + b"}"
            envelope = b'{"kid":"k1","payload":{"v":1,"x":' + b"[" * depth + b"]" * depth + b'},"sig":"00"}'
            for data in (nested, envelope, b"[" * depth):
                _never_raises(receiver, TOPIC_A, data)
                assert reason(receiver.receive(TOPIC_A, data, NOW)) in {"malformed", "oversized"}


@settings(max_examples=500)
@given(data=st.data())
def test_a_message_altered_in_any_byte_fails(data: st.DataObject) -> None:
    sender = outbound("pbx-a")
    sealed = sender.seal(block(sender))
    assert isinstance(inbox("pbx-b").receive(sealed.topic, sealed.payload, NOW), Accepted)
    index = data.draw(st.integers(0, len(sealed.payload) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda b: b != sealed.payload[index]))
    altered = sealed.payload[:index] + bytes([value]) + sealed.payload[index + 1 :]
    outcome = inbox("pbx-b").receive(sealed.topic, altered, NOW)
    assert isinstance(outcome, Rejected)


@settings(max_examples=200)
@given(data=st.data())
def test_a_message_on_an_altered_topic_fails(data: st.DataObject) -> None:
    sender = outbound("pbx-a")
    sealed = sender.seal(block(sender))
    topic = sealed.topic
    index = data.draw(st.integers(0, len(topic) - 1))
    char = data.draw(st.characters(codec="utf-8").filter(lambda c: c != topic[index]))
    outcome = inbox("pbx-b").receive(topic[:index] + char + topic[index + 1 :], sealed.payload, NOW)
    assert isinstance(outcome, Rejected)


def test_stats_count_everything() -> None:
    receiver = inbox("pbx-b")
    sender = outbound("pbx-a")
    for _ in range(3):
        sealed = sender.seal(block(sender))
        receiver.receive(sealed.topic, sealed.payload, NOW)
    receiver.receive(TOPIC_A, b"junk", NOW)
    receiver.receive(TOPIC_A, b"x" * 10_000, NOW)
    assert receiver.stats == {"accepted": 3, "malformed": 1, "oversized": 1}
    assert sum(receiver.stats.values()) == 5


def test_messages_are_plain_values() -> None:
    sender = outbound("pbx-a")
    message = block(sender)
    assert decode_payload(msgspec.json.encode(message)) == message
    assert isinstance(message, MeshMessage)
    ring = Keyring(current=SigningKey(kid="k2", secret=OTHER_SECRET), accepted=[SigningKey(kid="k1", secret=SECRET)])
    assert ring.kids == ("k2", "k1")
    assert Inbox(keyring=ring, cluster=CLUSTER, node="pbx-b").stats == {}
