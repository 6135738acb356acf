"""FastAGI: the sans-I/O protocol codec and the asyncio server around it."""

from __future__ import annotations

from callshield.agi.protocol import (
    AgiConnection,
    ConnectionClosed,
    ConnectionState,
    Event,
    Hangup,
    Header,
    LocalProtocolError,
    NeedData,
    ProtocolError,
    RemoteProtocolError,
    Reply,
    format_command,
    quote_argument,
)
from callshield.agi.server import (
    AgiServer,
    AgiServerSettings,
    AgiServerStats,
    DecisionEngine,
    call_from_header,
    outcome_from_args,
    run_server,
    trunk_from_channel,
    verdict_variables,
)

__all__ = [
    "AgiConnection",
    "AgiServer",
    "AgiServerSettings",
    "AgiServerStats",
    "ConnectionClosed",
    "ConnectionState",
    "DecisionEngine",
    "Event",
    "Hangup",
    "Header",
    "LocalProtocolError",
    "NeedData",
    "ProtocolError",
    "RemoteProtocolError",
    "Reply",
    "call_from_header",
    "format_command",
    "outcome_from_args",
    "quote_argument",
    "run_server",
    "trunk_from_channel",
    "verdict_variables",
]
