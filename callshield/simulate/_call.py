"""One simulated call, and the outcome model every family shares."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np

from callshield.simulate._mix import Value

__all__ = ["ANSWERED", "BUSY", "FAILED", "NO_ANSWER", "Outcome", "SimCall"]

ANSWERED: Final = "ANSWERED"
NO_ANSWER: Final = "NO ANSWER"
BUSY: Final = "BUSY"
FAILED: Final = "FAILED"
_DISPOSITIONS: Final = (ANSWERED, BUSY, FAILED, NO_ANSWER)


@dataclass(slots=True)
class SimCall:
    """One inbound call as it happened (no firewall), with its ground truth.

    ``caller`` is the true E.164 number (None for calls that present no number); ``src`` is what the
    trunk delivered and ``form`` names that format ('e164', 'nanp11', 'national10', 'intl011',
    'intl00', 'anonymous', 'restricted', 'unavailable', 'empty', 'junk').
    """

    start: int
    ring: int
    billsec: int
    disposition: str
    did: int
    src: str
    name: str
    form: str
    caller: str | None
    family: str
    campaign: str
    abusive: bool
    uniqueid: str = ""
    """Set once the calls are in time order: ``"<start>.<sequence>"`` like Asterisk's."""

    @property
    def answered(self) -> bool:
        return self.disposition == ANSWERED


@dataclass(frozen=True, slots=True)
class Outcome:
    """How calls of a family end: answer/busy/failed probabilities (no answer is the rest), ring
    times, and a log-normal talk time (billsec) cut at ``billsec_max``."""

    answer: float
    busy: float
    failed: float
    mu: float
    sigma: float
    billsec_max: int
    ring_min: int
    ring_max: int
    noanswer_ring_min: int
    noanswer_ring_max: int

    @classmethod
    def from_params(cls, params: Mapping[str, Value]) -> Outcome:
        return cls(
            answer=float(params["answer"]),
            busy=float(params["busy"]),
            failed=float(params["failed"]),
            mu=math.log(max(float(params["billsec_median"]), 0.5)),
            sigma=float(params["billsec_sigma"]),
            billsec_max=max(1, int(params["billsec_max"])),
            ring_min=int(params["ring_min"]),
            ring_max=int(params["ring_max"]),
            noanswer_ring_min=int(params["noanswer_ring_min"]),
            noanswer_ring_max=int(params["noanswer_ring_max"]),
        )

    def draw(self, rng: random.Random) -> tuple[str, int, int]:
        """(disposition, ring seconds, billsec)."""
        random = rng.random
        u = random()
        p_answer = self.answer
        if u < p_answer:
            billsec = min(self.billsec_max, max(1, int(math.exp(self.mu + self.sigma * rng.gauss()))))
            return ANSWERED, self.ring_min + int(random() * (self.ring_max - self.ring_min + 1)), billsec
        u -= p_answer
        if u < self.busy:
            return BUSY, int(random() * 2), 0
        if u < self.busy + self.failed:
            return FAILED, 0, 0
        spread = self.noanswer_ring_max - self.noanswer_ring_min + 1
        return NO_ANSWER, self.noanswer_ring_min + int(random() * spread), 0

    def draw_many(self, generator: np.random.Generator, n: int) -> tuple[list[str], list[int], list[int]]:
        """``n`` outcomes at once, with the same distributions as :meth:`draw`:
        (dispositions, ring seconds, billsecs)."""
        u = generator.random(n)
        spread = generator.random(n)
        answered = u < self.answer
        busy = ~answered & (u < self.answer + self.busy)
        failed = ~answered & ~busy & (u < self.answer + self.busy + self.failed)
        codes = np.where(answered, 0, np.where(busy, 1, np.where(failed, 2, 3)))
        talk = np.exp(self.mu + self.sigma * generator.standard_normal(n)).astype(np.int64)
        billsec = np.where(answered, np.clip(talk, 1, self.billsec_max), 0)
        answer_ring = self.ring_min + (spread * (self.ring_max - self.ring_min + 1)).astype(np.int64)
        noanswer_span = self.noanswer_ring_max - self.noanswer_ring_min + 1
        noanswer_ring = self.noanswer_ring_min + (spread * noanswer_span).astype(np.int64)
        busy_ring = (spread * 2).astype(np.int64)
        ring = np.where(answered, answer_ring, np.where(busy, busy_ring, np.where(failed, 0, noanswer_ring)))
        names = _DISPOSITIONS
        return [names[code] for code in codes.tolist()], ring.tolist(), billsec.tolist()
