"""The screening challenge as a sans-I/O state machine: steps out, keys in, a result at the end.

Rules (shared by the FastAGI session, the AGI script and the ARI app, which only carry the steps out):

- One random digit 1-9 per challenge (0 is avoided: some phones put it apart, and "press zero"
  is the operator's key), drawn from an injected RNG so tests can fix it.
- Each attempt plays the configured prompt sounds and then ``digits/<digit>``, then listens for
  ``digit_timeout`` seconds. A key pressed during any sound ends the attempt at once (barge-in).
- The right key passes. A wrong key or silence ends the attempt; after ``tries`` attempts the
  result is ``failed`` when any wrong key was pressed, else ``timeout``.
- A caller who hangs up mid-challenge has not passed: ``timeout`` (nobody answered the question).

Usage by an adapter::

    challenge = Challenge.new(config.screening, rng)
    while not isinstance(step := challenge.next_step(), Finished):
        key = await carry_out(step)          # Play: the key pressed during it, or None
        challenge.heard(key)                 # Listen: the key pressed in time, or None
    result = step.result
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from typing import Final

import msgspec

from callshield.config import ScreeningConfig
from callshield.verdict import ScreenResult

__all__ = [
    "KEYS",
    "SEED_VARIABLE",
    "Challenge",
    "Finished",
    "Listen",
    "Play",
    "Step",
    "challenge_rng",
    "key_from_result",
]

KEYS: Final = "0123456789*#"
"""The keys that interrupt a prompt (AGI escape digits)."""


class Play(msgspec.Struct, frozen=True, kw_only=True):
    """Play one sound (a core sound name without extension); a key pressed during it ends it."""

    sound: str


class Listen(msgspec.Struct, frozen=True, kw_only=True):
    """Wait up to ``timeout`` seconds for one key."""

    timeout: float


class Finished(msgspec.Struct, frozen=True, kw_only=True):
    """The challenge is over."""

    result: ScreenResult


Step = Play | Listen | Finished


class Challenge:
    """One challenge: feed it what was heard after each step, until it says :class:`Finished`."""

    def __init__(self, *, digit: str, prompt: tuple[str, ...], tries: int, timeout: float) -> None:
        if len(digit) != 1 or digit not in "123456789":
            raise ValueError(f"the challenge digit must be 1-9, got {digit!r}")
        if tries < 1:
            raise ValueError("tries must be at least 1")
        self.digit = digit
        self._sounds = (*prompt, f"digits/{digit}")
        self._tries = tries
        self._timeout = timeout
        self._attempt = 1
        self._position = 0  # index into the attempt's steps: the sounds, then the Listen
        self._wrong_keys = 0
        self._result: ScreenResult | None = None
        self._awaiting = False

    @classmethod
    def new(cls, config: ScreeningConfig, rng: random.Random) -> Challenge:
        """A challenge with a fresh random digit and the configured prompt, tries and timeout."""
        return cls(
            digit=str(rng.randint(1, 9)),
            prompt=config.prompt,
            tries=config.tries,
            timeout=float(config.digit_timeout),
        )

    @property
    def result(self) -> ScreenResult | None:
        """The result once finished, else None."""
        return self._result

    @property
    def wrong_keys(self) -> int:
        return self._wrong_keys

    def next_step(self) -> Step:
        """What to do now. Call :meth:`heard` after carrying out a Play or Listen step."""
        if self._result is not None:
            return Finished(result=self._result)
        if self._awaiting:
            raise RuntimeError("heard() must report the outcome of the previous step first")
        self._awaiting = True
        if self._position < len(self._sounds):
            return Play(sound=self._sounds[self._position])
        return Listen(timeout=self._timeout)

    def heard(self, key: str | None) -> None:
        """The outcome of the last step: the key pressed (``"7"``), or None for nothing."""
        if not self._awaiting:
            raise RuntimeError("heard() without a step in progress")
        self._awaiting = False
        if key:
            self._judge(key[0])
        elif self._position < len(self._sounds):
            self._position += 1
        else:
            self._end_attempt()

    def hung_up(self) -> ScreenResult:
        """The caller left before the end: not passed."""
        if self._result is None:
            self._result = ScreenResult.TIMEOUT
        self._awaiting = False
        return self._result

    def _judge(self, key: str) -> None:
        if key == self.digit:
            self._result = ScreenResult.PASSED
            return
        self._wrong_keys += 1
        self._end_attempt()

    def _end_attempt(self) -> None:
        if self._attempt >= self._tries:
            self._result = ScreenResult.FAILED if self._wrong_keys else ScreenResult.TIMEOUT
            return
        self._attempt += 1
        self._position = 0


SEED_VARIABLE: Final = "CALLSHIELD_SCREEN_SEED"
"""Environment variable that fixes the challenge digits (tests only: a known seed makes them guessable)."""


def challenge_rng(environ: Mapping[str, str] | None = None) -> random.Random:
    """The RNG challenges draw their digit from: the OS's, unless ``CALLSHIELD_SCREEN_SEED`` is set."""
    seed = (os.environ if environ is None else environ).get(SEED_VARIABLE, "")
    if seed:
        return random.Random(int(seed))
    return random.SystemRandom()


def key_from_result(result: str | None) -> str | None:
    """The key an AGI playback or WAIT FOR DIGIT reply reports (``result=`` is its ASCII code), or None."""
    if result is None or not result.isdigit():
        return None
    code = int(result)
    if code <= 0 or code > 127:
        return None
    key = chr(code)
    return key if key in KEYS else None
