"""The values that cross the decision core's boundary: a call in, a verdict out, an outcome back.

Frozen, behaviour-free records (msgspec Structs: built in ~0.1 µs where a frozen dataclass takes
~1.5 µs). Adapters (FastAGI, AGI script, ARI, replay) build a :class:`Call`,
hand it to :meth:`callshield.Firewall.decide`, translate the :class:`Verdict` back to Asterisk and later
report how the call ended with a :class:`CallOutcome`.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec


class Action(StrEnum):
    """What Asterisk should do with the call."""

    CONNECT = "connect"
    SCREEN = "screen"
    BLOCK = "block"


class Mode(StrEnum):
    """``enforce`` acts on verdicts; ``shadow`` records them and connects every call."""

    ENFORCE = "enforce"
    SHADOW = "shadow"


class ScreenResult(StrEnum):
    """How a screening challenge ended (``CALLSHIELD_SCREEN``)."""

    PASSED = "passed"
    FAILED = "failed"
    TIMEOUT = "timeout"


class Call(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One inbound call as the PBX presents it. Strings are raw: the core normalizes them."""

    caller: str
    """Caller number as delivered (``agi_callerid``, a SIP URI, ``anonymous``, junk, ...)."""
    callee: str = ""
    """The number dialed: the DID (``agi_dnid``, else ``agi_extension``)."""
    caller_name: str = ""
    presentation: int | None = None
    """Numeric ``agi_callingpres`` (32 and up: presentation restricted)."""
    trunk: str = ""
    """Trunk or endpoint the call came in on (selects a numbering region override)."""
    tenant: str = ""
    """Tenant, when the adapter knows it; else derived from the DID by configuration."""
    channel: str = ""
    """Asterisk channel name or unique id, for the audit log only."""
    started_at: float | None = None
    """When the call started; ``None`` means now by the engine's clock."""


class Reason(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One finding behind a verdict: a machine-readable code, its share of the score, and prose."""

    code: str
    points: float
    detail: str


class Verdict(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The decision for one call, with everything needed to explain it."""

    id: str
    action: Action
    """What the PBX must do (``connect`` for every call in shadow mode)."""
    decided: Action
    """What the policy decided before the mode was applied."""
    score: int
    """Risk, 0-100."""
    reason: str
    """The primary reason code, e.g. ``denylist:prefix`` or ``pattern:sweep``."""
    reasons: tuple[Reason, ...]
    cause: int
    """Q.850 cause to hang up with when blocking."""
    mode: Mode
    caller: str
    """Caller E.164, or the kind (``anonymous``, ``invalid``, ...) when there is no number."""
    callee: str
    decided_at: float
    features: tuple[float, ...] = ()


class CallOutcome(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """How a decided call ended: the hangup feedback."""

    decision_id: str
    dialstatus: str = ""
    """Asterisk ``DIALSTATUS``: ANSWER, NOANSWER, BUSY, CANCEL, CONGESTION, CHANUNAVAIL, or empty."""
    billsec: float = 0.0
    """Seconds the call was answered for (``CDR(billsec)``)."""
    hangup_cause: int | None = None
    ended_at: float | None = None
    """When the call ended; ``None`` means now by the engine's clock."""

    @property
    def answered(self) -> bool:
        return self.dialstatus.upper() == "ANSWER" or self.billsec > 0
