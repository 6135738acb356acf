"""The screening challenge run by ``callshield serve`` inside the FastAGI session, with real SIP calls.

The server runs with ``CALLSHIELD_SCREEN_SEED`` set, so the test knows each challenge's digit: the
n-th challenge asks for the n-th ``randint(1, 9)`` of ``random.Random(SEED)``. Callers are sent to
screening by two spam reports (risk ~63, between ``screen_at`` 50 and ``block_at`` 80). The caller
presses keys as SIP INFO DTMF; Asterisk hands them to the AGI playback and WAIT FOR DIGIT commands.
"""

from __future__ import annotations

import random
from collections.abc import Generator
from typing import Any

import pytest

from .conftest import Sandbox
from .sipp import Call
from .test_callshield_e2e import FLUSH_TIMEOUT, STOP_TIMEOUT, CallshieldServer, describe, wait_for

SEED = 20261128
CONFIG = """\
[logging]
format = "json"

[screening]
tries = 1
digit_timeout = "2s"
"""
DID = "+18005550100"
PASSING_CALLER = "+16175550301"  # each caller in its own range: range heat would spread
SILENT_CALLER = "+15085550302"
WRONG_KEY_CALLER = "+17815550303"


class Digits:
    """The digits the server's seeded RNG draws, one per challenge, in order."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def next(self) -> str:
        return str(self._rng.randint(1, 9))


@pytest.fixture(scope="module")
def screening_server(
    asterisk_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Generator[CallshieldServer, None, None]:
    asterisk_sandbox.reset_globals()
    server = CallshieldServer(
        tmp_path_factory.mktemp("screening"),
        asterisk_sandbox.agi_host,
        asterisk_sandbox.agi_port,
        config=CONFIG,
        env={"CALLSHIELD_SCREEN_SEED": str(SEED)},
    )
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None:
            asterisk_sandbox.wait_idle()
            rc, took = server.stop()
            assert (rc, took < STOP_TIMEOUT) == (0, True), server.log_tail()


@pytest.fixture(scope="module")
def digits() -> Digits:
    return Digits(SEED)


def make_screened(server: CallshieldServer, caller: str) -> None:
    """Two spam reports by the CLI, and wait until the running server has dropped its cached view."""
    server.cli("report", caller)
    server.change_lists("report", caller)


def screened_decision(server: CallshieldServer, caller: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        for decision in server.decisions(caller):
            if decision["decided"] == "screen" and decision["outcome"] and decision["outcome"]["screen"]:
                return decision
        return None

    return wait_for(done, FLUSH_TIMEOUT, f"no screened decision with a result for {caller}", server.log_tail)


def test_caller_pressing_the_digit_is_connected(
    asterisk: Sandbox, screening_server: CallshieldServer, digits: Digits
) -> None:
    make_screened(screening_server, PASSING_CALLER)
    digit = digits.next()
    (outcome,) = asterisk.call([Call(PASSING_CALLER, DID, digit=digit, dtmf_delay_ms=2500, hold_ms=1500)], timeout=40)
    assert (outcome.status, outcome.ended, outcome.dtmf_status) == (200, "local_bye", 200), (
        describe([outcome]) + "\n" + screening_server.log_tail()
    )
    asterisk.wait_idle()
    decision = screened_decision(screening_server, PASSING_CALLER)
    assert (decision["action"], decision["outcome"]["screen"]) == ("connect", "passed")
    assert screening_server.explain(PASSING_CALLER)["reputation"]["screen_passed"] > 0

    # The pass lets this caller reach this DID without a new challenge (no digit: it would be cut off).
    (again,) = asterisk.call([Call(PASSING_CALLER, DID, hold_ms=4000)], timeout=40)
    assert (again.status, again.ended) == (200, "local_bye"), describe([again])
    asterisk.wait_idle()
    latest = wait_for(
        lambda: next((d for d in screening_server.decisions(PASSING_CALLER) if d["reason"] == "screen:passed"), None),
        FLUSH_TIMEOUT,
        "the second call was not connected by the screening pass",
        screening_server.log_tail,
    )
    assert latest["action"] == "connect"


def test_silent_caller_is_hung_up_with_cause_21(
    asterisk: Sandbox, screening_server: CallshieldServer, digits: Digits
) -> None:
    make_screened(screening_server, SILENT_CALLER)
    digits.next()
    (outcome,) = asterisk.call([Call(SILENT_CALLER, DID, hold_ms=20000)], timeout=40)
    # Answered for the challenge, then hung up by Asterisk once the 2 s for the key have passed.
    assert (outcome.status, outcome.ended, outcome.bye_cause) == (200, "remote_bye", 21), describe([outcome])
    asterisk.wait_idle()
    decision = screened_decision(screening_server, SILENT_CALLER)
    assert (decision["action"], decision["outcome"]["screen"]) == ("block", "timeout")


def test_wrong_key_fails_and_counts_against_the_caller(
    asterisk: Sandbox, screening_server: CallshieldServer, digits: Digits
) -> None:
    make_screened(screening_server, WRONG_KEY_CALLER)
    wrong = "1" if digits.next() != "1" else "2"
    (outcome,) = asterisk.call(
        [Call(WRONG_KEY_CALLER, DID, digit=wrong, dtmf_delay_ms=2500, hold_ms=20000)], timeout=40
    )
    assert (outcome.status, outcome.ended, outcome.bye_cause) == (200, "remote_bye", 21), describe([outcome])
    asterisk.wait_idle()
    decision = screened_decision(screening_server, WRONG_KEY_CALLER)
    assert (decision["action"], decision["outcome"]["screen"]) == ("block", "failed")
    assert screening_server.explain(WRONG_KEY_CALLER)["reputation"]["screen_failed"] > 0
