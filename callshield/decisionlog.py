"""One log line per decision: id, action, score, reasons, caller/callee (as ``logging.numbers`` allows)
and how long the decision took.

The lines take the node's log format (``logging.format``): a JSON object with the same ``ts``, ``level``,
``logger`` and ``message`` keys as every other JSON log line, or a line in the text format of
:func:`callshield.service.setup_logging`. They are logged at level info, under the name
``callshield.decision``.

This writer bypasses :mod:`logging` on purpose: a :class:`logging.LogRecord` with a JSON formatter and a
write per line costs ~12 µs on the decision path; here a decision only appends ``(verdict, seconds)`` to a
buffer, and the lines are formatted and written together at most ``flush_after`` seconds later (or at
256), or as soon as any other log record is emitted on the decision thread
(:meth:`DecisionLog.ordering_filter`), so the stream keeps its order (bench/RESULTS.md, "Observability
overhead").
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import threading
import time
from typing import Literal, TextIO

import msgspec

from callshield.verdict import Action, Mode, Verdict

__all__ = ["LOGGER_NAME", "DecisionLog", "mask_number"]

LOGGER_NAME = "callshield.decision"
NumberPolicy = Literal["full", "masked", "none"]
LogFormat = Literal["text", "json"]
MAX_BUFFERED = 256
"""Lines held before they are written at once, whatever the timer."""


_DIGIT = re.compile(r"\d")
MASKS_CACHED = 8192
"""Masked callee labels remembered (the same DIDs come back all the time)."""


def mask_number(label: str) -> str:
    """A number with its middle digits hidden: ``+14155550123`` → ``+141555***23``.

    The country code and area code stay (where the calls come from) and the last two digits (to tell
    numbers apart at a glance); labels without digits (``anonymous``, ``withheld``) are kept as they are.
    """
    if label[:1] == "+":
        keep = 7
    elif _DIGIT.search(label) is None:
        return label
    else:
        keep = 3
    if len(label) <= keep + 2:
        return "*" * len(label)
    return label[:keep] + "*" * (len(label) - keep - 2) + label[-2:]


class _JsonLine(msgspec.Struct, omit_defaults=True, gc=False):
    """One JSON decision line (a Struct encodes faster than a dict); caller and callee only when logged."""

    ts: float
    level: str
    logger: str
    message: str
    id: str
    action: Action
    decided: Action
    mode: Mode
    score: int
    reason: str
    reasons: list[str]
    decision_us: int
    caller: str | None = None
    callee: str | None = None


class DecisionLog:
    """Writes one line per verdict to ``stream`` (default: standard error, like the node's log)."""

    def __init__(
        self,
        *,
        fmt: LogFormat = "text",
        numbers: NumberPolicy = "masked",
        stream: TextIO | None = None,
        flush_after: float = 0.2,
    ) -> None:
        self._json = fmt == "json"
        self._numbers = numbers
        self._stream = stream if stream is not None else sys.stderr
        self._flush_after = flush_after
        self._pending: list[tuple[Verdict, float]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._thread = threading.get_ident()
        self._encode_lines = msgspec.json.Encoder().encode_lines
        self._second = -1
        self._second_text = ""
        self._callees: dict[str, str] = {}
        self.written = 0
        """Lines written so far."""

    def write(self, verdict: Verdict, seconds: float) -> None:
        """Log ``verdict``, decided in ``seconds``. On the decision path only the pair is kept: lines are
        formatted when the batch is written, all together (warm caches: ~3 µs a line, not ~15 µs)."""
        pending = self._pending
        pending.append((verdict, seconds))
        if len(pending) >= MAX_BUFFERED:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()  # no event loop (a script, a test): nothing would flush later
            else:
                self._timer = loop.call_later(self._flush_after, self.flush)

    def flush(self) -> None:
        """Format and write the buffered decisions."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        if self._json:
            text = self._encode_lines([self._json_line(verdict, seconds) for verdict, seconds in pending]).decode()
        else:
            text = "".join([self._text_line(verdict, seconds) for verdict, seconds in pending])
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # a closed or broken log stream must not break calls
            return
        self.written += len(pending)

    def ordering_filter(self, record: logging.LogRecord) -> bool:
        """A :mod:`logging` filter for the node's log handler: buffered decision lines go out before
        any other record from the deciding thread, so the stream stays in time order."""
        if self._pending and threading.get_ident() == self._thread:
            self.flush()
        return True

    def _caller_callee(self, verdict: Verdict) -> tuple[str, str] | None:
        numbers = self._numbers
        if numbers == "none":
            return None
        if numbers == "full":
            return verdict.caller, verdict.callee
        callee = self._callees.get(verdict.callee)
        if callee is None:
            if len(self._callees) >= MASKS_CACHED:
                self._callees.clear()
            callee = self._callees[verdict.callee] = mask_number(verdict.callee)
        return mask_number(verdict.caller), callee

    def _json_line(self, verdict: Verdict, seconds: float) -> _JsonLine:
        parties = self._caller_callee(verdict)
        line = _JsonLine(
            ts=round(verdict.decided_at, 3),
            level="info",
            logger=LOGGER_NAME,
            message="decision",
            id=verdict.id,
            action=verdict.action,
            decided=verdict.decided,
            mode=verdict.mode,
            score=verdict.score,
            reason=verdict.reason,
            reasons=[r.code for r in verdict.reasons],
            decision_us=round(seconds * 1e6),
        )
        if parties is not None:
            line.caller, line.callee = parties
        return line

    def _text_line(self, verdict: Verdict, seconds: float) -> str:
        decided = "" if verdict.decided is verdict.action else f" (decided {verdict.decided}, {verdict.mode} mode)"
        parties = self._caller_callee(verdict)
        who = "" if parties is None else f" caller {parties[0] or '-'} callee {parties[1] or '-'}"
        codes = ",".join(r.code for r in verdict.reasons)
        return (
            f"{self._asctime(verdict.decided_at)} INFO {LOGGER_NAME}: {verdict.id} {verdict.action}{decided} "
            f"score {verdict.score} {verdict.reason} [{codes}]{who} {seconds * 1e6:.0f}µs\n"
        )

    def _asctime(self, when: float) -> str:
        """``logging``'s default ``%(asctime)s`` (local time, milliseconds), the seconds part cached."""
        second = int(when)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._second_text},{int((when - second) * 1000):03d}"
