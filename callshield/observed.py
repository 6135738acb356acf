"""The decision engine as the node serves it: every decision timed, counted and logged.

:class:`ObservedEngine` wraps the :class:`~callshield.adapter.DecisionEngine` the FastAGI server and the ARI
app use; the engine itself stays free of metrics and logging. The decision time is measured with
:func:`time.perf_counter` around ``decide()`` (a measurement, not an input of the decision).
"""

from __future__ import annotations

from time import perf_counter

from callshield.adapter import DecisionEngine
from callshield.config import ScreeningConfig
from callshield.decisionlog import DecisionLog
from callshield.metrics import DecisionMetrics
from callshield.verdict import Call, CallOutcome, ScreenResult, Verdict

__all__ = ["ObservedEngine"]


class ObservedEngine:
    """``engine`` with each decision counted in ``metrics`` and written to ``log`` (either may be None)."""

    __slots__ = ("_decide", "_log", "_metrics", "engine")

    def __init__(self, engine: DecisionEngine, *, metrics: DecisionMetrics | None, log: DecisionLog | None) -> None:
        self.engine = engine
        self._decide = engine.decide
        self._metrics = metrics.observe if metrics is not None else None
        self._log = log.write if log is not None else None

    def decide(self, call: Call) -> Verdict:
        started = perf_counter()
        verdict = self._decide(call)
        seconds = perf_counter() - started
        if self._metrics is not None:
            self._metrics(verdict, seconds)
        if self._log is not None:
            self._log(verdict, seconds)
        return verdict

    def feedback(self, outcome: CallOutcome) -> object:
        return self.engine.feedback(outcome)

    def screened(self, decision_id: str, result: ScreenResult) -> object:
        return self.engine.screened(decision_id, result)

    @property
    def screening(self) -> ScreeningConfig | None:
        return self.engine.screening
