"""The ARI Stasis application (``callshield ari``): the same verdicts as FastAGI, over ARI.

The dialplan runs ``Stasis(callshield,inbound)`` (``CALLSHIELD_VIA=ari`` in the sample dialplan);
the application sets the CALLSHIELD_* variables with ``POST /channels/{id}/variable`` and then
``continue``s the channel, hangs it up with ``DELETE /channels/{id}?reason_code=<cause>``, or runs
the screening challenge first. Modules: event decoding (``_events``), REST requests as values
(``_requests``), the HTTP client (``_client``), the application logic (``_app``) and the
reconnecting websocket runner (``_runner``).
"""

from __future__ import annotations

from callshield.ari._app import (
    INBOUND_ARG,
    AriApp,
    AriAppSettings,
    AriAppStats,
    AriEngine,
    AriRest,
    call_from_channel,
    presentation_from_name,
)
from callshield.ari._client import (
    AriClient,
    AriConnectionError,
    AriError,
    AriHttpError,
    AriResponse,
    ChannelGone,
    basic_auth,
)
from callshield.ari._events import Channel, Event, EventError, decode_event, parse_timestamp
from callshield.ari._requests import AriRequest
from callshield.ari._runner import AriConnectSettings, AriRunner, backoff_delay, events_url

__all__ = [
    "INBOUND_ARG",
    "AriApp",
    "AriAppSettings",
    "AriAppStats",
    "AriClient",
    "AriConnectSettings",
    "AriConnectionError",
    "AriEngine",
    "AriError",
    "AriHttpError",
    "AriRequest",
    "AriResponse",
    "AriRest",
    "AriRunner",
    "Channel",
    "ChannelGone",
    "Event",
    "EventError",
    "backoff_delay",
    "basic_auth",
    "call_from_channel",
    "decode_event",
    "events_url",
    "parse_timestamp",
    "presentation_from_name",
]
