"""``AGI(callshield-agi,...)``: the classic AGI script run by the sandbox's real Asterisk, with real SIP calls.

The dialplan is the shipped one with ``CALLSHIELD_VIA=script``: ``[callshield-check]`` runs
``AGI(callshield-agi,inbound)`` and the hangup handler ``AGI(callshield-agi,hangup,...)``, a new
process per call, with no server running. ``scripts/asterisk-sandbox`` offers the script to the
chroot's Asterisk (an agi-bin wrapper running the host's ``.venv/bin/callshield-agi``; see its
header); the script's config, database and screening seed come from the chroot's
``/etc/callshield/agi.env``, which these tests write. The same database is then served by
``callshield serve`` over FastAGI to check that both paths give the same outcomes.
"""

from __future__ import annotations

import random
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Sandbox
from .sipp import Call, Outcome
from .test_callshield_e2e import FLUSH_TIMEOUT, STOP_TIMEOUT, CallshieldServer, describe, wait_for

CONFIG = """\
[logging]
format = "json"

[[rules]]
action = "deny"
pattern = "+1212555*"
cause = 17
note = "e2e: busy for 212-555"
"""
SCREEN_CONFIG = """\
[logging]
format = "json"

[policy]
screen_at = 1
block_at = 101

[screening]
tries = 1
digit_timeout = "2s"
"""
SEED = 20261202
DIGIT = str(random.Random(SEED).randint(1, 9))  # each script process draws its first digit
DID = "+18005550100"  # answered at once by the sample dialplan's stand-in phone
# One set of callers per path (script, FastAGI) so that neither sees the other's history.
SCRIPT_CALLERS = {"denied": "+14155550411", "busy": "+12125550447", "clean": "+16175550423"}
FASTAGI_CALLERS = {"denied": "+14155550511", "busy": "+12125550547", "clean": "+16175550523"}
PASSING_CALLER = "+15085550461"
SILENT_CALLER = "+17815550462"


class ScriptSetup:
    """Where the sandbox's callshield-agi takes its settings from: ``ROOT/etc/callshield/agi.env``."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.root = Path(sandbox.script("root").strip())
        self.wrapper = self.root / "usr/share/asterisk/agi-bin/callshield-agi"
        self.env_file = self.root / "etc/callshield/agi.env"

    def use(self, server: CallshieldServer, *, seed: int | None = None) -> None:
        """Make the script use ``server``'s config and database (host paths: it runs in the host's view)."""
        lines = [f"CALLSHIELD_CONFIG={server.config}", f"CALLSHIELD_DB={server.database}"]
        if seed is not None:
            lines.append(f"CALLSHIELD_SCREEN_SEED={seed}")
        self.env_file.parent.mkdir(parents=True, exist_ok=True)
        self.env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def remove(self) -> None:
        self.env_file.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def script(asterisk_sandbox: Sandbox) -> Generator[ScriptSetup, None, None]:
    setup = ScriptSetup(asterisk_sandbox)
    if not setup.wrapper.exists():
        pytest.fail(
            f"the sandbox offers no callshield-agi ({setup.wrapper} is missing): it needs the console script "
            "in .venv (pip install -e .) and mount rights (unshare); see scripts/asterisk-sandbox start"
        )
    try:
        yield setup
    finally:
        setup.remove()


@pytest.fixture(scope="module")
def database(
    asterisk_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Generator[CallshieldServer, None, None]:
    """A config and database, with a CLI deny list entry; its server is started only for the comparison."""
    server = CallshieldServer(
        tmp_path_factory.mktemp("agi-script"), asterisk_sandbox.agi_host, asterisk_sandbox.agi_port, config=CONFIG
    )
    server.cli("deny", "+1415555*", "--note", "e2e: denylisted prefix")
    try:
        yield server
    finally:
        if server.proc is not None:
            asterisk_sandbox.wait_idle()
            server.stop()


def calls_for(callers: dict[str, str]) -> list[Call]:
    return [
        Call(callers["denied"], DID),
        Call(callers["busy"], DID),
        Call(callers["clean"], DID, hold_ms=2500),
    ]


def summary(outcomes: list[Outcome]) -> list[tuple[int | None, int | None, str]]:
    return [(o.status, o.cause, o.ended) for o in outcomes]


def decision_with_outcome(server: CallshieldServer, caller: str) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        found = (d for d in server.decisions(caller) if d["outcome"] and d["outcome"]["hangup_cause"] is not None)
        return next(found, None)

    return wait_for(ended, FLUSH_TIMEOUT, f"no decision with its hangup feedback for {caller}", server.log_tail)


def test_script_verdicts_and_feedback_match_fastagi(
    asterisk: Sandbox, script: ScriptSetup, database: CallshieldServer
) -> None:
    script.use(database)
    asterisk.set_global("CALLSHIELD_VIA", "script")
    via_script = asterisk.call(calls_for(SCRIPT_CALLERS), timeout=60)
    expected = [(403, 21, "rejected"), (486, 17, "rejected"), (200, None, "local_bye")]
    assert summary(via_script) == expected, describe(via_script) + "\n" + asterisk.logs(60)
    asterisk.wait_idle()  # the hangup handlers (AGI(callshield-agi,hangup,...)) have run

    # The script committed each decision before exiting, and its hangup feedback found it.
    denied = decision_with_outcome(database, SCRIPT_CALLERS["denied"])
    assert (denied["action"], denied["reason"]) == ("block", "denylist:prefix")
    assert denied["outcome"]["hangup_cause"] == 21
    busy = decision_with_outcome(database, SCRIPT_CALLERS["busy"])
    assert (busy["action"], busy["outcome"]["hangup_cause"]) == ("block", 17)
    clean = decision_with_outcome(database, SCRIPT_CALLERS["clean"])
    assert (clean["action"], clean["callee"]) == ("connect", DID)
    assert clean["outcome"]["dialstatus"] == "ANSWER" and clean["outcome"]["billsec"] > 0
    assert clean["outcome"]["hangup_cause"] == 16
    assert "callshield-agi: " not in asterisk.logs(400)  # no error (the script says them with VERBOSE)

    # The same kinds of callers through callshield serve (FastAGI) on the same database.
    database.start()
    try:
        asterisk.reset_globals()  # CALLSHIELD_VIA=agi, pointing at the server
        via_fastagi = asterisk.call(calls_for(FASTAGI_CALLERS), timeout=60)
        asterisk.wait_idle()
    finally:
        rc, took = database.stop()
    assert (rc, took < STOP_TIMEOUT) == (0, True), database.log_tail()
    assert summary(via_fastagi) == summary(via_script), describe(via_fastagi)
    fastagi_denied = decision_with_outcome(database, FASTAGI_CALLERS["denied"])
    assert (fastagi_denied["action"], fastagi_denied["reason"]) == (denied["action"], denied["reason"])


@pytest.fixture(scope="module")
def screening_database(asterisk_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> CallshieldServer:
    """Every new caller is screened (screen_at 1, block_at 101); one try of 2 s."""
    return CallshieldServer(
        tmp_path_factory.mktemp("agi-script-screen"),
        asterisk_sandbox.agi_host,
        asterisk_sandbox.agi_port,
        config=SCREEN_CONFIG,
    )


def test_screening_runs_in_the_script_process(
    asterisk: Sandbox, script: ScriptSetup, screening_database: CallshieldServer
) -> None:
    script.use(screening_database, seed=SEED)
    asterisk.set_global("CALLSHIELD_VIA", "script")
    passing, silent = asterisk.call(
        [
            Call(PASSING_CALLER, DID, digit=DIGIT, dtmf_delay_ms=2500, hold_ms=1500),
            Call(SILENT_CALLER, DID, hold_ms=15000),
        ],
        timeout=60,
    )
    assert (passing.status, passing.ended, passing.dtmf_status) == (200, "local_bye", 200), describe([passing])
    assert (silent.status, silent.ended, silent.bye_cause) == (200, "remote_bye", 21), describe([silent])
    asterisk.wait_idle()

    passed = decision_with_outcome(screening_database, PASSING_CALLER)
    assert (passed["decided"], passed["action"], passed["outcome"]["screen"]) == ("screen", "connect", "passed")
    timed_out = decision_with_outcome(screening_database, SILENT_CALLER)
    assert (timed_out["action"], timed_out["outcome"]["screen"]) == ("block", "timeout")
