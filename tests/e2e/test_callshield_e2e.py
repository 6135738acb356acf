"""The real callshield server (``callshield serve``) behind a real Asterisk 22, with real SIP calls.

One ``callshield serve`` process per module listens on the sandbox's FastAGI port with a fresh
database and a config file (one deny rule with a custom cause, JSON logs). Lists are changed with
the CLI on the same database while the server runs, as an administrator would. Every test uses its
own caller numbers: reputation and dialing patterns are per caller.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from .conftest import Sandbox
from .sipp import Call, Outcome

T = TypeVar("T")

START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0  # graceful shutdown with no call in flight should take well under a second
RELOAD_TIMEOUT = 5.0  # the server polls the database generation every second
FLUSH_TIMEOUT = 5.0  # buffered audit/outcome writes are committed every storage.flush_interval (500 ms)

CONFIG = """\
[logging]
format = "json"

[[rules]]
action = "deny"
pattern = "+1212555*"
cause = 17
note = "e2e: busy for 212-555"
"""

# Callers, one set per test (NANP, area code and exchange 2-9; none shares NPA-NXX with a DID).
DENIED_PREFIX = "+1415555*"
DENIED_CALLER = "+14155550111"  # tests 1 and 7
FAIL_OPEN_CALLER = "+14155550222"  # test 6 (same denied prefix)
CLEAN_CALLER = "+16175550123"  # test 2
BUSY_CAUSE_CALLER = "+12125550147"  # test 3 (config rule, cause 17)
FEEDBACK_CALLER = "+16465550188"  # test 4
SWEEP_CALLER = "+17735550142"  # test 5
DID = "+18005550100"  # answered at once by the sample dialplan's stand-in phone
SWEEP_DIDS = [f"+1312555{1000 + i}" for i in range(12)]


class CallshieldServer:
    """``callshield serve`` as a subprocess on a fixed port, plus the CLI on the same database."""

    def __init__(
        self, workdir: Path, host: str, port: int, *, config: str = CONFIG, env: dict[str, str] | None = None
    ) -> None:
        self.workdir = workdir
        self.host = host
        self.port = port
        self.config = workdir / "callshield.toml"
        self.database = workdir / "callshield.sqlite3"
        self.log = workdir / "serve.log"
        self.config.write_text(config, encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {k: v for k, v in os.environ.items() if k != "CALLSHIELD_CONFIG"} | (env or {})

    def _argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "callshield", "--config", str(self.config), "--db", str(self.database), *args]

    # -- the server ------------------------------------------------------------------------------

    def start(self) -> None:
        assert self.proc is None, "already running"
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen(  # fixed argv, no shell
                self._argv("serve", "--host", self.host, "--port", str(self.port)),
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                raise AssertionError(f"callshield serve exited with {rc} at start:\n{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return  # a connection closed before any header is a port probe to the server
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise AssertionError(
                        f"callshield serve not listening on {self.host}:{self.port} after {START_TIMEOUT:g} s:\n"
                        f"{self.log_tail()}"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> tuple[int, float]:
        """SIGTERM; return (exit code, seconds it took). Kills it (code -9) if it does not stop in time."""
        proc = self.proc
        assert proc is not None, "not running"
        self.proc = None
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return -9, time.monotonic() - started
        return rc, time.monotonic() - started

    def kill(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    # -- the CLI ---------------------------------------------------------------------------------

    def cli(self, *args: str) -> str:
        proc = subprocess.run(  # fixed argv, no shell
            self._argv(*args),
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, f"callshield {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}"
        return proc.stdout

    def change_lists(self, *args: str) -> None:
        """Run a list command (deny, allow, unlist) and wait until the running server has reloaded."""
        self.cli(*args)
        committed = time.time()  # the CLI has exited: its change is committed
        wait_for(
            lambda: any(
                r.get("message", "").startswith("database changed by another process")
                and float(r.get("ts", 0)) > committed
                for r in self.log_records()
            ),
            RELOAD_TIMEOUT,
            f"the server did not reload its lists after `callshield {' '.join(args)}`",
            self.log_tail,
        )

    def explain(self, number: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.cli("explain", number, "--all", "1", "--json"))
        return data

    def decisions(self, number: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.explain(number).get("decisions", [])
        return found


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, context: Callable[[], str] | None = None) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} (waited {timeout:g} s)" + (f"\n{context()}" if context else ""))
        time.sleep(0.1)


def describe(outcomes: list[Outcome]) -> str:
    return "\n".join(f"{o.call.caller} -> {o.call.did}: {o.status} cause {o.cause} {o.ended}" for o in outcomes)


@pytest.fixture(scope="module")
def callshield(
    asterisk_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Generator[CallshieldServer, None, None]:
    """The real server on the sandbox's FastAGI port, with a fresh database; stopped with SIGTERM."""
    asterisk_sandbox.reset_globals()  # the dialplan points at asterisk_sandbox.agi_port
    server = CallshieldServer(
        tmp_path_factory.mktemp("callshield"), asterisk_sandbox.agi_host, asterisk_sandbox.agi_port
    )
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None:
            asterisk_sandbox.wait_idle()  # let the last hangup feedback sessions finish
            rc, took = server.stop()
            assert (rc, took < STOP_TIMEOUT) == (0, True), (
                f"callshield serve did not stop gracefully on SIGTERM (exit {rc} after {took:.1f} s):\n"
                f"{server.log_tail()}"
            )
            assert any(r.get("message") == "stopped" for r in server.log_records()), server.log_tail()


@pytest.fixture(scope="module")
def denied_call(asterisk_sandbox: Sandbox, callshield: CallshieldServer) -> Outcome:
    """`callshield deny '+1415555*'` while the server runs, then one call from DENIED_CALLER."""
    callshield.change_lists("deny", DENIED_PREFIX, "--note", "e2e: denylisted prefix")
    (outcome,) = asterisk_sandbox.call([(DENIED_CALLER, DID)], timeout=30)
    return outcome


# 1
def test_denylisted_caller_gets_403_cause_21(denied_call: Outcome, callshield: CallshieldServer) -> None:
    assert (denied_call.status, denied_call.cause, denied_call.ended) == (403, 21, "rejected"), callshield.log_tail()


# 2
def test_clean_caller_is_connected(asterisk: Sandbox, callshield: CallshieldServer) -> None:
    (outcome,) = asterisk.call([Call(CLEAN_CALLER, DID, hold_ms=500)], timeout=30)
    assert (outcome.status, outcome.ended) == (200, "local_bye"), callshield.log_tail()


# 3
def test_config_deny_rule_with_custom_cause(asterisk: Sandbox, callshield: CallshieldServer) -> None:
    (outcome,) = asterisk.call([(BUSY_CAUSE_CALLER, DID)], timeout=30)
    # Asterisk maps Q.850 cause 17 (user busy) to 486 Busy Here, and says so in the Reason header.
    assert (outcome.status, outcome.cause, outcome.ended) == (486, 17, "rejected"), callshield.log_tail()
    asterisk.wait_idle()
    decision = wait_for(
        lambda: next((d for d in callshield.decisions(BUSY_CAUSE_CALLER) if d["action"] == "block"), None),
        FLUSH_TIMEOUT,
        "no block decision recorded for the config rule",
        callshield.log_tail,
    )
    assert decision["reason"] == "denylist:prefix"


# 4
def test_hangup_feedback_reaches_the_reputation_store(asterisk: Sandbox, callshield: CallshieldServer) -> None:
    (outcome,) = asterisk.call([Call(FEEDBACK_CALLER, DID, hold_ms=2500)], timeout=30)
    assert (outcome.status, outcome.ended) == (200, "local_bye"), callshield.log_tail()
    asterisk.wait_idle()  # the hangup handler's AGI call has been made

    def answered() -> dict[str, Any] | None:
        for d in callshield.decisions(FEEDBACK_CALLER):
            if d["outcome"] and d["outcome"]["dialstatus"]:
                return d
        return None

    decision = wait_for(
        answered, FLUSH_TIMEOUT, "no decision with an outcome for the answered call", callshield.log_tail
    )
    assert decision["action"] == "connect"
    assert decision["callee"] == DID
    assert decision["outcome"]["dialstatus"] == "ANSWER"
    assert decision["outcome"]["billsec"] > 0  # held 2.5 s; CDR(billsec) rounds down
    assert decision["outcome"]["hangup_cause"] == 16  # normal clearing
    # It is also evidence: answered but shorter than reputation.short_call (6 s), committed in the same
    # flush as the outcome. (Call counts, "calls", are only written every patterns.snapshot_interval.)
    reputation = callshield.explain(FEEDBACK_CALLER)["reputation"]
    assert reputation["short_calls"] > 0, reputation


# 5
def test_sweep_of_sequential_dids_is_blocked(asterisk: Sandbox, callshield: CallshieldServer) -> None:
    calls = [Call(SWEEP_CALLER, did, hold_ms=300) for did in SWEEP_DIDS]
    outcomes = asterisk.call(calls, rate=2, limit=1, timeout=60)  # one at a time, a new one every 0.5 s
    statuses = [o.status for o in outcomes]
    assert outcomes[0].status == 200, describe(outcomes)
    assert all((o.status, o.cause) == (403, 21) for o in outcomes[-4:]), describe(outcomes)
    # Once the pattern trips it stays tripped: connected calls first, then only blocked ones.
    first_block = statuses.index(403)
    assert statuses == [200] * first_block + [403] * (len(statuses) - first_block), describe(outcomes)

    asterisk.wait_idle()
    blocks = wait_for(
        lambda: [d for d in callshield.decisions(SWEEP_CALLER) if d["action"] == "block"] or None,
        FLUSH_TIMEOUT,
        "no block decision recorded for the sweep",
        callshield.log_tail,
    )
    assert any(reason.startswith("pattern:sweep") for d in blocks for reason in d["reasons"]), blocks


# 6
def test_fail_open_when_callshield_is_stopped(asterisk: Sandbox, callshield: CallshieldServer) -> None:
    asterisk.wait_idle()
    rc, took = callshield.stop()
    assert (rc, took < STOP_TIMEOUT) == (0, True), f"exit {rc} after {took:.1f} s:\n{callshield.log_tail()}"
    try:
        (down,) = asterisk.call([(FAIL_OPEN_CALLER, DID)], timeout=30)
        # The caller is denylisted, but nothing answers on the FastAGI port: the dialplan connects.
        assert (down.status, down.ended) == (200, "local_bye")
        assert "callshield: fail open" in asterisk.logs(200)
    finally:
        callshield.start()  # same port, same database
    (back,) = asterisk.call([(FAIL_OPEN_CALLER, DID)], timeout=30)
    assert (back.status, back.cause) == (403, 21), callshield.log_tail()  # the deny survived the restart


# 7
def test_explain_shows_the_denylist_block(
    denied_call: Outcome, asterisk: Sandbox, callshield: CallshieldServer
) -> None:
    assert denied_call.status == 403
    asterisk.wait_idle()

    def blocked() -> dict[str, Any] | None:
        for d in callshield.decisions(DENIED_CALLER):
            if d["action"] == "block" and d["outcome"] is not None:
                return d
        return None

    decision = wait_for(blocked, FLUSH_TIMEOUT, "no block decision with its outcome", callshield.log_tail)
    assert decision["reason"] == "denylist:prefix"
    assert decision["score"] == 100
    assert decision["callee"] == DID
    # The blocked call's hangup feedback: it never reached Dial() (no DIALSTATUS), cause 21.
    assert (decision["outcome"]["dialstatus"], decision["outcome"]["billsec"]) == ("", 0)
    assert decision["outcome"]["hangup_cause"] == 21
    data = callshield.explain(DENIED_CALLER)
    assert data["now"]["action"] == "block"
    assert [(r["action"], r["pattern"], r["source"][:5]) for r in data["rules"]] == [("deny", DENIED_PREFIX, "list:")]


def test_read_only_cli_does_not_make_the_server_reload(callshield: CallshieldServer) -> None:
    time.sleep(1.2)  # one maintenance tick: changes made by earlier commands are picked up by now
    before = time.time()
    callshield.explain(CLEAN_CALLER)
    callshield.cli("lists")
    time.sleep(1.5)
    reloads = [
        r
        for r in callshield.log_records()
        if r.get("message", "").startswith("database changed by another process") and float(r.get("ts", 0)) > before
    ]
    assert reloads == []
