"""The screening challenge state machine: steps out, keys in, a result at the end."""

from __future__ import annotations

import random

import pytest

from callshield.config import ScreeningConfig, Seconds
from callshield.screening import Challenge, Finished, Listen, Play, challenge_rng, key_from_result
from callshield.verdict import ScreenResult

PROMPT = ("silence/1", "vm-press")


def run(challenge: Challenge, heard: list[str | None]) -> tuple[list[object], ScreenResult]:
    """Carry out the steps, answering each with the next of ``heard`` (None once it runs out)."""
    steps: list[object] = []
    keys = list(heard)
    while not isinstance(step := challenge.next_step(), Finished):
        steps.append(step)
        challenge.heard(keys.pop(0) if keys else None)
    return steps, step.result


def attempt(digit: str, timeout: float = 5.0) -> list[object]:
    return [Play(sound="silence/1"), Play(sound="vm-press"), Play(sound=f"digits/{digit}"), Listen(timeout=timeout)]


def test_right_digit_after_the_prompt_passes() -> None:
    steps, result = run(Challenge(digit="7", prompt=PROMPT, tries=2, timeout=5.0), [None, None, None, "7"])
    assert steps == attempt("7")
    assert result is ScreenResult.PASSED


def test_key_during_a_sound_ends_the_attempt() -> None:
    steps, result = run(Challenge(digit="7", prompt=PROMPT, tries=2, timeout=5.0), [None, "7"])
    assert steps == attempt("7")[:2]
    assert result is ScreenResult.PASSED


def test_wrong_key_uses_an_attempt_and_wins_over_silence() -> None:
    challenge = Challenge(digit="7", prompt=PROMPT, tries=2, timeout=5.0)
    steps, result = run(challenge, [None, None, None, "3"])
    assert steps == attempt("7") * 2
    assert result is ScreenResult.FAILED
    assert challenge.wrong_keys == 1


def test_silence_on_every_attempt_times_out() -> None:
    steps, result = run(Challenge(digit="4", prompt=(), tries=3, timeout=2.0), [])
    assert steps == [Play(sound="digits/4"), Listen(timeout=2.0)] * 3
    assert result is ScreenResult.TIMEOUT


def test_second_attempt_can_pass() -> None:
    _, result = run(Challenge(digit="4", prompt=(), tries=2, timeout=2.0), [None, "#", None, "4"])
    assert result is ScreenResult.PASSED


def test_hangup_is_not_a_pass_and_finishes() -> None:
    challenge = Challenge(digit="4", prompt=PROMPT, tries=2, timeout=2.0)
    challenge.next_step()
    assert challenge.hung_up() is ScreenResult.TIMEOUT
    assert challenge.next_step() == Finished(result=ScreenResult.TIMEOUT)
    passed = Challenge(digit="4", prompt=(), tries=1, timeout=2.0)
    run(passed, [None, "4"])
    assert passed.hung_up() is ScreenResult.PASSED  # hanging up after passing changes nothing


def test_steps_and_reports_must_alternate() -> None:
    challenge = Challenge(digit="4", prompt=(), tries=1, timeout=2.0)
    with pytest.raises(RuntimeError):
        challenge.heard(None)
    challenge.next_step()
    with pytest.raises(RuntimeError):
        challenge.next_step()


@pytest.mark.parametrize("digit", ["0", "", "12", "a"])
def test_digit_is_one_of_1_to_9(digit: str) -> None:
    with pytest.raises(ValueError, match="1-9"):
        Challenge(digit=digit, prompt=(), tries=1, timeout=1.0)


def test_new_challenges_draw_every_digit_from_the_rng() -> None:
    config = ScreeningConfig(prompt=("beep",), tries=3, digit_timeout=Seconds(2.0))
    rng = random.Random(1)
    digits = {Challenge.new(config, rng).digit for _ in range(200)}
    assert digits == set("123456789")
    first = Challenge.new(config, random.Random(5))
    assert run(first, [])[0][:2] == [Play(sound="beep"), Play(sound=f"digits/{first.digit}")]


def test_seeded_rng_only_when_asked() -> None:
    assert isinstance(challenge_rng({}), random.SystemRandom)
    seeded = challenge_rng({"CALLSHIELD_SCREEN_SEED": "7"})
    assert seeded.randint(1, 9) == random.Random(7).randint(1, 9)


@pytest.mark.parametrize(
    ("result", "key"),
    [
        ("55", "7"),
        ("35", "#"),
        ("42", "*"),
        ("48", "0"),
        ("0", None),
        ("-1", None),
        (None, None),
        ("65", None),
        ("x", None),
        ("999", None),
    ],
)
def test_key_from_agi_result(result: str | None, key: str | None) -> None:
    assert key_from_result(result) == key
