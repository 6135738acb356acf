"""The ARI REST requests callshield makes, as plain values (no I/O).

Each builder returns an :class:`AriRequest`: method, path template (as in the ARI Swagger specs),
path parameters and query parameters. The client turns it into HTTP; the unit tests check every
builder against the specs (``api-docs/*.json``): path, method, parameter names and allowed values.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import quote

import msgspec

__all__ = [
    "AriRequest",
    "answer",
    "continue_in_dialplan",
    "get_variable",
    "hangup",
    "play",
    "set_variable",
    "stop_playback",
]

_CHANNEL: Final = "/channels/{channelId}"


class AriRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One REST call: ``method`` on ``template`` (relative to ``/ari``) with its parameters."""

    method: str
    template: str
    """The path as the specs write it, e.g. ``/channels/{channelId}/variable``."""
    path_params: tuple[tuple[str, str], ...] = ()
    query: tuple[tuple[str, str], ...] = ()

    @property
    def path(self) -> str:
        """The path with its parameters filled in, each percent-encoded as one segment."""
        path = self.template
        for name, value in self.path_params:
            path = path.replace("{" + name + "}", quote(value, safe=""))
        return path


def set_variable(channel_id: str, variable: str, value: str) -> AriRequest:
    """``POST /channels/{id}/variable``: set one channel variable (204)."""
    return AriRequest(
        method="POST",
        template=_CHANNEL + "/variable",
        path_params=(("channelId", channel_id),),
        query=(("variable", variable), ("value", value)),
    )


def get_variable(channel_id: str, variable: str) -> AriRequest:
    """``GET /channels/{id}/variable``: read a variable or function, e.g. ``CALLERID(pres)`` (200)."""
    return AriRequest(
        method="GET",
        template=_CHANNEL + "/variable",
        path_params=(("channelId", channel_id),),
        query=(("variable", variable),),
    )


def continue_in_dialplan(channel_id: str) -> AriRequest:
    """``POST /channels/{id}/continue``: leave the application, on to the next priority (204)."""
    return AriRequest(method="POST", template=_CHANNEL + "/continue", path_params=(("channelId", channel_id),))


def hangup(channel_id: str, reason_code: int) -> AriRequest:
    """``DELETE /channels/{id}?reason_code=N``: hang up with a Q.850 cause (204)."""
    return AriRequest(
        method="DELETE",
        template=_CHANNEL,
        path_params=(("channelId", channel_id),),
        query=(("reason_code", str(reason_code)),),
    )


def answer(channel_id: str) -> AriRequest:
    """``POST /channels/{id}/answer`` (204)."""
    return AriRequest(method="POST", template=_CHANNEL + "/answer", path_params=(("channelId", channel_id),))


def play(channel_id: str, playback_id: str, media: str) -> AriRequest:
    """``POST /channels/{id}/play/{playbackId}?media=sound:NAME``: start a playback with our id (201)."""
    return AriRequest(
        method="POST",
        template=_CHANNEL + "/play/{playbackId}",
        path_params=(("channelId", channel_id), ("playbackId", playback_id)),
        query=(("media", media),),
    )


def stop_playback(playback_id: str) -> AriRequest:
    """``DELETE /playbacks/{id}``: stop a playback (204; 404 when it already ended)."""
    return AriRequest(method="DELETE", template="/playbacks/{playbackId}", path_params=(("playbackId", playback_id),))
