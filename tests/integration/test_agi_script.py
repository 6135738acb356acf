"""``callshield-agi`` (the classic AGI script) as Asterisk runs it: a real process per call, the AGI
header on stdin, one reply per command, and the database checked afterwards.

A small stand-in for Asterisk (:func:`run_agi`) answers every command the way Asterisk 22 does
(``200 result=1`` for SET VARIABLE, ``200 result=0 endpos=N`` for a sound played to the end, the key's
ASCII code when one is pressed) and records the commands.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from callshield.agi.script import Options, parse_args

SCRIPT = Path(sys.executable).with_name("callshield-agi")
SEED = 4242
DIGIT = str(random.Random(SEED).randint(1, 9))  # what the seeded challenge asks for
WRONG = "1" if DIGIT != "1" else "2"
DID = "+18005550100"
CLEAN = "+16175550123"
DENIED = "+14155550111"
BUSY = "+12125550147"

CONFIG = """\
[[rules]]
action = "deny"
pattern = "+1415555*"

[[rules]]
action = "deny"
pattern = "+1212555*"
cause = 17
"""
SCREEN_ALL = """
[policy]
screen_at = 1
block_at = 101

[screening]
tries = 2
digit_timeout = "2s"
"""

Responder = Callable[[str], "str | None"]
"""A command line in, the reply line out (None: hang up: SIGHUP, then ``200 result=-1``)."""


@dataclass
class AgiRun:
    commands: list[str]
    stderr: str
    returncode: int
    seconds: float
    variables: dict[str, str] = field(default_factory=dict)

    def sets(self) -> list[tuple[str, str]]:
        """The SET VARIABLE commands in order, as (name, value)."""
        out = []
        for command in self.commands:
            if command.startswith("SET VARIABLE "):
                _, _, rest = command.partition("SET VARIABLE ")
                name, _, value = rest.partition(" ")
                out.append((name.strip('"'), value.strip('"')))
        return out


def header(caller: str, did: str = DID, *args: str, **extra: str) -> dict[str, str]:
    """An AGI header as Asterisk 22 sends it to ``AGI(callshield-agi,...)`` from a PJSIP trunk."""
    fields = {
        "agi_request": "callshield-agi",
        "agi_channel": "PJSIP/callshield-trunk-00000007",
        "agi_language": "en",
        "agi_type": "PJSIP",
        "agi_uniqueid": "1795831244.37",
        "agi_version": "22.10.1+dfsg+~cs6.17.60671434-1",
        "agi_callerid": caller,
        "agi_calleridname": "Test Caller",
        "agi_callingpres": "0",
        "agi_callingani2": "0",
        "agi_callington": "0",
        "agi_callingtns": "0",
        "agi_dnid": did,
        "agi_rdnis": "unknown",
        "agi_context": "callshield-check",
        "agi_extension": did,
        "agi_priority": "14",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": "140288934663872",
    }
    for i, arg in enumerate(args, start=1):
        fields[f"agi_arg_{i}"] = arg
    fields.update(extra)
    return fields


def asterisk(press: str | None = None, *, hangup_on: str | None = None) -> Responder:
    """Replies like Asterisk; the caller presses ``press`` when asked to listen (WAIT FOR DIGIT), and
    hangs up at the first command starting with ``hangup_on``."""

    def reply(command: str) -> str | None:
        if hangup_on is not None and command.startswith(hangup_on):
            return None
        if command.startswith("STREAM FILE"):
            return "200 result=0 endpos=8000"
        if command.startswith("WAIT FOR DIGIT"):
            return f"200 result={ord(press)}" if press else "200 result=0"
        if command.startswith("CHANNEL STATUS"):
            return "200 result=6"
        return "200 result=1"

    return reply


def run_agi(
    args: Sequence[str],
    env: dict[str, str],
    head: dict[str, str] | bytes | None,
    responder: Responder | None = None,
    *,
    close_stdin: bool = False,
    timeout: float = 30.0,
) -> AgiRun:
    """Run the script like Asterisk does: header, then one reply per command until it exits."""
    responder = responder or asterisk()
    argv = [str(SCRIPT), *args] if SCRIPT.exists() else [sys.executable, "-m", "callshield.agi.script", *args]
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    commands: list[str] = []
    try:
        if isinstance(head, bytes):
            proc.stdin.write(head)
        elif head is not None:
            proc.stdin.write("".join(f"{k}: {v}\n" for k, v in head.items()).encode() + b"\n")
        proc.stdin.flush()
        if close_stdin:
            proc.stdin.close()
        hung_up = False
        while line := proc.stdout.readline():
            command = line.decode("utf-8", "replace").rstrip("\n")
            commands.append(command)
            if close_stdin:
                continue
            answer = "200 result=-1" if hung_up else responder(command)
            if answer is None:  # the caller hangs up: Asterisk signals the script and fails the command
                hung_up = True
                proc.send_signal(signal.SIGHUP)
                answer = "200 result=-1"
            _send(proc.stdin, answer)
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    stderr = proc.stderr.read().decode("utf-8", "replace")
    run = AgiRun(commands, stderr, proc.returncode, time.monotonic() - started)
    run.variables = dict(run.sets())
    return run


def _send(stdin: IO[bytes], line: str) -> None:
    try:
        stdin.write(line.encode() + b"\n")
        stdin.flush()
    except (BrokenPipeError, ValueError):
        pass


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "callshield.toml"
    config.write_text(CONFIG, encoding="utf-8")
    out = {k: v for k, v in os.environ.items() if not k.startswith("CALLSHIELD_")}
    out.update(
        CALLSHIELD_CONFIG=str(config),
        CALLSHIELD_DB=str(tmp_path / "callshield.sqlite3"),
        CALLSHIELD_SCREEN_SEED=str(SEED),
        XDG_DATA_HOME=str(tmp_path / "xdg"),
    )
    return out


def with_config(env: dict[str, str], extra: str) -> dict[str, str]:
    path = Path(env["CALLSHIELD_CONFIG"])
    path.write_text(path.read_text(encoding="utf-8") + extra, encoding="utf-8")
    return env


def decision(env: dict[str, str], decision_id: str) -> dict[str, Any]:
    conn = sqlite3.connect(env["CALLSHIELD_DB"])
    conn.row_factory = sqlite3.Row
    try:
        row = conn.execute("SELECT * FROM decisions WHERE id = ?", (decision_id,)).fetchone()
    finally:
        conn.close()
    assert row is not None, f"decision {decision_id} is not in the audit log"
    return dict(row)


def query(env: dict[str, str], sql: str, *params: object) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(env["CALLSHIELD_DB"])
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def assert_clean_exit(run: AgiRun) -> None:
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    for command in run.commands:  # nothing but AGI commands on stdout
        assert command.split(" ")[0] in {"SET", "ANSWER", "STREAM", "WAIT", "CHANNEL", "VERBOSE"}, run.commands


# --- deciding ---------------------------------------------------------------------------------------


def test_clean_caller_connects_and_the_decision_is_committed(env: dict[str, str]) -> None:
    run = run_agi(["inbound"], env, header(CLEAN, DID, "inbound"))
    assert_clean_exit(run)
    names = [name for name, _ in run.sets()]
    assert names == ["CALLSHIELD_ID", "CALLSHIELD_SCORE", "CALLSHIELD_REASON", "CALLSHIELD_CAUSE", "CALLSHIELD_ACTION"]
    assert run.variables["CALLSHIELD_ACTION"] == "connect"
    assert run.stderr == ""
    row = decision(env, run.variables["CALLSHIELD_ID"])
    assert (row["caller"], row["callee"], row["action"]) == (CLEAN, DID, "connect")
    assert row["channel"] == "1795831244.37"
    assert str(row["score"]) == run.variables["CALLSHIELD_SCORE"]


@pytest.mark.parametrize(("caller", "cause"), [(DENIED, "21"), (BUSY, "17")])
def test_denied_caller_is_blocked_with_its_cause(env: dict[str, str], caller: str, cause: str) -> None:
    run = run_agi(["inbound"], env, header(caller, DID, "inbound"))
    assert_clean_exit(run)
    assert (run.variables["CALLSHIELD_ACTION"], run.variables["CALLSHIELD_REASON"]) == ("block", "denylist:prefix")
    assert run.variables["CALLSHIELD_CAUSE"] == cause
    assert run.sets()[-1][0] == "CALLSHIELD_ACTION"
    assert decision(env, run.variables["CALLSHIELD_ID"])["action"] == "block"


def test_options_on_the_command_line_override_the_environment(env: dict[str, str], tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite3"
    empty = tmp_path / "empty.toml"
    empty.write_text("", encoding="utf-8")
    run = run_agi(["--config", str(empty), f"--db={other}", "INBOUND"], env, header(DENIED))
    assert_clean_exit(run)
    assert run.variables["CALLSHIELD_ACTION"] == "connect"  # no deny rule in that config
    assert decision({"CALLSHIELD_DB": str(other)}, run.variables["CALLSHIELD_ID"])["caller"] == DENIED


def test_hangup_feedback_is_tied_to_the_decision(env: dict[str, str]) -> None:
    inbound = run_agi(["inbound"], env, header(CLEAN))
    decision_id = inbound.variables["CALLSHIELD_ID"]
    args = ["hangup", decision_id, "ANSWER", "75", "16"]
    run = run_agi(args, env, header(CLEAN, DID, *args, agi_channel="PJSIP/callshield-trunk-00000007"))
    assert_clean_exit(run)
    assert run.commands == []  # feedback only: nothing is set on a channel that is gone
    row = decision(env, decision_id)
    assert (row["dialstatus"], row["billsec"], row["hangup_cause"]) == ("ANSWER", 75.0, 16)
    assert row["ended"] is not None
    # 75 s answered is evidence that the caller is legitimate.
    assert query(env, "SELECT legit_calls > 0 FROM reputation WHERE number = ?", int(CLEAN[1:])) == [(1,)]


def test_hangup_feedback_of_a_blocked_call_has_no_dialstatus(env: dict[str, str]) -> None:
    inbound = run_agi(["inbound"], env, header(DENIED))
    decision_id = inbound.variables["CALLSHIELD_ID"]
    run = run_agi(["hangup", decision_id, "", "0", "21"], env, header(DENIED))
    assert_clean_exit(run)
    row = decision(env, decision_id)
    assert (row["action"], row["dialstatus"], row["billsec"], row["hangup_cause"]) == ("block", "", 0.0, 21)


def test_hangup_feedback_without_an_id_or_with_junk_is_harmless(env: dict[str, str]) -> None:
    assert_clean_exit(run_agi(["hangup", "", "", "", ""], env, header(CLEAN)))
    run = run_agi(["hangup", "ffffffffffff00000000", "ANSWER", "abc", "x"], env, header(CLEAN))
    assert_clean_exit(run)
    assert run.commands == []


def test_dialing_patterns_build_up_across_processes(env: dict[str, str]) -> None:
    """Each call is a new process: the caller's window is saved and restored, so a sweep is seen."""
    with_config(env, "\n[screening]\nin_session = false\n")
    caller = "+17735550142"
    verdicts = []
    for i in range(6):
        run = run_agi(["inbound"], env, header(caller, f"+1312555{1000 + i}"))
        assert_clean_exit(run)
        verdicts.append((run.variables["CALLSHIELD_ACTION"], run.variables["CALLSHIELD_REASON"]))
    assert verdicts[0][0] == "connect"
    assert verdicts[-1][0] != "connect" and verdicts[-1][1].startswith("pattern:"), verdicts
    reasons = query(env, "SELECT reasons FROM decisions WHERE caller = ? ORDER BY id DESC LIMIT 1", caller)
    assert any(r["code"] == "pattern:sweep" for r in json.loads(reasons[0][0])), reasons


# --- screening in the same process -------------------------------------------------------------


def challenge_commands(tries: int) -> list[str]:
    one = [
        'STREAM FILE silence/1 "0123456789*#" 0',
        'STREAM FILE vm-press "0123456789*#" 0',
        f'STREAM FILE digits/{DIGIT} "0123456789*#" 0',
        "WAIT FOR DIGIT 2000",
    ]
    return ["ANSWER", *one * tries]


def test_screening_passed_with_the_seeded_digit(env: dict[str, str]) -> None:
    with_config(env, SCREEN_ALL)
    run = run_agi(["inbound"], env, header(CLEAN), asterisk(press=DIGIT))
    assert_clean_exit(run)
    assert run.commands[5:-2] == challenge_commands(1)
    assert run.sets()[-3:] == [
        ("CALLSHIELD_ACTION", "screen"),
        ("CALLSHIELD_SCREEN", "passed"),
        ("CALLSHIELD_ACTION", "connect"),
    ]
    row = decision(env, run.variables["CALLSHIELD_ID"])
    assert (row["decided"], row["screen"], row["action"]) == ("screen", "passed", "connect")
    assert query(env, "SELECT callee FROM screen_passes WHERE caller = ?", int(CLEAN[1:])) == [(DID,)]
    # The next call (another process) is let through by the pass.
    again = run_agi(["inbound"], env, header(CLEAN))
    assert (again.variables["CALLSHIELD_ACTION"], again.variables["CALLSHIELD_REASON"]) == ("connect", "screen:passed")


def test_screening_failed_with_wrong_digits_blocks(env: dict[str, str]) -> None:
    with_config(env, SCREEN_ALL)
    run = run_agi(["inbound"], env, header(CLEAN), asterisk(press=WRONG))
    assert_clean_exit(run)
    assert run.commands[5:-2] == challenge_commands(2)
    assert run.sets()[-2:] == [("CALLSHIELD_SCREEN", "failed"), ("CALLSHIELD_ACTION", "block")]
    row = decision(env, run.variables["CALLSHIELD_ID"])
    assert (row["decided"], row["screen"], row["action"]) == ("screen", "failed", "block")
    assert query(env, "SELECT screen_failed > 0 FROM reputation WHERE number = ?", int(CLEAN[1:])) == [(1,)]


def test_screening_timeout_without_a_key_blocks(env: dict[str, str]) -> None:
    with_config(env, SCREEN_ALL)
    run = run_agi(["inbound"], env, header(CLEAN), asterisk(press=None))
    assert_clean_exit(run)
    assert run.commands[5:-2] == challenge_commands(2)
    assert run.sets()[-2:] == [("CALLSHIELD_SCREEN", "timeout"), ("CALLSHIELD_ACTION", "block")]
    assert decision(env, run.variables["CALLSHIELD_ID"])["screen"] == "timeout"


def test_key_pressed_during_the_prompt_counts(env: dict[str, str]) -> None:
    with_config(env, SCREEN_ALL)

    def barge_in(command: str) -> str | None:
        if command.startswith("STREAM FILE vm-press"):
            return f"200 result={ord(DIGIT)} endpos=1200"
        return asterisk()(command)

    run = run_agi(["inbound"], env, header(CLEAN), barge_in)
    assert_clean_exit(run)
    assert run.commands[5:-2] == [
        "ANSWER",
        'STREAM FILE silence/1 "0123456789*#" 0',
        'STREAM FILE vm-press "0123456789*#" 0',
    ]
    assert run.variables["CALLSHIELD_SCREEN"] == "passed"


def test_hangup_during_the_challenge_is_a_timeout(env: dict[str, str]) -> None:
    with_config(env, SCREEN_ALL)
    run = run_agi(["inbound"], env, header(CLEAN), asterisk(hangup_on="STREAM FILE vm-press"))
    assert_clean_exit(run)
    assert run.commands[-1] == 'STREAM FILE vm-press "0123456789*#" 0'  # nothing is sent after the hangup
    assert run.variables["CALLSHIELD_ACTION"] == "screen"
    assert decision(env, run.variables["CALLSHIELD_ID"])["screen"] == "timeout"
    assert run.stderr == ""


def test_missing_prompt_sound_fails_open(env: dict[str, str]) -> None:
    """``result=-1`` on a channel that is still up is a playback failure, not a hangup: connect."""
    with_config(env, SCREEN_ALL)

    def no_sound(command: str) -> str | None:
        return "200 result=-1 endpos=0" if command.startswith("STREAM FILE") else asterisk()(command)

    run = run_agi(["inbound"], env, header(CLEAN), no_sound)
    assert_clean_exit(run)
    assert run.commands[-4] == "CHANNEL STATUS"
    assert run.commands[-3].startswith('VERBOSE "callshield-agi: error: AGIAppError')
    assert run.sets()[-2:] == [("CALLSHIELD_REASON", "error"), ("CALLSHIELD_ACTION", "connect")]
    assert "error" in run.stderr and run.stderr.count("\n") == 1


def test_screen_left_to_the_dialplan_without_in_session(env: dict[str, str]) -> None:
    with_config(env, SCREEN_ALL.replace("[screening]", "[screening]\nin_session = false"))
    run = run_agi(["inbound"], env, header(CLEAN))
    assert_clean_exit(run)
    assert len(run.commands) == 5 and run.variables["CALLSHIELD_ACTION"] == "screen"


def test_dialplan_challenge_result_arrives_with_the_feedback(env: dict[str, str]) -> None:
    with_config(env, SCREEN_ALL.replace("[screening]", "[screening]\nin_session = false"))
    decision_id = run_agi(["inbound"], env, header(CLEAN)).variables["CALLSHIELD_ID"]
    assert_clean_exit(run_agi(["hangup", decision_id, "ANSWER", "3", "16", "passed"], env, header(CLEAN)))
    row = decision(env, decision_id)
    assert (row["screen"], row["dialstatus"]) == ("passed", "ANSWER")


# --- failing open -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "junk",
    [
        b"\x00\xff\xfe garbage \x80\x81\n\n",
        b"agi_callerid: " + b"9" * 100_000 + b"\nno colon here\n: empty key\n\n",
        b"agi_callerid: +14155550111\nagi_dnid: \xff\xfe\nagi_callingpres: -1e99\n\n",
        b"\n",
        b"\r\n\r\n",
    ],
)
def test_junk_header_gets_a_verdict_without_a_traceback(env: dict[str, str], junk: bytes) -> None:
    run = run_agi(["inbound"], env, junk)
    assert_clean_exit(run)
    assert run.sets()[-1][0] == "CALLSHIELD_ACTION", run.commands
    if run.variables["CALLSHIELD_ACTION"] != "connect":  # the junk header still named a denylisted caller
        assert run.variables["CALLSHIELD_REASON"] == "denylist:prefix"


@pytest.mark.parametrize("junk", [b"", b"agi_callerid: +16175550123", b"\x00\x01\x02"])
def test_input_ending_before_the_header_does_exits_quietly(env: dict[str, str], junk: bytes) -> None:
    run = run_agi(["inbound"], env, junk, close_stdin=True)
    assert_clean_exit(run)
    assert len(run.commands) <= 1  # at most the first SET VARIABLE, then the pipe is found closed
    assert run.stderr == ""


def test_header_that_never_ends_is_cut_by_the_decision_timeout(env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [str(SCRIPT), "inbound"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdin is not None
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(b"agi_callerid: +16175550123\n")  # no blank line: the header never ends
    proc.stdin.flush()
    started = time.monotonic()
    try:
        proc.wait(timeout=10)  # stdin stays open
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdin.close()
    assert time.monotonic() - started < 5
    assert proc.returncode == 0
    assert proc.stdout.read().decode().splitlines() == [
        'SET VARIABLE "CALLSHIELD_REASON" "timeout"',
        'SET VARIABLE "CALLSHIELD_ACTION" "connect"',
    ]
    assert "decision_timeout" in proc.stderr.read().decode()


def test_decision_timeout_connects(env: dict[str, str]) -> None:
    with_config(env, '\n[agi]\ndecision_timeout = "1ms"\n')
    run = run_agi(["inbound"], env, header(DENIED))
    assert_clean_exit(run)
    assert run.sets()[-2:] == [("CALLSHIELD_REASON", "timeout"), ("CALLSHIELD_ACTION", "connect")]
    assert "CALLSHIELD_ID" not in run.variables
    database = Path(env["CALLSHIELD_DB"])
    assert not database.exists() or query(env, "SELECT count(*) FROM decisions") == [(0,)]


def test_broken_config_fails_open(env: dict[str, str]) -> None:
    Path(env["CALLSHIELD_CONFIG"]).write_text("[policy]\nscreen_at = 'high'\n", encoding="utf-8")
    run = run_agi(["inbound"], env, header(DENIED))
    assert_clean_exit(run)
    assert run.sets() == [("CALLSHIELD_REASON", "error"), ("CALLSHIELD_ACTION", "connect")]
    assert "policy.screen_at" in run.stderr and run.stderr.count("\n") == 1
    # The same line goes to Asterisk's log (script stderr only reaches its console).
    verbose = [c for c in run.commands if c.startswith("VERBOSE ")]
    assert len(verbose) == 1 and "policy.screen_at" in verbose[0], run.commands


def test_unusable_database_fails_open(env: dict[str, str], tmp_path: Path) -> None:
    env["CALLSHIELD_DB"] = str(tmp_path)  # a directory
    run = run_agi(["inbound"], env, header(DENIED))
    assert_clean_exit(run)
    assert run.sets() == [("CALLSHIELD_REASON", "error"), ("CALLSHIELD_ACTION", "connect")]
    assert "StoreError" in run.stderr


def test_unknown_mode_connects(env: dict[str, str]) -> None:
    run = run_agi(["outbound"], env, header(DENIED))
    assert_clean_exit(run)
    assert run.sets() == [("CALLSHIELD_REASON", "unknown-script"), ("CALLSHIELD_ACTION", "connect")]
    assert "unknown mode 'outbound'" in run.stderr


def test_asterisk_closing_the_pipe_mid_verdict(env: dict[str, str]) -> None:
    """Asterisk gone after the header (e.g. shut down): no reply ever comes; exit quietly, verdict saved."""
    run = run_agi(["inbound"], env, header(DENIED), close_stdin=True)
    assert_clean_exit(run)
    name, decision_id = run.sets()[0]
    assert name == "CALLSHIELD_ID" and len(run.commands) == 1
    assert decision(env, decision_id)["action"] == "block"


# --- the command line -------------------------------------------------------------------------------


def test_parse_args() -> None:
    assert parse_args(["inbound"], {}) == Options(mode="inbound")
    assert parse_args(["--config", "a.toml", "--db=b.db", "Hangup", "id", "", "0", "21"], {}) == Options(
        mode="hangup", args=("id", "", "0", "21"), config="a.toml", database="b.db"
    )
    assert parse_args(["inbound"], {"CALLSHIELD_DB": "env.db"}).database == "env.db"
    assert parse_args(["--db", "x", "inbound"], {"CALLSHIELD_DB": "env.db"}).database == "x"
    assert parse_args([], {}).mode == ""
    assert parse_args(["--help"], {}).help
    for bad in (["--config"], ["--verbose", "inbound"]):
        with pytest.raises(ValueError):
            parse_args(bad, {})


def test_help_is_not_an_agi_session() -> None:
    out = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30, check=True)
    assert "usage: callshield-agi" in out.stdout
