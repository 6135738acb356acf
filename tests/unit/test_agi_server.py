"""The asyncio FastAGI server on a real TCP socket, with a fake engine and a scripted Asterisk."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import re
import resource
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest

from callshield.agi.server import (
    AgiServer,
    AgiServerSettings,
    call_from_header,
    outcome_from_args,
    run_server,
    screen_from_args,
    trunk_from_channel,
    verdict_variables,
)
from callshield.config import ScreeningConfig
from callshield.config import Seconds as Sec
from callshield.verdict import Action, Call, CallOutcome, Mode, ScreenResult, Verdict

FAST = AgiServerSettings(port=0, header_timeout=0.5, command_timeout=0.5, decision_timeout=0.3, mset=False)
"""Variables one SET VARIABLE at a time: the protocol tests below follow each command. MSet has its own."""
MSET = dataclasses.replace(FAST, mset=True)
SLACK = 0.5  # scheduling allowance on a loaded machine
IDLE = 1000

# ---------------------------------------------------------------------------------------------------
# Fakes
# ---------------------------------------------------------------------------------------------------


def make_verdict(call: Call, number: int, action: Action, cause: int = 21) -> Verdict:
    return Verdict(
        id=f"d{number}",
        action=action,
        decided=action,
        score=87,
        reason="denylist:prefix",
        reasons=(),
        cause=cause,
        mode=Mode.ENFORCE,
        caller=call.caller,
        callee=call.callee,
        decided_at=0.0,
    )


@dataclass
class FakeEngine:
    """Decides ``action`` for every call and records what it was given."""

    action: Action = Action.BLOCK
    delay: float = 0.0
    fail: bool = False
    calls: list[Call] = field(default_factory=list)
    outcomes: list[CallOutcome] = field(default_factory=list)
    screening: ScreeningConfig | None = None
    screens: list[tuple[str, ScreenResult]] = field(default_factory=list)

    def decide(self, call: Call) -> Verdict:
        self.calls.append(call)
        if self.fail:
            raise RuntimeError("engine bug")
        if self.delay:
            time.sleep(self.delay)  # a synchronous decision that overruns its budget
        return make_verdict(call, len(self.calls), self.action)

    def feedback(self, outcome: CallOutcome) -> None:
        self.outcomes.append(outcome)

    def screened(self, decision_id: str, result: ScreenResult) -> None:
        self.screens.append((decision_id, result))


Answer = Callable[[str], bytes | None]


def always_ok(command: str) -> bytes:
    return b"200 result=1\n"


@dataclass
class AsteriskSide:
    """What a scripted Asterisk saw: the commands, whether the server closed, and when."""

    commands: list[str]
    closed: bool
    elapsed: float


async def fake_asterisk(
    port: int,
    sent: bytes,
    answer: Answer = always_ok,
    *,
    limit: float = 5.0,
    delay: float = 0.0,
) -> AsteriskSide:
    """Connect, send ``sent``, answer each command line with ``answer(line)`` (None: no answer, after
    ``delay`` seconds), and read until the server closes or ``limit`` seconds pass."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    commands: list[str] = []
    try:
        writer.write(sent)
        await writer.drain()
        async with asyncio.timeout(limit):
            while line := await reader.readline():
                command = line.decode().rstrip("\n")
                commands.append(command)
                reply = answer(command)
                if reply is not None:
                    await asyncio.sleep(delay)
                    writer.write(reply)
                    await writer.drain()
        closed = True
    except ConnectionError:
        closed = True  # reset rather than closed: the server is gone all the same
    except TimeoutError:
        closed = False
    finally:
        writer.close()
    return AsteriskSide(commands, closed, loop.time() - start)


def header(script: str = "inbound", *args: str, **variables: str) -> bytes:
    lines = [f"agi_network_script: {script}", f"agi_request: agi://127.0.0.1:4573/{script}"]
    lines += [f"{name}: {value}" for name, value in variables.items()]
    lines += [f"agi_arg_{number}: {value}" for number, value in enumerate(args, start=1)]
    return ("\n".join(lines) + "\n\n").encode()


PSTN_CALL = header(
    agi_channel="PJSIP/trunk-00000006",
    agi_uniqueid="1795831264.52",
    agi_callerid="+14155550123",
    agi_calleridname="Robo Spam",
    agi_callingpres="0",
    agi_dnid="+18005550100",
    agi_extension="+18005550100",
)


def verdict_commands(number: int = 1, action: str = "block") -> list[str]:
    return [
        f"SET VARIABLE CALLSHIELD_ID d{number}",
        "SET VARIABLE CALLSHIELD_SCORE 87",
        "SET VARIABLE CALLSHIELD_REASON denylist:prefix",
        "SET VARIABLE CALLSHIELD_CAUSE 21",
        f"SET VARIABLE CALLSHIELD_ACTION {action}",
    ]


FAIL_OPEN = ["SET VARIABLE CALLSHIELD_REASON timeout", "SET VARIABLE CALLSHIELD_ACTION connect"]


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
async def server(engine: FakeEngine) -> AsyncIterator[AgiServer]:
    agi = AgiServer(engine, FAST)
    await agi.start()
    yield agi
    await agi.close(grace=1.0)


async def assert_still_serving(server: AgiServer, engine: FakeEngine) -> None:
    """A normal call gets its verdict (the server survived whatever came before)."""
    side = await fake_asterisk(server.port, PSTN_CALL, limit=2.0)
    assert side.commands == verdict_commands(len(engine.calls))
    assert side.closed


# ---------------------------------------------------------------------------------------------------
# Recorded Asterisk 22 headers
# ---------------------------------------------------------------------------------------------------


def _shared_agi_dir() -> Path:
    root = os.environ.get("CALLSHIELD_SHARED_DATA")
    return (Path(root) if root else Path(__file__).parents[3] / "shared" / "data") / "agi"


def recorded_headers() -> dict[str, bytes]:
    """The header block of every recorded session, as Asterisk sent it."""
    names = ("asterisk22_fastagi_sessions.txt", "asterisk22_fastagi_with_args.txt")
    headers: dict[str, list[str]] = {}
    done: set[str] = set()
    for name in names:
        path = _shared_agi_dir() / name
        if not path.is_file():
            pytest.skip(f"shared AGI recording {path} not found (set CALLSHIELD_SHARED_DATA to the data folder)")
        for line in path.read_text(encoding="utf-8").splitlines():
            match = re.fullmatch(r"\S+ (c\d+) <<< ?(.*)", line)
            if match is None:
                continue
            key = f"{name}:{match[1]}"
            if key in done:
                continue
            headers.setdefault(key, []).append(match[2])
            if match[2] == "":
                done.add(key)
    return {key: "\n".join(lines).encode() + b"\n" for key, lines in headers.items()}


def as_inbound(recorded: bytes) -> bytes:
    return re.sub(rb"(agi_network_script: |agi_request: agi://[^/]+/)screen", rb"\1inbound", recorded)


async def test_recorded_headers_get_their_verdicts(server: AgiServer, engine: FakeEngine) -> None:
    headers = recorded_headers()
    assert len(headers) == 12
    for number, recorded in enumerate(headers.values(), start=1):
        side = await fake_asterisk(server.port, as_inbound(recorded))
        assert side.commands == verdict_commands(number)
        assert side.closed
    calls = dict(zip(headers, engine.calls, strict=True))
    assert calls["asterisk22_fastagi_sessions.txt:c1"] == Call(
        caller="+14155550123",
        callee="+18005550100",  # agi_dnid is "unknown" on Local channels: the extension
        caller_name="Inject Test",
        presentation=0,
        trunk="",
        channel="1795831244.37",
    )
    pjsip = calls["asterisk22_fastagi_sessions.txt:c6"]
    assert (pjsip.trunk, pjsip.callee, pjsip.caller_name) == ("trunk", "+18005550100", "Robo Spam")
    assert calls["asterisk22_fastagi_sessions.txt:c8"].presentation == 32
    anonymous = calls["asterisk22_fastagi_with_args.txt:c1"]
    assert (anonymous.caller, anonymous.presentation) == ("unknown", 67)
    stats = server.stats
    assert (stats.decisions, stats.sessions_total, stats.protocol_errors, stats.errors) == (12, 12, 0, 0)


async def test_recorded_header_for_another_script_connects(server: AgiServer, engine: FakeEngine) -> None:
    recorded = recorded_headers()["asterisk22_fastagi_sessions.txt:c1"]  # agi://.../screen
    side = await fake_asterisk(server.port, recorded)
    assert side.commands == [
        "SET VARIABLE CALLSHIELD_REASON unknown-script",
        "SET VARIABLE CALLSHIELD_ACTION connect",
    ]
    assert engine.calls == []
    assert server.stats.unknown_scripts == 1


async def test_script_from_agi_request_and_query_and_case(server: AgiServer) -> None:
    sent = b"agi_request: agi://10.1.2.3:4573/Inbound?tenant=a\nagi_callerid: 1001\n\n"
    side = await fake_asterisk(server.port, sent)
    assert side.commands == verdict_commands(1)


async def test_screen_verdict_is_returned_for_the_dialplan(server: AgiServer, engine: FakeEngine) -> None:
    engine.action = Action.SCREEN
    side = await fake_asterisk(server.port, PSTN_CALL)
    assert side.commands == verdict_commands(1, "screen")


# ---------------------------------------------------------------------------------------------------
# One EXEC MSet instead of five SET VARIABLEs
# ---------------------------------------------------------------------------------------------------

MSET_VERDICT = (
    "EXEC MSet CALLSHIELD_ID=d1,CALLSHIELD_SCORE=87,CALLSHIELD_REASON=denylist:prefix,CALLSHIELD_CAUSE=21,"
    "CALLSHIELD_ACTION=block"
)


@pytest.fixture
async def mset_server(engine: FakeEngine) -> AsyncIterator[AgiServer]:
    agi = AgiServer(engine, MSET)
    await agi.start()
    yield agi
    await agi.close(grace=1.0)


async def test_verdict_in_one_mset(mset_server: AgiServer) -> None:
    side = await fake_asterisk(mset_server.port, PSTN_CALL, lambda command: b"200 result=0\n")
    assert side.commands == [MSET_VERDICT]
    assert side.closed


async def test_without_mset_application_variables_are_set_one_by_one(mset_server: AgiServer) -> None:
    side = await fake_asterisk(
        mset_server.port, PSTN_CALL, lambda c: b"200 result=-2\n" if c.startswith("EXEC") else b"200 result=1\n"
    )
    assert side.commands == [MSET_VERDICT, *verdict_commands(1)]


async def test_unsafe_value_falls_back_to_set_variable(mset_server: AgiServer, engine: FakeEngine) -> None:
    unsafe = dataclasses.replace(engine)
    unsafe_verdict = msgspec.structs.replace(make_verdict(Call(caller="1"), 1, Action.BLOCK), reason="a,b c")
    unsafe.decide = lambda call: unsafe_verdict  # type: ignore[method-assign]
    mset_server.swap_engine(unsafe)
    side = await fake_asterisk(mset_server.port, PSTN_CALL)
    assert side.commands[2] == 'SET VARIABLE CALLSHIELD_REASON "a,b c"'
    assert len(side.commands) == 5


async def test_slow_mset_reply_ends_in_connect_with_reason_timeout(mset_server: AgiServer) -> None:
    side = await fake_asterisk(mset_server.port, PSTN_CALL, delay=MSET.decision_timeout + 0.05)
    assert side.commands == [MSET_VERDICT, "EXEC MSet CALLSHIELD_REASON=timeout,CALLSHIELD_ACTION=connect"]
    assert mset_server.stats.decision_timeouts == 1


async def test_refused_mset_ends_the_session(mset_server: AgiServer) -> None:
    side = await fake_asterisk(mset_server.port, PSTN_CALL, lambda c: b"511 Command Not Permitted\n")
    assert side.commands == [MSET_VERDICT]
    assert side.closed
    assert mset_server.stats.refused_commands == 1


# ---------------------------------------------------------------------------------------------------
# The screening challenge in the session
# ---------------------------------------------------------------------------------------------------

SEED = 7
DIGIT = str(random.Random(SEED).randint(1, 9))
WRONG = "1" if DIGIT != "1" else "2"
SCREENING = ScreeningConfig(prompt=("silence/1", "vm-press"), tries=2, digit_timeout=Sec(0.5))


def key_reply(key: str | None) -> bytes:
    """Asterisk's reply to a playback or WAIT FOR DIGIT: the key's ASCII code, 0 for none."""
    return f"200 result={ord(key) if key else 0} endpos=8000\n".encode()


def caller_pressing(keys: dict[str, list[str | None]]) -> Answer:
    """An Asterisk whose caller presses keys[command word] in turn (WAIT/STREAM), else nothing."""
    queues = {word: list(pressed) for word, pressed in keys.items()}

    def answer(command: str) -> bytes:
        word = command.split(maxsplit=1)[0]
        if word in ("STREAM", "WAIT"):
            queue = queues.get(word, [])
            return key_reply(queue.pop(0) if queue else None)
        return b"200 result=0\n"

    return answer


CHALLENGE = [
    "ANSWER",
    "STREAM FILE silence/1 0123456789*#",
    "STREAM FILE vm-press 0123456789*#",
    f"STREAM FILE digits/{DIGIT} 0123456789*#",
    "WAIT FOR DIGIT 500",
]


@pytest.fixture
async def screening_server(engine: FakeEngine) -> AsyncIterator[AgiServer]:
    engine.action = Action.SCREEN
    engine.screening = SCREENING
    agi = AgiServer(engine, FAST, rng=random.Random(SEED))
    await agi.start()
    yield agi
    await agi.close(grace=1.0)


async def test_right_digit_passes_and_connects(screening_server: AgiServer, engine: FakeEngine) -> None:
    side = await fake_asterisk(screening_server.port, PSTN_CALL, caller_pressing({"WAIT": [DIGIT]}))
    assert side.commands == [
        *verdict_commands(1, "screen"),
        *CHALLENGE,
        "SET VARIABLE CALLSHIELD_SCREEN passed",
        "SET VARIABLE CALLSHIELD_ACTION connect",
    ]
    assert engine.screens == [("d1", ScreenResult.PASSED)]
    stats = screening_server.stats
    assert (stats.challenges, stats.screen_passed) == (1, 1)


async def test_key_during_the_prompt_barges_in(screening_server: AgiServer, engine: FakeEngine) -> None:
    side = await fake_asterisk(screening_server.port, PSTN_CALL, caller_pressing({"STREAM": [None, DIGIT]}))
    assert side.commands == [
        *verdict_commands(1, "screen"),
        *CHALLENGE[:3],
        "SET VARIABLE CALLSHIELD_SCREEN passed",
        "SET VARIABLE CALLSHIELD_ACTION connect",
    ]


async def test_wrong_digit_then_right_one_passes_on_the_second_try(
    screening_server: AgiServer, engine: FakeEngine
) -> None:
    side = await fake_asterisk(screening_server.port, PSTN_CALL, caller_pressing({"WAIT": [WRONG, DIGIT]}))
    assert side.commands[5:] == [
        *CHALLENGE,
        *CHALLENGE[1:],
        "SET VARIABLE CALLSHIELD_SCREEN passed",
        "SET VARIABLE CALLSHIELD_ACTION connect",
    ]
    assert engine.screens == [("d1", ScreenResult.PASSED)]


async def test_wrong_digits_fail_and_block(screening_server: AgiServer, engine: FakeEngine) -> None:
    side = await fake_asterisk(screening_server.port, PSTN_CALL, caller_pressing({"WAIT": [WRONG, None]}))
    assert side.commands[-2:] == ["SET VARIABLE CALLSHIELD_SCREEN failed", "SET VARIABLE CALLSHIELD_ACTION block"]
    assert side.commands.count("WAIT FOR DIGIT 500") == 2
    assert engine.screens == [("d1", ScreenResult.FAILED)]


async def test_silence_times_out_and_blocks(screening_server: AgiServer, engine: FakeEngine) -> None:
    side = await fake_asterisk(screening_server.port, PSTN_CALL, caller_pressing({}))
    assert side.commands[-2:] == ["SET VARIABLE CALLSHIELD_SCREEN timeout", "SET VARIABLE CALLSHIELD_ACTION block"]
    assert side.commands.count("ANSWER") == 1
    assert engine.screens == [("d1", ScreenResult.TIMEOUT)]
    assert screening_server.stats.screen_timeout == 1


async def test_hangup_during_the_challenge_is_not_a_pass(screening_server: AgiServer, engine: FakeEngine) -> None:
    def hangs_up(command: str) -> bytes:
        if command.startswith("STREAM FILE vm-press"):
            return b"HANGUP\n200 result=-1 endpos=0\n"
        return b"200 result=0\n"

    side = await fake_asterisk(screening_server.port, PSTN_CALL, hangs_up)
    assert side.commands == [*verdict_commands(1, "screen"), *CHALLENGE[:3]]
    assert side.closed
    assert engine.screens == [("d1", ScreenResult.TIMEOUT)]


async def test_dead_channel_during_the_challenge(screening_server: AgiServer, engine: FakeEngine) -> None:
    def dead(command: str) -> bytes:
        return b"200 result=-1\n" if command == "ANSWER" else b"200 result=0\n"

    side = await fake_asterisk(screening_server.port, PSTN_CALL, dead)
    assert side.commands == [
        *verdict_commands(1, "screen"),
        "ANSWER",
        "SET VARIABLE CALLSHIELD_SCREEN timeout",
        "SET VARIABLE CALLSHIELD_ACTION block",
    ]
    assert engine.screens == [("d1", ScreenResult.TIMEOUT)]


async def test_stuck_peer_during_the_challenge_is_released(screening_server: AgiServer, engine: FakeEngine) -> None:
    def stuck(command: str) -> bytes | None:
        return None if command.startswith("WAIT") else b"200 result=0\n"

    side = await fake_asterisk(screening_server.port, PSTN_CALL, stuck, limit=0.5 + FAST.command_timeout + 2 * SLACK)
    assert side.closed
    assert engine.screens == [("d1", ScreenResult.TIMEOUT)]
    assert screening_server.stats.timeouts == 1
    engine.action = Action.BLOCK
    await assert_still_serving(screening_server, engine)


async def test_blocked_and_connected_calls_get_no_challenge(screening_server: AgiServer, engine: FakeEngine) -> None:
    engine.action = Action.BLOCK
    side = await fake_asterisk(screening_server.port, PSTN_CALL, caller_pressing({}))
    assert side.commands == verdict_commands(1, "block")
    assert engine.screens == []


async def test_hangup_feedback_carries_a_dialplan_challenge_result(server: AgiServer, engine: FakeEngine) -> None:
    await fake_asterisk(server.port, header("hangup", "d-3", "ANSWER", "40", "16", "passed"))
    await fake_asterisk(server.port, header("hangup", "d-4", "", "0", "21", ""))
    assert engine.screens == [("d-3", ScreenResult.PASSED)]
    assert [o.decision_id for o in engine.outcomes] == ["d-3", "d-4"]


@pytest.mark.parametrize(
    ("args", "result"),
    [
        (("d1", "ANSWER", "3", "16", "passed"), ScreenResult.PASSED),
        (("d1", "", "0", "21", " Timeout "), ScreenResult.TIMEOUT),
        (("d1", "", "0", "21", "failed"), ScreenResult.FAILED),
        (("d1", "", "0", "21", ""), None),
        (("d1", "", "0", "21", "maybe"), None),
        (("d1", "", "0", "21"), None),
    ],
)
def test_screen_from_args(args: tuple[str, ...], result: ScreenResult | None) -> None:
    assert screen_from_args(args) is result


# ---------------------------------------------------------------------------------------------------
# Hangup feedback
# ---------------------------------------------------------------------------------------------------


async def test_hangup_feedback_reaches_the_engine(server: AgiServer, engine: FakeEngine) -> None:
    side = await fake_asterisk(server.port, header("hangup", "d-17", "ANSWER", "12", "16"))
    assert side.commands == []
    assert side.closed
    assert engine.outcomes == [CallOutcome(decision_id="d-17", dialstatus="ANSWER", billsec=12.0, hangup_cause=16)]
    assert server.stats.feedbacks == 1


async def test_hangup_feedback_tolerates_junk(server: AgiServer, engine: FakeEngine) -> None:
    await fake_asterisk(server.port, header("hangup", "d-3", "NOANSWER", "abc", "x16"))
    await fake_asterisk(server.port, header("hangup", "", "ANSWER", "5", "16"))  # no inbound decision
    await fake_asterisk(server.port, header("hangup", "d-4"))  # missing fields
    assert engine.outcomes == [
        CallOutcome(decision_id="d-3", dialstatus="NOANSWER", billsec=0.0, hangup_cause=None),
        CallOutcome(decision_id="d-4"),
    ]
    stats = server.stats
    assert (stats.feedbacks, stats.feedback_junk, stats.feedback_without_id) == (2, 1, 1)


# ---------------------------------------------------------------------------------------------------
# Hostile and broken peers: each is closed within its bound, and the server keeps serving
# ---------------------------------------------------------------------------------------------------

HOSTILE_INPUTS = {
    "oversize line": b"agi_network_script: inbound\nagi_callerid: " + b"9" * 9000,
    "binary junk": bytes(range(256)) * 4,
    "nul bytes": b"agi_network_script: inbound\nagi_callerid: +1415\x00\n\n",
    "line without colon": b"agi_network_script inbound\n\n",
    "10,000 header lines": b"".join(b"agi_x%d: y\n" % i for i in range(10_000)) + b"\n",
    "http request": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("name", list(HOSTILE_INPUTS))
async def test_hostile_input_is_closed_at_once(server: AgiServer, engine: FakeEngine, name: str) -> None:
    side = await fake_asterisk(server.port, HOSTILE_INPUTS[name], limit=2.0)
    assert side.commands == []
    assert side.closed
    assert side.elapsed < FAST.header_timeout  # rejected on sight, not by the timeout
    assert engine.calls == []
    assert server.stats.protocol_errors == 1
    await assert_still_serving(server, engine)


async def test_invalid_utf8_is_answered(server: AgiServer, engine: FakeEngine) -> None:
    sent = PSTN_CALL.replace(b"Robo Spam", b"Jos\xe9 \xff")
    side = await fake_asterisk(server.port, sent)
    assert side.commands == verdict_commands(1)
    assert engine.calls[0].caller_name == "Jos\ufffd \ufffd"


async def test_header_that_never_completes_is_closed_at_header_timeout(server: AgiServer, engine: FakeEngine) -> None:
    side = await fake_asterisk(server.port, b"agi_network_script: inbound\nagi_callerid: 1", limit=3.0)
    assert side.closed
    assert FAST.header_timeout - 0.05 <= side.elapsed < FAST.header_timeout + SLACK
    assert server.stats.timeouts == 1
    await assert_still_serving(server, engine)


async def test_peer_closing_mid_header(server: AgiServer, engine: FakeEngine) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"agi_network_script: inbound\nagi_caller")
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    await assert_still_serving(server, engine)
    assert server.stats.protocol_errors == 1
    assert server.stats.sessions_active == 0


async def test_port_probe_is_not_an_error(server: AgiServer, engine: FakeEngine) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.close()
    await writer.wait_closed()
    await assert_still_serving(server, engine)
    stats = server.stats
    assert (stats.protocol_errors, stats.timeouts, stats.errors) == (0, 0, 0)


async def test_1000_idle_connections_do_not_block_a_call(server: AgiServer, engine: FakeEngine) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if min(soft, hard) < 2 * IDLE + 100:  # both ends of each connection live in this process
        pytest.skip(f"needs {2 * IDLE + 100} open files, the limit is {soft}")
    loop = asyncio.get_running_loop()
    idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(IDLE)]
    call_start = loop.time()
    await assert_still_serving(server, engine)
    assert loop.time() - call_start < FAST.decision_timeout
    ends = await asyncio.gather(*(reader.read() for reader, _ in idle))  # EOF from the server
    assert ends == [b""] * IDLE
    assert loop.time() - call_start < FAST.header_timeout + 2 * SLACK  # each closed at its header timeout
    for _, writer in idle:
        writer.close()
    assert server.stats.timeouts == IDLE


async def test_client_that_never_replies_is_released(server: AgiServer, engine: FakeEngine) -> None:
    side = await fake_asterisk(server.port, PSTN_CALL, lambda command: None, limit=5.0)
    assert side.commands == ["SET VARIABLE CALLSHIELD_ID d1"]
    assert side.closed
    assert FAST.command_timeout - 0.05 <= side.elapsed < FAST.command_timeout + SLACK
    stats = server.stats
    assert (stats.decision_timeouts, stats.timeouts, stats.sessions_active) == (1, 1, 0)
    await assert_still_serving(server, engine)


async def test_asterisk_closing_while_a_command_is_outstanding(server: AgiServer, engine: FakeEngine) -> None:
    def close_after_first(command: str) -> bytes | None:
        raise ConnectionResetError  # the fake Asterisk drops the connection (AGIEXITONHANGUP)

    side = await fake_asterisk(server.port, PSTN_CALL, close_after_first)
    assert side.commands == ["SET VARIABLE CALLSHIELD_ID d1"]
    await assert_still_serving(server, engine)
    assert server.stats.errors == 0


# ---------------------------------------------------------------------------------------------------
# The decision budget, HANGUP and refusals
# ---------------------------------------------------------------------------------------------------


async def test_slow_replies_end_in_connect_with_reason_timeout(server: AgiServer) -> None:
    side = await fake_asterisk(server.port, PSTN_CALL, delay=0.12)
    assert side.commands[-2:] == FAIL_OPEN
    assert "SET VARIABLE CALLSHIELD_ACTION block" not in side.commands
    assert side.closed
    assert server.stats.decision_timeouts == 1


async def test_slow_decision_ends_in_connect_with_reason_timeout(server: AgiServer, engine: FakeEngine) -> None:
    engine.delay = FAST.decision_timeout + 0.05
    side = await fake_asterisk(server.port, PSTN_CALL)
    assert side.commands == FAIL_OPEN


async def test_engine_failure_connects_the_call(server: AgiServer, engine: FakeEngine) -> None:
    engine.fail = True
    side = await fake_asterisk(server.port, PSTN_CALL)
    assert side.commands == ["SET VARIABLE CALLSHIELD_REASON error", "SET VARIABLE CALLSHIELD_ACTION connect"]
    assert server.stats.engine_errors == 1


async def test_hangup_before_the_reply_stops_politely(server: AgiServer) -> None:
    side = await fake_asterisk(server.port, PSTN_CALL, lambda command: b"HANGUP\n200 result=1\n")
    assert side.commands == ["SET VARIABLE CALLSHIELD_ID d1"]  # the id is set: feedback can match
    assert side.closed
    assert server.stats.hangups == 1


@pytest.mark.parametrize(
    "refusal",
    [
        b"510 Invalid or unknown command\n",
        b"511 Command Not Permitted on a dead channel or intercept routine\n",
        b"520-Invalid command syntax.  Proper usage follows:\nSets a variable.520 End of proper usage.\n",
    ],
)
async def test_refused_command_ends_the_session(server: AgiServer, refusal: bytes) -> None:
    side = await fake_asterisk(server.port, PSTN_CALL, lambda command: refusal)
    assert side.commands == ["SET VARIABLE CALLSHIELD_ID d1"]
    assert side.closed
    assert server.stats.refused_commands == 1


async def test_garbage_reply_is_a_protocol_error(server: AgiServer, engine: FakeEngine) -> None:
    side = await fake_asterisk(server.port, PSTN_CALL, lambda command: b"200 result 1\n")
    assert side.commands == ["SET VARIABLE CALLSHIELD_ID d1"]
    assert server.stats.protocol_errors == 1
    await assert_still_serving(server, engine)


# ---------------------------------------------------------------------------------------------------
# Lifecycle
# ---------------------------------------------------------------------------------------------------


async def test_graceful_close_lets_a_session_finish(engine: FakeEngine) -> None:
    server = AgiServer(engine, FAST)
    await server.start()
    port = server.port
    slow = asyncio.create_task(fake_asterisk(port, PSTN_CALL, delay=0.05))
    await asyncio.sleep(0.02)
    await server.close(grace=2.0)
    side = await slow
    assert side.commands == verdict_commands(1)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    assert server.sockets == ()


async def test_close_cancels_sessions_after_the_grace(engine: FakeEngine) -> None:
    server = AgiServer(engine, AgiServerSettings(port=0, header_timeout=30.0))
    await server.start()
    idle = await asyncio.open_connection("127.0.0.1", server.port)
    await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await server.close(grace=0.1)
    assert loop.time() - start < 0.1 + SLACK
    assert await asyncio.wait_for(idle[0].read(), 1.0) == b""
    idle[1].close()
    assert server.stats.sessions_active == 0


async def test_serve_forever_returns_after_close(engine: FakeEngine) -> None:
    server = AgiServer(engine, FAST)
    serving = asyncio.create_task(server.serve_forever())
    for _ in range(100):
        if server.sockets:
            break
        await asyncio.sleep(0.01)
    await assert_still_serving(server, engine)
    await server.close(grace=0.5)
    await asyncio.wait_for(serving, 1.0)


async def test_sessions_beyond_the_limit_are_closed_at_once(engine: FakeEngine) -> None:
    async with AgiServer(engine, AgiServerSettings(port=0, max_sessions=2)) as server:
        idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
        await asyncio.sleep(0.05)
        side = await fake_asterisk(server.port, PSTN_CALL, limit=1.0)
        assert side.commands == []  # no verdict: the dialplan fails open
        assert side.closed and side.elapsed < SLACK
        assert server.stats.sessions_rejected == 1
        for _, writer in idle:
            writer.close()


async def test_swap_engine_applies_to_new_sessions(server: AgiServer, engine: FakeEngine) -> None:
    other = FakeEngine(action=Action.CONNECT)
    server.swap_engine(other)
    side = await fake_asterisk(server.port, PSTN_CALL)
    assert side.commands == verdict_commands(1, "connect")
    assert (len(engine.calls), len(other.calls)) == (0, 1)
    assert server.engine is other


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_run_server_until_stopped(engine: FakeEngine) -> None:
    port = _free_port()
    stop = asyncio.Event()
    task = asyncio.create_task(run_server(engine, AgiServerSettings(port=port, mset=False), stop=stop, grace=0.5))
    for _ in range(100):
        try:
            side = await fake_asterisk(port, PSTN_CALL, limit=2.0)
            break
        except OSError:
            await asyncio.sleep(0.01)
    assert side.commands == verdict_commands(1)
    stop.set()
    await asyncio.wait_for(task, 2.0)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_stats_are_a_snapshot(server: AgiServer) -> None:
    before = server.stats
    await fake_asterisk(server.port, PSTN_CALL)
    assert before.sessions_total == 0
    assert server.stats.sessions_total == 1


def test_settings_are_validated() -> None:
    for bad in ({"max_line": 0}, {"decision_timeout": 0.0}, {"cause_default": 200}, {"port": 70000}):
        with pytest.raises(ValueError):
            AgiServerSettings(**bad)
    with pytest.raises(ValueError):
        AgiServerSettings(max_line=10_000, max_buffer=1_000)


# ---------------------------------------------------------------------------------------------------
# Translation helpers
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "trunk"),
    [
        ("PJSIP/trunk-00000006", "trunk"),
        ("PJSIP/my-carrier-0000000a", "my-carrier"),
        ("SIP/xxxxxx-00000000", "xxxxxx"),
        ("Local/+18005550100@from-trunk-00000010;2", ""),
        ("IAX2/peer-1234", "peer"),
        ("garbage", ""),
        ("", ""),
    ],
)
def test_trunk_from_channel(channel: str, trunk: str) -> None:
    assert trunk_from_channel(channel) == trunk


def test_call_from_header_fallbacks() -> None:
    call = call_from_header({"agi_callerid": "anonymous", "agi_dnid": "", "agi_callingpres": "x"})
    assert call == Call(caller="anonymous", callee="", presentation=None)
    assert call_from_header({}) == Call(caller="")


@pytest.mark.parametrize(
    ("args", "outcome", "junk"),
    [
        (
            ("d1", "ANSWER", "12", "16"),
            CallOutcome(decision_id="d1", dialstatus="ANSWER", billsec=12, hangup_cause=16),
            False,
        ),
        (("d1", "", "", ""), CallOutcome(decision_id="d1"), False),
        (("d1", "BUSY", "-5", "17"), CallOutcome(decision_id="d1", dialstatus="BUSY", hangup_cause=17), True),
        (("d1", "ANSWER", "nan", "inf"), CallOutcome(decision_id="d1", dialstatus="ANSWER"), True),
        (
            ("d1", "ANSWER", "1.5", "16", "extra"),
            CallOutcome(decision_id="d1", dialstatus="ANSWER", billsec=1.5, hangup_cause=16),
            False,
        ),
        (("", "ANSWER", "3", "16"), None, False),
        ((), None, False),
    ],
)
def test_outcome_from_args(args: tuple[str, ...], outcome: CallOutcome | None, junk: bool) -> None:
    assert outcome_from_args(args) == (outcome, junk)


def test_verdict_variables_are_safe() -> None:
    call = Call(caller="+14155550123")
    verdict = make_verdict(call, 1, Action.BLOCK, cause=0)
    unsafe = msgspec.structs.replace(verdict, score=250, reason="a\nb\x00c" + "x" * 500)
    variables = dict(verdict_variables(unsafe, cause_default=21))
    assert variables["CALLSHIELD_CAUSE"] == "21"
    assert variables["CALLSHIELD_SCORE"] == "100"
    assert variables["CALLSHIELD_REASON"].startswith("abcx") and len(variables["CALLSHIELD_REASON"]) == 128
    assert list(variables)[-1] == "CALLSHIELD_ACTION"


async def test_event_loops_set_tcp_nodelay_on_accepted_sockets() -> None:
    # The server relies on it instead of a setsockopt per call: replies must not wait for Nagle.
    assert await nodelay_of_an_accepted_socket() != 0


def test_uvloop_sets_tcp_nodelay_on_accepted_sockets() -> None:
    uvloop = pytest.importorskip("uvloop")
    assert uvloop.run(nodelay_of_an_accepted_socket()) != 0


async def nodelay_of_an_accepted_socket() -> int:
    seen: list[int] = []

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    listener = await asyncio.get_running_loop().create_server(Probe, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.sockets[0].getsockname()[1])
    await reader.read()
    writer.close()
    listener.close()
    return seen[0]
