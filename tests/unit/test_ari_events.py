"""ARI event decoding: every recorded Asterisk 22 event decodes; hostile messages raise EventError."""

from __future__ import annotations

import json

import pytest

from callshield.ari import EventError, call_from_channel, decode_event, parse_timestamp, presentation_from_name
from callshield.ari._events import (
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    ChannelStateChange,
    ChannelVarset,
    OtherEvent,
    PlaybackFinished,
    StasisEnd,
    StasisStart,
)
from tests.conftest import need_shared


def _recorded() -> list[dict[str, object]]:
    path = need_shared("ari", "asterisk22_ari_events.json")
    events: list[dict[str, object]] = json.loads(path.read_text(encoding="utf-8"))
    return events


def test_every_recorded_event_decodes_to_its_record() -> None:
    recorded = _recorded()
    assert len(recorded) == 97
    expected = {
        "StasisStart": StasisStart,
        "StasisEnd": StasisEnd,
        "ChannelDestroyed": ChannelDestroyed,
        "ChannelHangupRequest": ChannelHangupRequest,
        "ChannelStateChange": ChannelStateChange,
        "ChannelVarset": ChannelVarset,
    }
    for raw in recorded:
        event = decode_event(json.dumps(raw))
        kind = expected.get(str(raw["type"]), OtherEvent)
        assert isinstance(event, kind), raw["type"]
        if isinstance(event, OtherEvent):
            assert event.type == raw["type"]
        channel = raw.get("channel")
        if isinstance(channel, dict) and not isinstance(event, OtherEvent):
            assert event.channel.id == channel["id"]
        assert parse_timestamp(str(raw["timestamp"])) is not None


def test_recorded_details_survive_decoding() -> None:
    events = [decode_event(json.dumps(raw)) for raw in _recorded()]
    starts = [e for e in events if isinstance(e, StasisStart)]
    assert [s.args for s in starts] == [
        ("inbound", "+18005550100"),
        ("inbound", "+18005550100"),
        ("inbound", "+18005550100"),
        ("originator",),
    ]
    assert starts[0].channel.caller.number == "+14155550123"
    assert starts[0].channel.dialplan.exten == "+18005550100"
    destroyed = [e for e in events if isinstance(e, ChannelDestroyed)]
    assert sorted({d.cause for d in destroyed}) == [16, 21]
    requests = [e for e in events if isinstance(e, ChannelHangupRequest)]
    assert any(r.soft and r.cause == 32 for r in requests)
    assert any(not r.soft and r.cause == 21 for r in requests)
    ups = [e for e in events if isinstance(e, ChannelStateChange)]
    assert {u.channel.state for u in ups} == {"Up"}


def test_call_from_a_recorded_stasis_start() -> None:
    starts = [e for raw in _recorded() if isinstance(e := decode_event(json.dumps(raw)), StasisStart)]
    start = next(e for e in starts if e.args[0] == "inbound")
    call = call_from_channel(start.channel, start.args, presentation=0)
    assert (call.caller, call.callee, call.caller_name) == ("+14155550123", "+18005550100", "ARI Block-By-Delete")
    assert call.trunk == ""  # a Local channel is an internal hop, not a trunk
    assert call.channel == start.channel.id
    assert call.presentation == 0


def test_call_from_a_sip_channel_uses_the_endpoint_and_the_extension() -> None:
    event = decode_event(
        json.dumps(
            {
                "type": "StasisStart",
                "args": ["inbound"],
                "channel": {
                    "id": "1795845352.0",
                    "name": "PJSIP/callshield-trunk-00000000",
                    "caller": {"name": "", "number": "+14155550111"},
                    "dialplan": {"context": "callshield-check", "exten": "+18005550100", "priority": 27},
                },
            }
        )
    )
    assert isinstance(event, StasisStart)
    call = call_from_channel(event.channel, event.args, presentation=presentation_from_name("prohib_not_screened"))
    assert (call.callee, call.trunk, call.presentation) == ("+18005550100", "callshield-trunk", 32)


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"not json",
        b"[]",
        b"42",
        b'{"no_type": 1}',
        b'{"type": 5}',
        b'{"type": "StasisStart"}',  # no channel
        b'{"type": "StasisStart", "channel": {"id": 7}}',  # id not a string
        b'{"type": "StasisStart", "channel": {"id": "1"}, "args": "inbound"}',
        b'{"type": "ChannelDtmfReceived", "channel": {"id": "1"}}',  # no digit
        b'{"type": "PlaybackFinished", "playback": null}',
        b'{"type": "ChannelDestroyed", "channel": {"id": "1"}, "cause": "21"}',
        b"\xff\xfe{",
        b'{"type": "StasisEnd", "channel": {"id": "1"}',  # truncated
    ],
)
def test_malformed_messages_raise_event_error(message: bytes) -> None:
    with pytest.raises(EventError):
        decode_event(message)


def test_unknown_types_and_extra_fields_are_tolerated() -> None:
    other = decode_event(b'{"type": "BridgeCreated", "bridge": {"id": "b"}, "timestamp": "x"}')
    assert isinstance(other, OtherEvent) and other.type == "BridgeCreated"
    dtmf = decode_event(b'{"type": "ChannelDtmfReceived", "digit": "7", "channel": {"id": "1", "new": 1}, "x": []}')
    assert isinstance(dtmf, ChannelDtmfReceived) and dtmf.digit == "7"
    finished = decode_event(b'{"type": "PlaybackFinished", "playback": {"id": "p", "target_uri": "channel:1"}}')
    assert isinstance(finished, PlaybackFinished) and finished.playback.target_uri == "channel:1"


def test_timestamps_and_presentations() -> None:
    assert parse_timestamp("2026-11-28T02:01:22.796+0000") == pytest.approx(1795831282.796)
    assert parse_timestamp("2026-11-28T02:01:22.796+00:00") == pytest.approx(1795831282.796)
    assert parse_timestamp("2026-11-28T02:01:22") is None  # no zone: not an instant
    assert parse_timestamp("") is None
    assert parse_timestamp("yesterday") is None
    assert presentation_from_name("allowed_not_screened") == 0
    assert presentation_from_name("PROHIB") == 35
    assert presentation_from_name("unavailable") == 67
    assert presentation_from_name("") is None
    assert presentation_from_name("restricted") is None
