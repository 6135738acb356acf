"""What every Asterisk adapter (FastAGI server, ARI app) needs from the decision core, and the one
step they share after a screening challenge. No I/O here: the adapters carry the conversation."""

from __future__ import annotations

import logging
from typing import Protocol

from callshield.config import ScreeningConfig
from callshield.verdict import Call, CallOutcome, ScreenResult, Verdict

__all__ = ["DecisionEngine", "ScreenCounters", "report_screen"]

logger = logging.getLogger(__name__)


class DecisionEngine(Protocol):
    """The decision core as the adapters see it (:class:`~callshield.engine.Firewall`, or a fake)."""

    def decide(self, call: Call) -> Verdict:
        """The verdict for one call: synchronous, fast (~50 µs), never raises for bad input."""
        ...

    def feedback(self, outcome: CallOutcome) -> object:
        """Learn how a decided call ended (taken once per decision id; the result is ignored)."""
        ...

    def screened(self, decision_id: str, result: ScreenResult) -> object:
        """Learn a screening challenge's result (taken once per decision id; the result is ignored)."""
        ...

    @property
    def screening(self) -> ScreeningConfig | None:
        """The challenge settings when the session runs the challenge; None leaves it to the dialplan."""
        ...


class ScreenCounters(Protocol):
    """The counters an adapter keeps about challenges (its stats record)."""

    screen_passed: int
    screen_failed: int
    screen_timeout: int
    engine_errors: int


def report_screen(engine: DecisionEngine, counters: ScreenCounters, decision_id: str, result: ScreenResult) -> None:
    """Count a challenge's result and hand it to the engine; an engine failure is counted and logged."""
    if result is ScreenResult.PASSED:
        counters.screen_passed += 1
    elif result is ScreenResult.FAILED:
        counters.screen_failed += 1
    else:
        counters.screen_timeout += 1
    try:
        engine.screened(decision_id, result)
    except Exception:
        counters.engine_errors += 1
        logger.exception("engine.screened() failed for decision %s", decision_id)
