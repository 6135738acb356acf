"""The dialplan contract of asterisk_conf/, against a real Asterisk, with a scripted FastAGI stand-in.

These pin what asterisk_conf/ does with whatever a FastAGI server answers (block -> 403 + Q.850
cause, fail open, hangup feedback arguments, the dialplan screening variant), independently of
the callshield server, whose own e2e tests use the same fixtures.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import pytest

from .conftest import Sandbox, free_tcp_port
from .sipp import Call

Script = Callable[[dict[str, str]], list[str]]


@dataclass
class Session:
    header: dict[str, str]
    sent: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)


class FakeAgi:
    """A FastAGI server that answers each session with the commands ``script(header)`` returns."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.sessions: list[Session] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(10)
                header: dict[str, str] = {}
                while line := self.rfile.readline().decode().rstrip("\n"):
                    key, _, value = line.partition(": ")
                    header[key] = value
                session = Session(header)
                for command in outer.script(header):
                    self.wfile.write(command.encode() + b"\n")
                    session.sent.append(command)
                    reply = self.rfile.readline().decode().rstrip("\n")
                    while reply == "HANGUP":
                        reply = self.rfile.readline().decode().rstrip("\n")
                    session.replies.append(reply)
                with outer.lock:
                    outer.sessions.append(session)

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.port = free_tcp_port()
        self.server = Server(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def by_script(self, name: str) -> list[Session]:
        with self.lock:
            return [s for s in self.sessions if s.header.get("agi_network_script") == name]


def verdicts(header: dict[str, str]) -> list[str]:
    """Verdict by the caller's last 4 digits; the decision id is the caller number."""
    script = header.get("agi_network_script", "")
    caller = header.get("agi_callerid", "")
    if script == "hangup":
        return ["GET VARIABLE CALLSHIELD_SCREEN"]
    tail = caller[-4:]
    if tail == "0000":  # answers nothing: fail open
        return []
    cmds = [f"SET VARIABLE CALLSHIELD_ID id{caller.lstrip('+')}"]
    if tail == "0666":
        cmds += ["SET VARIABLE CALLSHIELD_ACTION block"]  # no cause: the dialplan uses 21
    elif tail == "0017":
        cmds += ["SET VARIABLE CALLSHIELD_CAUSE 17", "SET VARIABLE CALLSHIELD_ACTION block"]
    elif tail == "0555":
        cmds += ["SET VARIABLE CALLSHIELD_SCREEN_DIGIT 5", "SET VARIABLE CALLSHIELD_ACTION screen"]
    else:
        cmds += ["SET VARIABLE CALLSHIELD_ACTION connect"]
    return cmds


@pytest.fixture
def fake_agi(asterisk: Sandbox) -> Generator[FakeAgi, None, None]:
    fake = FakeAgi(verdicts)
    fake.thread.start()
    asterisk.point_agi_at("127.0.0.1", fake.port)
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def test_block_connect_and_hangup_feedback(asterisk: Sandbox, fake_agi: FakeAgi) -> None:
    calls = [
        Call("+14155550123", "+18005550100", name="Friend", hold_ms=1500),
        Call("+14155550666", "+18005550100"),
        Call("+14155550017", "+18005550100"),
    ]
    connect, block, busy = asterisk.call(calls, timeout=30)
    assert (connect.status, connect.ended) == (200, "local_bye")
    assert (block.status, block.cause, block.ended) == (403, 21, "rejected")
    assert (busy.status, busy.cause) == (486, 17)

    asterisk.wait_idle()
    inbound = {s.header["agi_callerid"]: s.header for s in fake_agi.by_script("inbound")}
    header = inbound["+14155550123"]
    assert header["agi_calleridname"] == "Friend"  # from P-Asserted-Identity
    assert header["agi_extension"] == header["agi_dnid"] == "+18005550100"
    assert header["agi_type"] == "PJSIP"
    assert header["agi_callingpres"] == "0"

    feedback = {s.header["agi_arg_1"]: s.header for s in fake_agi.by_script("hangup")}
    answered = feedback["id14155550123"]
    assert answered["agi_arg_2"] == "ANSWER"
    assert int(answered["agi_arg_3"]) >= 1  # billsec
    assert answered["agi_arg_4"] == "16"
    blocked = feedback["id14155550666"]
    assert (blocked["agi_arg_2"], blocked["agi_arg_3"], blocked["agi_arg_4"]) == ("", "0", "21")
    assert blocked["agi_arg_5"] == ""  # no screening
    assert feedback["id14155550017"]["agi_arg_4"] == "17"


def test_fail_open(asterisk: Sandbox, fake_agi: FakeAgi) -> None:
    # The server answers nothing -> no action -> connected, and no feedback (no CALLSHIELD_ID).
    (silent,) = asterisk.call([("+14155550000", "+18005550100")], timeout=30)
    assert silent.status == 200
    # Nothing listens -> AGISTATUS=FAILURE -> connected, even for a caller that would be blocked.
    asterisk.point_agi_at("127.0.0.1", free_tcp_port())
    (down,) = asterisk.call([("+14155550666", "+18005550100")], timeout=30)
    assert down.status == 200
    asterisk.wait_idle()
    assert fake_agi.by_script("hangup") == []


def test_privacy_and_dial_outcomes(asterisk: Sandbox, fake_agi: FakeAgi) -> None:
    calls = [
        Call("+14155550123", "+18005550486"),  # the phone is busy
        Call("+14155550124", "+18005550481"),  # rings, no answer (3 s)
        Call("+14155550125", "+18005550100", privacy=True),
    ]
    busy, noanswer, hidden = asterisk.call(calls, timeout=30)
    assert (busy.status, noanswer.status, hidden.status) == (486, 480, 200)
    asterisk.wait_idle()
    inbound = {s.header["agi_callerid"]: s.header for s in fake_agi.by_script("inbound")}
    assert inbound["+14155550125"]["agi_callingpres"] == "32"  # Privacy: id -> restricted
    feedback = {s.header["agi_arg_1"]: s.header for s in fake_agi.by_script("hangup")}
    assert feedback["id14155550123"]["agi_arg_2"] == "BUSY"
    assert feedback["id14155550124"]["agi_arg_2"] == "NOANSWER"


def test_dialplan_screening_variant(asterisk: Sandbox, fake_agi: FakeAgi) -> None:
    asterisk.set_global("CALLSHIELD_DIALPLAN_SCREEN", "yes")
    asterisk.set_global("CALLSHIELD_SCREEN_TRIES", "1")
    asterisk.set_global("CALLSHIELD_SCREEN_TIMEOUT", "2")
    try:
        calls = [
            Call("+14155550555", "+18005550100", digit="5", dtmf_delay_ms=1000, hold_ms=500),
            Call("+14155550555", "+18005550101", hold_ms=15000),  # silent
        ]
        passed, silent = asterisk.call(calls, timeout=40)
    finally:
        asterisk.set_global("CALLSHIELD_SCREEN_TRIES", "")
        asterisk.set_global("CALLSHIELD_SCREEN_TIMEOUT", "")
    assert (passed.status, passed.ended, passed.dtmf_status) == (200, "local_bye", 200)
    assert (silent.status, silent.ended, silent.bye_cause) == (200, "remote_bye", 21)
    asterisk.wait_idle()
    results = sorted(s.replies[0] for s in fake_agi.by_script("hangup"))
    assert results == ["200 result=1 (passed)", "200 result=1 (timeout)"]
    assert sorted(s.header["agi_arg_5"] for s in fake_agi.by_script("hangup")) == ["passed", "timeout"]
