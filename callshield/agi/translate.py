"""Translation between the AGI header and the core's records, shared by every AGI adapter.

The FastAGI server (:mod:`callshield.agi.server`), the classic AGI script (:mod:`callshield.agi.script`)
and the ARI app read calls and hangup feedback and write verdicts through these functions, so all
give the same verdicts with the same variables. A module of its own, free of asyncio, so that the
one-process-per-call script does not pay for importing the server.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final

from callshield.verdict import Action, Call, CallOutcome, ScreenResult, Verdict

__all__ = [
    "VALUE_LIMIT",
    "call_from_header",
    "fail_open_variables",
    "mset_argument",
    "outcome_from_args",
    "screen_from_args",
    "trunk_from_channel",
    "variable_value",
    "verdict_variables",
]

VALUE_LIMIT: Final = 128
"""Longest text value callshield puts in a channel variable."""


_CHANNEL: Final = re.compile(r"(?P<tech>[^/]+)/(?P<name>.+)-[0-9A-Fa-f]+(?:;[0-9]+)?")
_NOT_TRUNKS: Final = frozenset({"local"})
_SMALL_INTEGER: Final = re.compile(r"[0-9]{1,3}")
_SECONDS: Final = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,6})?")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_ABSENT: Final = frozenset({"", "unknown"})
_MSET_SAFE: Final = re.compile(r"[A-Za-z0-9_]+=[A-Za-z0-9:._+/@-]*")


def trunk_from_channel(channel: str) -> str:
    """The endpoint a channel belongs to: ``PJSIP/trunk-0000001`` -> ``trunk``.

    Local channels are internal hops, not trunks: ``""``.
    """
    match = _CHANNEL.fullmatch(channel)
    if match is None or match.group("tech").lower() in _NOT_TRUNKS:
        return ""
    return match.group("name")


def call_from_header(variables: Mapping[str, str]) -> Call:
    """The :class:`Call` an AGI header describes. Strings stay raw: the core normalizes them."""
    dnid = variables.get("agi_dnid", "")
    presentation = variables.get("agi_callingpres", "")
    return Call(
        caller=variables.get("agi_callerid", ""),
        callee=dnid if dnid not in _ABSENT else variables.get("agi_extension", ""),
        caller_name=variables.get("agi_calleridname", ""),
        presentation=int(presentation) if _SMALL_INTEGER.fullmatch(presentation) else None,
        trunk=trunk_from_channel(variables.get("agi_channel", "")),
        channel=variables.get("agi_uniqueid", ""),
    )


def outcome_from_args(args: Sequence[str]) -> tuple[CallOutcome | None, bool]:
    """The hangup feedback ``(decision id, DIALSTATUS, billsec, HANGUPCAUSE)`` as a CallOutcome.

    Returns ``(outcome, junk)``: junk tells a malformed billsec (taken as 0) or cause (taken as
    None); the outcome is None without a decision id (it cannot be tied to a decision).
    """
    fields = [arg.strip() for arg in args[:4]]
    decision_id, dialstatus, billsec_text, cause_text = fields + [""] * (4 - len(fields))
    junk = False
    billsec = 0.0
    if _SECONDS.fullmatch(billsec_text):
        billsec = float(billsec_text)
    elif billsec_text:
        junk = True
    cause: int | None = None
    if _SMALL_INTEGER.fullmatch(cause_text):
        cause = int(cause_text)
    elif cause_text:
        junk = True
    if not decision_id:
        return None, junk
    outcome = CallOutcome(
        decision_id=variable_value(decision_id),
        dialstatus=variable_value(dialstatus),
        billsec=billsec,
        hangup_cause=cause,
    )
    return outcome, junk


def screen_from_args(args: Sequence[str]) -> ScreenResult | None:
    """The dialplan's CALLSHIELD_SCREEN in the hangup feedback (``agi_arg_5``), when it ran a challenge."""
    if len(args) < 5:
        return None
    value = args[4].strip().lower()
    for result in ScreenResult:
        if result.value == value:
            return result
    return None


def verdict_variables(verdict: Verdict, *, cause_default: int = 21) -> tuple[tuple[str, str], ...]:
    """The channel variables for a verdict, in the order they are set (CALLSHIELD_ACTION last)."""
    cause = verdict.cause if 1 <= verdict.cause <= 127 else cause_default
    return (
        ("CALLSHIELD_ID", variable_value(verdict.id)),
        ("CALLSHIELD_SCORE", str(min(100, max(0, int(verdict.score))))),
        ("CALLSHIELD_REASON", variable_value(verdict.reason)),
        ("CALLSHIELD_CAUSE", str(cause)),
        ("CALLSHIELD_ACTION", Action(verdict.action).value),
    )


def fail_open_variables(reason: str) -> tuple[tuple[str, str], ...]:
    """CALLSHIELD_REASON=``reason`` then CALLSHIELD_ACTION=connect: the call goes on (fail open)."""
    return (("CALLSHIELD_REASON", reason), ("CALLSHIELD_ACTION", Action.CONNECT.value))


def variable_value(text: str) -> str:
    """Text safe for one command argument: no control characters, at most VALUE_LIMIT long."""
    return _CONTROL.sub("", text)[:VALUE_LIMIT]


def mset_argument(variables: Sequence[tuple[str, str]]) -> str | None:
    """The argument of one ``EXEC MSet`` that sets every variable in order, in one round trip.

    None when a name or value holds a character that MSet (commas, ``=``) or the AGI command line
    (spaces, quotes, backslashes) would need escaped: the caller then sets them one at a time.
    """
    pairs = [f"{name}={value}" for name, value in variables]
    if not all(_MSET_SAFE.fullmatch(pair) for pair in pairs):
        return None
    return ",".join(pairs)
