"""The ARI Stasis app (``callshield ari``) behind a real Asterisk 22, with real SIP calls.

The dialplan global ``CALLSHIELD_VIA=ari`` makes the sample dialplan run ``Stasis(callshield,inbound)``
instead of the FastAGI check. One ``callshield ari`` process per module connects to the sandbox's
ARI (``CALLSHIELD_HTTP_PORT``) and also listens for FastAGI on the sandbox's AGI port, where the
dialplan's hangup handler sends the hangup feedback. ``CALLSHIELD_SCREEN_SEED`` fixes the challenge
digits: the n-th challenge asks for the n-th ``randint(1, 9)`` of ``random.Random(SEED)``.
"""

from __future__ import annotations

import random
import socket
import subprocess
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Sandbox
from .sipp import Call
from .test_callshield_e2e import FLUSH_TIMEOUT, START_TIMEOUT, STOP_TIMEOUT, CallshieldServer, wait_for

SEED = 20261129
CONFIG = """\
[logging]
format = "json"

[screening]
tries = 1
digit_timeout = "2s"
"""
DID = "+18005550100"
DENIED_PREFIX = "+1415555*"
DENIED_CALLER = "+14155550411"
CLEAN_CALLER = "+16175550412"
PASSING_CALLER = "+15085550413"  # each screened caller in its own range: range heat would spread
SILENT_CALLER = "+17815550414"


class AriServer(CallshieldServer):
    """``callshield ari`` (with its FastAGI listener for the hangup feedback) as a subprocess."""

    def __init__(self, workdir: Path, sandbox: Sandbox) -> None:
        super().__init__(
            workdir, sandbox.agi_host, sandbox.agi_port, config=CONFIG, env={"CALLSHIELD_SCREEN_SEED": str(SEED)}
        )
        self.url = f"http://127.0.0.1:{sandbox.http_port}"
        self.env["CALLSHIELD_ARI_PASSWORD"] = "callshield"  # asterisk_conf/ari.conf

    def start(self) -> None:
        assert self.proc is None, "already running"
        started = time.time()
        argv = self._argv("ari", "--url", self.url, "--host", self.host, "--port", str(self.port))
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen(  # fixed argv, no shell
                argv,
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"callshield ari exited with {self.proc.returncode}:\n{self.log_tail()}")
            connected = any(
                r.get("message", "").startswith("ARI connected") and float(r.get("ts", 0)) >= started - 1
                for r in self.log_records()
            )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    pass
            except OSError:
                return False
            return connected

        wait_for(ready, START_TIMEOUT, "callshield ari did not connect to ARI", self.log_tail)


@pytest.fixture(scope="module")
def ari_server(asterisk_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Generator[AriServer, None, None]:
    asterisk_sandbox.reset_globals()
    server = AriServer(tmp_path_factory.mktemp("ari"), asterisk_sandbox)
    server.start()
    server.change_lists("deny", DENIED_PREFIX, "--note", "e2e: denylisted prefix (ARI)")
    for caller in (PASSING_CALLER, SILENT_CALLER):  # two spam reports each: risk between screen_at and block_at
        server.cli("report", caller)
        server.change_lists("report", caller)
    try:
        yield server
    finally:
        if server.proc is not None:
            asterisk_sandbox.wait_idle()
            rc, took = server.stop()
            assert (rc, took < STOP_TIMEOUT) == (0, True), server.log_tail()
            assert any(r.get("message") == "stopped" for r in server.log_records()), server.log_tail()


@pytest.fixture
def via_ari(asterisk: Sandbox, ari_server: AriServer) -> Sandbox:
    """The sandbox with the dialplan asking the ARI app (the ``asterisk`` fixture resets it afterwards)."""
    asterisk.set_global("CALLSHIELD_VIA", "ari")
    return asterisk


@pytest.fixture(scope="module")
def digits() -> random.Random:
    return random.Random(SEED)


def decision_with_outcome(server: AriServer, caller: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        for d in server.decisions(caller):
            if d["outcome"] is not None and d["outcome"]["hangup_cause"] is not None:
                return d
        return None

    found: dict[str, Any] = wait_for(done, FLUSH_TIMEOUT, f"no decision with its outcome for {caller}", server.log_tail)
    return found


def test_denylisted_caller_gets_403_cause_21(via_ari: Sandbox, ari_server: AriServer) -> None:
    (outcome,) = via_ari.call([(DENIED_CALLER, DID)], timeout=30)
    assert (outcome.status, outcome.cause, outcome.ended) == (403, 21, "rejected"), ari_server.log_tail()
    via_ari.wait_idle()
    decision = decision_with_outcome(ari_server, DENIED_CALLER)
    assert (decision["action"], decision["reason"], decision["callee"]) == ("block", "denylist:prefix", DID)
    # Blocked by DELETE ?reason_code=21 inside Stasis: never dialled, cause 21.
    assert (decision["outcome"]["dialstatus"], decision["outcome"]["billsec"]) == ("", 0)
    assert decision["outcome"]["hangup_cause"] == 21
    assert "Stasis(" in via_ari.logs(300)  # it really went through the ARI app


def test_clean_caller_is_connected_and_the_hangup_feedback_is_stored(via_ari: Sandbox, ari_server: AriServer) -> None:
    (outcome,) = via_ari.call([Call(CLEAN_CALLER, DID, hold_ms=2500)], timeout=30)
    assert (outcome.status, outcome.ended) == (200, "local_bye"), ari_server.log_tail()
    via_ari.wait_idle()  # the hangup handler's FastAGI feedback has been sent
    decision = decision_with_outcome(ari_server, CLEAN_CALLER)
    assert (decision["action"], decision["callee"]) == ("connect", DID)
    assert decision["outcome"]["dialstatus"] == "ANSWER"
    assert decision["outcome"]["billsec"] > 0
    assert decision["outcome"]["hangup_cause"] == 16
    reputation = ari_server.explain(CLEAN_CALLER)["reputation"]
    assert reputation["short_calls"] > 0, reputation  # answered, shorter than reputation.short_call


def test_screened_caller_pressing_the_digit_is_connected(
    via_ari: Sandbox, ari_server: AriServer, digits: random.Random
) -> None:
    digit = str(digits.randint(1, 9))
    call = Call(PASSING_CALLER, DID, digit=digit, dtmf_delay_ms=1500, hold_ms=1500)
    (outcome,) = via_ari.call([call], timeout=40)
    assert (outcome.status, outcome.dtmf_status, outcome.ended) == (200, 200, "local_bye"), ari_server.log_tail()
    via_ari.wait_idle()
    decision = decision_with_outcome(ari_server, PASSING_CALLER)
    assert (decision["decided"], decision["action"], decision["outcome"]["screen"]) == ("screen", "connect", "passed")
    assert decision["outcome"]["dialstatus"] == "ANSWER"  # continued to the dialplan, which dialled the phone


def test_silent_screened_caller_is_hung_up(via_ari: Sandbox, ari_server: AriServer, digits: random.Random) -> None:
    digits.randint(1, 9)  # this challenge's digit, never pressed
    (outcome,) = via_ari.call([Call(SILENT_CALLER, DID, hold_ms=15000)], timeout=40)
    assert (outcome.status, outcome.ended) == (200, "remote_bye"), ari_server.log_tail()
    via_ari.wait_idle()
    decision = decision_with_outcome(ari_server, SILENT_CALLER)
    assert (decision["decided"], decision["action"], decision["outcome"]["screen"]) == ("screen", "block", "timeout")
    assert decision["outcome"]["dialstatus"] == ""
    assert decision["outcome"]["hangup_cause"] == 21
