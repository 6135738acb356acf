"""AGI: the sans-I/O protocol codec, the asyncio FastAGI server and the classic AGI script.

Names are imported on first use (PEP 562): importing a submodule (``callshield.agi.script``, run once
per call by Asterisk) does not import the asyncio server with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
        run_server,
    )
    from callshield.agi.translate import (
        call_from_header,
        outcome_from_args,
        screen_from_args,
        trunk_from_channel,
        verdict_variables,
    )

_MODULES = {
    "callshield.agi.protocol": (
        "AgiConnection",
        "ConnectionClosed",
        "ConnectionState",
        "Event",
        "Hangup",
        "Header",
        "LocalProtocolError",
        "NeedData",
        "ProtocolError",
        "RemoteProtocolError",
        "Reply",
        "format_command",
        "quote_argument",
    ),
    "callshield.agi.server": ("AgiServer", "AgiServerSettings", "AgiServerStats", "DecisionEngine", "run_server"),
    "callshield.agi.translate": (
        "call_from_header",
        "outcome_from_args",
        "screen_from_args",
        "trunk_from_channel",
        "verdict_variables",
    ),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}

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
    "screen_from_args",
    "trunk_from_channel",
    "verdict_variables",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'callshield.agi' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
