"""ARI events off the websocket, decoded into frozen records (only the fields callshield reads).

Every message is a JSON object with a ``type`` (ARI's ``Message`` model). The types the app acts
on get their own record; any other well-formed message becomes :class:`OtherEvent`. Anything that
is not a JSON object with a string ``type``, or a known type with missing or mistyped required
fields, raises :class:`EventError` (the app counts it and carries on).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

import msgspec

__all__ = [
    "CallerId",
    "Channel",
    "ChannelDestroyed",
    "ChannelDtmfReceived",
    "ChannelHangupRequest",
    "ChannelStateChange",
    "ChannelVarset",
    "DialplanLocation",
    "Event",
    "EventError",
    "OtherEvent",
    "Playback",
    "PlaybackFinished",
    "PlaybackStarted",
    "StasisEnd",
    "StasisStart",
    "decode_event",
    "parse_timestamp",
]


class EventError(ValueError):
    """A websocket message that is not a usable ARI event."""


class CallerId(msgspec.Struct, frozen=True, kw_only=True):
    """ARI ``CallerID``: a name and a number, both possibly empty."""

    name: str = ""
    number: str = ""


class DialplanLocation(msgspec.Struct, frozen=True, kw_only=True):
    """ARI ``DialplanCEP``: where the channel is in the dialplan."""

    context: str = ""
    exten: str = ""
    priority: int = 0


class Channel(msgspec.Struct, frozen=True, kw_only=True):
    """ARI ``Channel`` (the fields callshield uses)."""

    id: str
    name: str = ""
    state: str = ""
    caller: CallerId = CallerId()
    connected: CallerId = CallerId()
    dialplan: DialplanLocation = DialplanLocation()


class Playback(msgspec.Struct, frozen=True, kw_only=True):
    """ARI ``Playback``: ``target_uri`` is ``channel:<id>`` for a playback on a channel."""

    id: str
    target_uri: str = ""
    media_uri: str = ""
    state: str = ""


class _Base(msgspec.Struct, frozen=True, kw_only=True):
    timestamp: str = ""


class StasisStart(_Base, frozen=True, kw_only=True):
    """A channel entered the application: ``args`` are the ``Stasis(app,args...)`` arguments."""

    channel: Channel
    args: tuple[str, ...] = ()


class StasisEnd(_Base, frozen=True, kw_only=True):
    """A channel left the application (back to the dialplan, or hung up). No events follow for it."""

    channel: Channel


class ChannelDestroyed(_Base, frozen=True, kw_only=True):
    """A channel was destroyed (only seen while the application is subscribed to it)."""

    channel: Channel
    cause: int = 0
    cause_txt: str = ""


class ChannelHangupRequest(_Base, frozen=True, kw_only=True):
    """Someone asked for the channel to hang up (the caller's BYE, or our own DELETE: ``soft``)."""

    channel: Channel
    cause: int | None = None
    soft: bool = False


class ChannelDtmfReceived(_Base, frozen=True, kw_only=True):
    """The caller pressed a key."""

    channel: Channel
    digit: str
    duration_ms: int = 0


class ChannelStateChange(_Base, frozen=True, kw_only=True):
    """The channel's state changed (``Up`` once answered)."""

    channel: Channel


class ChannelVarset(_Base, frozen=True, kw_only=True):
    """A channel (or global, without ``channel``) variable was set."""

    variable: str
    value: str
    channel: Channel | None = None


class PlaybackStarted(_Base, frozen=True, kw_only=True):
    """A playback began."""

    playback: Playback


class PlaybackFinished(_Base, frozen=True, kw_only=True):
    """A playback ended (played out, stopped, or failed)."""

    playback: Playback


class OtherEvent(_Base, frozen=True, kw_only=True):
    """A well-formed message of a type callshield does not act on."""

    type: str


Event = (
    StasisStart
    | StasisEnd
    | ChannelDestroyed
    | ChannelHangupRequest
    | ChannelDtmfReceived
    | ChannelStateChange
    | ChannelVarset
    | PlaybackStarted
    | PlaybackFinished
    | OtherEvent
)

_TYPES: Final[dict[str, type[Event]]] = {
    cls.__name__: cls
    for cls in (
        StasisStart,
        StasisEnd,
        ChannelDestroyed,
        ChannelHangupRequest,
        ChannelDtmfReceived,
        ChannelStateChange,
        ChannelVarset,
        PlaybackStarted,
        PlaybackFinished,
    )
}


class _Envelope(msgspec.Struct, frozen=True):
    type: str


_ENVELOPE: Final = msgspec.json.Decoder(_Envelope)
_DECODERS: Final[dict[str, msgspec.json.Decoder[Event]]] = {
    name: msgspec.json.Decoder(cls) for name, cls in _TYPES.items()
}
_OTHER: Final = msgspec.json.Decoder(OtherEvent)


def decode_event(data: str | bytes) -> Event:
    """Decode one websocket message; raise :class:`EventError` when it is not a usable event."""
    try:
        envelope = _ENVELOPE.decode(data)
        decoder = _DECODERS.get(envelope.type, _OTHER)
        return decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # ValidationError is a DecodeError
        raise EventError(str(exc)) from None


def parse_timestamp(text: str) -> float | None:
    """An ARI timestamp (``2026-11-28T02:01:22.796+0000``) in Unix seconds; None when malformed."""
    for parse in (_ari_format, datetime.fromisoformat):
        try:
            when = parse(text)
        except ValueError:
            continue
        return when.timestamp() if when.tzinfo is not None else None  # no zone: no instant
    return None


def _ari_format(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")
