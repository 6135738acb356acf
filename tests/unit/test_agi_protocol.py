"""The sans-I/O FastAGI codec against real Asterisk recordings, edge cases and random input."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callshield.agi.protocol import (
    MAX_COMMAND_BYTES,
    AgiConnection,
    ConnectionClosed,
    ConnectionState,
    Event,
    Hangup,
    Header,
    LocalProtocolError,
    NeedData,
    ProtocolError,
    RemoteProtocolError,
    Reply,
    format_command,
    quote_argument,
)

# ---------------------------------------------------------------------------------------------------
# Shared data
# ---------------------------------------------------------------------------------------------------


def _shared_agi_dir() -> Path:
    root = os.environ.get("CALLSHIELD_SHARED_DATA")
    base = Path(root) if root else Path(__file__).parents[3] / "shared" / "data"
    return base / "agi"


AGI_DATA = _shared_agi_dir()


def agi_file(name: str) -> Path:
    path = AGI_DATA / name
    if not path.is_file():
        pytest.skip(f"shared AGI recording {path} not found (set CALLSHIELD_SHARED_DATA to the data folder)")
    return path


_RECORDED_LINE = re.compile(r"\S+ (?P<session>c\d+) (?P<direction><<<|>>>|---) ?(?P<text>.*)")


@dataclass
class RecordedSession:
    """One recorded FastAGI session: what Asterisk sent and the commands it received, in order."""

    name: str
    steps: list[tuple[str, str]]  # ("<<<" | ">>>", line text)

    @property
    def header_lines(self) -> list[str]:
        lines: list[str] = []
        for direction, text in self.steps:
            if direction == "<<<" and text == "":
                return lines
            lines.append(text)
        raise AssertionError("recording has no blank line after the header")

    @property
    def asterisk_bytes(self) -> bytes:
        return b"".join(f"{text}\n".encode() for direction, text in self.steps if direction == "<<<")

    @property
    def commands(self) -> list[str]:
        return [text for direction, text in self.steps if direction == ">>>"]

    @property
    def replies(self) -> list[str]:
        after_header = self.steps[len(self.header_lines) + 1 :]
        return [text for direction, text in after_header if direction == "<<<"]


def load_recording(name: str) -> list[RecordedSession]:
    sessions: dict[str, RecordedSession] = {}
    for line in agi_file(name).read_text(encoding="utf-8").splitlines():
        match = _RECORDED_LINE.fullmatch(line)
        assert match is not None, f"unexpected recording line {line!r}"
        if match["direction"] == "---":
            continue
        session = sessions.setdefault(match["session"], RecordedSession(match["session"], []))
        session.steps.append((match["direction"], match["text"]))
    return list(sessions.values())


def all_recorded_sessions() -> list[RecordedSession]:
    sessions = load_recording("asterisk22_fastagi_sessions.txt")
    return sessions + load_recording("asterisk22_fastagi_with_args.txt")


# ---------------------------------------------------------------------------------------------------
# Helpers: Asterisk's argument parser, and drivers that pull events like a transport would
# ---------------------------------------------------------------------------------------------------

KNOWN_COMMANDS = ("GET FULL VARIABLE", "GET VARIABLE", "SET VARIABLE", "VERBOSE", "NOOP")


def asterisk_parse_args(line: str) -> list[str]:
    """A port of res_agi.c parse_args(): how Asterisk splits a command line into words."""
    words: list[str] = []
    quoted = escaped = False
    whitespace = True
    for char in line:
        if char == '"' and not escaped:
            quoted = not quoted
            if quoted and whitespace:
                words.append("")
                whitespace = False
            continue
        if char in " \t" and not quoted and not escaped:
            whitespace = True
            continue
        if char == "\\" and not escaped:
            escaped = True
            continue
        if whitespace:
            words.append("")
            whitespace = False
        words[-1] += char
        escaped = False
    return words


def split_recorded_command(line: str) -> tuple[str, list[str]]:
    words = asterisk_parse_args(line)
    for command in KNOWN_COMMANDS:
        size = len(command.split())
        if [word.upper() for word in words[:size]] == command.split():
            return command, words[size:]
    raise AssertionError(f"unknown command in recording: {line!r}")


def pull_events(
    conn: AgiConnection,
    chunks: Iterable[bytes],
    commands: Sequence[str] = (),
    *,
    auto_command: str | None = None,
    max_steps: int = 100_000,
) -> tuple[list[Event], list[bytes]]:
    """Feed ``chunks`` (then EOF) and collect events until ConnectionClosed.

    Whenever the connection is idle it sends the next of ``commands`` (recorded command lines), or
    ``auto_command`` once they run out. Returns the events and the bytes of the commands sent.
    """
    feed: Iterator[bytes] = iter(chunks)
    pending = list(commands)
    events: list[Event] = []
    sent: list[bytes] = []
    for _ in range(max_steps):
        event = conn.next_event()
        if isinstance(event, NeedData):
            conn.receive_data(next(feed, b""))
            continue
        if isinstance(event, ConnectionClosed):
            return events, sent
        events.append(event)
        if conn.state is ConnectionState.IDLE:
            if pending:
                command, args = split_recorded_command(pending.pop(0))
                sent.append(conn.send_command(command, *args))
            elif auto_command is not None:
                sent.append(conn.send_command(auto_command))
    raise AssertionError("the codec did not finish: it spins")


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({min(max(cut, 0), len(data)) for cut in cuts} | {0, len(data)})
    return [data[start:end] for start, end in itertools.pairwise(points) if end > start]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def header_bytes(**variables: str) -> bytes:
    return "".join(f"{name}: {value}\n" for name, value in variables.items()).encode() + b"\n"


def idle_connection(**kwargs: int) -> AgiConnection:
    conn = AgiConnection(**kwargs)
    conn.receive_data(header_bytes(agi_network_script="inbound", agi_callerid="+14155550123"))
    assert isinstance(conn.next_event(), Header)
    return conn


def reply_to(data: bytes, **kwargs: int) -> Event:
    """The first event after sending a NOOP and receiving ``data``."""
    conn = idle_connection(**kwargs)
    conn.send_command("NOOP")
    conn.receive_data(data)
    return conn.next_event()


# ---------------------------------------------------------------------------------------------------
# Real Asterisk 22 recordings
# ---------------------------------------------------------------------------------------------------

_RECORDED_REPLY = re.compile(r"200 result=(\S+)(?: \((.*)\))?")


def expected_events(session: RecordedSession) -> list[Event]:
    """What the recording shows, parsed independently of the codec."""
    variables = dict(line.split(": ", 1) for line in session.header_lines)
    script_path, _, query = variables["agi_network_script"].partition("?")
    args = tuple(value for name, value in sorted(variables.items()) if name.startswith("agi_arg_"))
    events: list[Event] = [Header(variables=variables, script=script_path, query=query, args=args)]
    for line in session.replies:
        match = _RECORDED_REPLY.fullmatch(line)
        assert match is not None, line
        events.append(Reply(code=200, result=match[1], data=match[2], raw=line))
    return events


def test_recordings_are_present_and_complete() -> None:
    sessions = load_recording("asterisk22_fastagi_sessions.txt")
    assert len(sessions) == 11
    assert all(len(s.commands) == len(s.replies) for s in all_recorded_sessions())


@pytest.mark.parametrize("feed", ["whole", "bytewise"])
def test_recorded_sessions_parse_as_recorded(feed: str) -> None:
    for session in all_recorded_sessions():
        data = session.asterisk_bytes
        chunks = [data] if feed == "whole" else bytewise(data)
        events, sent = pull_events(AgiConnection(), chunks, session.commands)
        assert events == expected_events(session), session.name
        assert sent == [f"{command}\n".encode() for command in session.commands], session.name


def test_recorded_header_details() -> None:
    sessions = {s.name: s for s in load_recording("asterisk22_fastagi_sessions.txt")}
    events, _ = pull_events(AgiConnection(), [sessions["c6"].asterisk_bytes], sessions["c6"].commands)
    header = events[0]
    assert isinstance(header, Header)
    assert header.script == "screen"
    assert header.variables["agi_channel"] == "PJSIP/trunk-00000006"
    assert header.args == ()
    pjsip_reply = events[3]
    assert isinstance(pjsip_reply, Reply)
    assert pjsip_reply.data == '"Robo Spam" <sip:+14155550123@127.0.0.1>;tag=3f46594d'
    empty_pai = events[4]
    assert isinstance(empty_pai, Reply) and empty_pai.data == ""
    not_set = events[5]
    assert isinstance(not_set, Reply) and (not_set.result, not_set.data) == ("0", None)


def test_recorded_session_with_args_and_query() -> None:
    (session,) = load_recording("asterisk22_fastagi_with_args.txt")
    events, _ = pull_events(AgiConnection(), [session.asterisk_bytes], session.commands)
    header = events[0]
    assert isinstance(header, Header)
    assert (header.script, header.query, header.args) == ("screen", "mode=test", ("first",))
    assert header.variables["agi_accountcode"] == ""
    assert header.variables["agi_callingpres"] == "67"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_recorded_sessions_are_chunking_invariant(data: st.DataObject) -> None:
    for session in all_recorded_sessions():
        stream = session.asterisk_bytes
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
        events, sent = pull_events(AgiConnection(), split_at(stream, cuts), session.commands)
        assert events == expected_events(session)
        assert len(sent) == len(session.commands)


# ---------------------------------------------------------------------------------------------------
# Third-party fixtures: zaf/agi and panoramisk
# ---------------------------------------------------------------------------------------------------


def test_zaf_valid_environment() -> None:
    conn = AgiConnection()
    conn.receive_data(agi_file("zaf_agi_env.txt").read_bytes())
    header = conn.next_event()
    assert isinstance(header, Header)
    assert len(header.variables) == 25
    assert header.args == ("argument1", "argument 2", "3")
    assert (header.script, header.query) == ("foo", "")
    assert conn.state is ConnectionState.IDLE


def test_zaf_invalid_environment() -> None:
    conn = AgiConnection()
    conn.receive_data(agi_file("zaf_agi_envInv.txt").read_bytes())
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert conn.state is ConnectionState.ERROR


def test_panoramisk_environment() -> None:
    conn = AgiConnection()
    conn.receive_data(agi_file("panoramisk_fastagi_env.txt").read_bytes())
    header = conn.next_event()
    assert isinstance(header, Header)
    assert header.script == "call_waiting"
    assert header.args == ("answered",)
    assert header.variables["agi_request"] == "agi://127.0.0.1:4574/call_waiting"


def _replies_after_noops(data: bytes) -> list[Event]:
    conn = idle_connection()
    conn.send_command("NOOP")
    events, _ = pull_events(conn, [data], auto_command="NOOP")
    return events


def test_zaf_replies() -> None:
    events = _replies_after_noops(agi_file("zaf_agi_rep.txt").read_bytes())
    assert events[0] == Reply(code=200, result="1", raw="200 result=1")
    speech = events[1]
    assert isinstance(speech, Reply)
    assert (speech.code, speech.result, speech.data, speech.endpos) == (200, "1", "speech", 1234)
    assert dict(speech.extra) == {"endpos": "1234", "results": "foo bar"}
    unknown = "Invalid or unknown command"
    assert events[2] == Reply(code=510, data=unknown, raw=f"510 {unknown}")
    assert isinstance(events[3], Reply) and events[3].code == 511
    assert events[4] == Reply(
        code=520,
        data="Invalid command syntax.  Proper usage not available.",
        raw="520 Invalid command syntax.  Proper usage not available.",
    )
    usage = events[5]
    assert isinstance(usage, Reply)
    assert usage.code == 520 and usage.result is None
    assert usage.data == (
        "Invalid command syntax.  Proper usage follows:\n"
        "Answers channel if not already in answer state. Returns -1 on channel failure, or 0 if successful."
    )
    assert usage.raw.endswith("successful.520 End of proper usage.")
    assert events[6] == Hangup()
    assert len(events) == 7


def test_zaf_valid_replies() -> None:
    events = _replies_after_noops(agi_file("zaf_agi_repVal.txt").read_bytes())
    replies = [event for event in events if isinstance(event, Reply)]
    assert [reply.result for reply in replies] == ["1"] * 6
    assert [reply.endpos for reply in replies] == [None, None, 1234, None, None, None]
    assert events[-1] == Hangup()


def test_zaf_invalid_replies_each_rejected() -> None:
    lines = agi_file("zaf_agi_repInv.txt").read_bytes().splitlines(keepends=True)
    assert len(lines) == 6
    for line in lines:
        with pytest.raises(RemoteProtocolError):
            reply_to(line)


# ---------------------------------------------------------------------------------------------------
# Replies
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "result", "data", "endpos"),
    [
        (b"200 result=1\n", "1", None, None),
        (b"200 result=0 (timeout)\n", "0", "timeout", None),
        (b"200 result=-1\n", "-1", None, None),
        (b"200 result=12*# (timeout)\n", "12*#", "timeout", None),
        (b"200 result=1 (a (nested) value)\n", "1", "a (nested) value", None),
        (b"200 result=1 ()\n", "1", "", None),
        (b"200 result=0 endpos=8000\n", "0", None, 8000),
        (b"200 result=1 some free text\n", "1", "some free text", None),
    ],
)
def test_result_replies(line: bytes, result: str, data: str | None, endpos: int | None) -> None:
    reply = reply_to(line)
    assert isinstance(reply, Reply)
    assert (reply.code, reply.result, reply.data, reply.endpos) == (200, result, data, endpos)
    assert reply.ok


def test_reply_block_with_separate_end_line() -> None:
    block = b"520-Invalid command syntax.  Proper usage follows:\nUsage: X\n  more\n520 End of proper usage.\n"
    reply = reply_to(block)
    assert isinstance(reply, Reply)
    assert reply.data == "Invalid command syntax.  Proper usage follows:\nUsage: X\n  more"
    assert reply.raw.count("\n") == 3
    assert not reply.ok


def test_hangup_before_reply_keeps_the_command_outstanding() -> None:
    conn = idle_connection()
    conn.send_command("SET VARIABLE", "X", "1")
    conn.receive_data(b"HANGUP\n200 result=1\n")
    assert conn.next_event() == Hangup()
    assert conn.awaiting_reply
    assert conn.next_event() == Reply(code=200, result="1", raw="200 result=1")
    assert conn.state is ConnectionState.IDLE


def test_hangup_while_idle() -> None:
    conn = idle_connection()
    conn.receive_data(b"HANGUP\n")
    assert conn.next_event() == Hangup()
    assert conn.state is ConnectionState.IDLE


def test_provisional_reply_keeps_waiting() -> None:
    conn = idle_connection()
    conn.send_command("RECORD FILE", "x", "wav", "#", 1000)
    conn.receive_data(b"100 result=0 Trying...\n200 result=0 (timeout) endpos=0\n")
    first = conn.next_event()
    assert isinstance(first, Reply) and (first.code, first.data) == (100, "Trying...")
    assert conn.awaiting_reply
    second = conn.next_event()
    assert isinstance(second, Reply) and (second.code, second.endpos) == (200, 0)
    assert conn.state is ConnectionState.IDLE


def test_unsolicited_reply_is_an_error() -> None:
    conn = idle_connection()
    conn.receive_data(b"200 result=1\n")
    with pytest.raises(RemoteProtocolError, match="unsolicited"):
        conn.next_event()


# ---------------------------------------------------------------------------------------------------
# Header grammar
# ---------------------------------------------------------------------------------------------------


def test_crlf_and_lf_give_the_same_events() -> None:
    lf = header_bytes(agi_network_script="inbound", agi_arg_2="b", agi_arg_1="a") + b"200 result=1 (x)\n"
    crlf = lf.replace(b"\n", b"\r\n")
    results = [pull_events(AgiConnection(), [data], auto_command="NOOP")[0] for data in (lf, crlf)]
    assert results[0] == results[1]
    header = results[0][0]
    assert isinstance(header, Header) and header.args == ("a", "b")


def test_script_from_agi_request_when_network_script_is_missing() -> None:
    conn = AgiConnection()
    conn.receive_data(header_bytes(agi_request="agi://10.0.0.1:4573/inbound/?x=1"))
    header = conn.next_event()
    assert isinstance(header, Header)
    assert (header.script, header.query) == ("inbound", "x=1")


def test_empty_value_without_trailing_space_is_accepted() -> None:
    conn = AgiConnection()
    conn.receive_data(b"agi_network_script: inbound\nagi_accountcode:\n\n")
    header = conn.next_event()
    assert isinstance(header, Header) and header.variables["agi_accountcode"] == ""


@pytest.mark.parametrize(
    "data",
    [
        b"agi_callerid +1415\n\n",  # no colon
        b"agi_callerid:+1415\n\n",  # no space after the colon
        b"callerid: +1415\n\n",  # not an agi_ name
        b"agi_: x\n\n",  # empty name
        b"agi_x: 1\nagi_x: 2\n\n",  # repeated name
        b"\n",  # empty header
        b"HANGUP\n",  # HANGUP before the header
        b"200 result=1\n",  # a reply before the header
    ],
)
def test_header_violations(data: bytes) -> None:
    conn = AgiConnection()
    conn.receive_data(data)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_invalid_utf8_is_replaced_and_counted() -> None:
    conn = AgiConnection()
    conn.receive_data(b"agi_network_script: inbound\nagi_calleridname: Jos\xe9\n\n")
    header = conn.next_event()
    assert isinstance(header, Header)
    assert header.variables["agi_calleridname"] == "Jos\ufffd"
    assert conn.decoding_errors == 1


def test_nul_byte_is_an_error() -> None:
    conn = AgiConnection()
    conn.receive_data(b"agi_network_script: in\x00bound\n\n")
    with pytest.raises(RemoteProtocolError, match="NUL"):
        conn.next_event()


# ---------------------------------------------------------------------------------------------------
# Bounds and EOF
# ---------------------------------------------------------------------------------------------------


def test_line_too_long_without_newline_fails_early() -> None:
    conn = AgiConnection(max_line=100)
    conn.receive_data(b"agi_x: " + b"a" * 90)
    assert isinstance(conn.next_event(), NeedData)
    conn.receive_data(b"a" * 10)
    with pytest.raises(RemoteProtocolError, match="longer than 100"):
        conn.next_event()


def test_line_at_the_limit_with_crlf_split_before_lf_is_accepted() -> None:
    line = b"agi_network_script: " + b"x" * 80  # exactly 100 bytes
    conn = AgiConnection(max_line=100)
    events, _ = pull_events(conn, [line + b"\r", b"\n\n"])
    assert isinstance(events[0], Header)


def test_complete_line_too_long_fails() -> None:
    conn = AgiConnection(max_line=100)
    conn.receive_data(b"agi_x: " + b"a" * 200 + b"\n\n")
    with pytest.raises(RemoteProtocolError, match="longer than 100"):
        conn.next_event()


def test_too_many_header_lines() -> None:
    conn = AgiConnection(max_header_lines=256)
    conn.receive_data(b"".join(b"agi_v%d: x\n" % i for i in range(257)))
    with pytest.raises(RemoteProtocolError, match="256 lines"):
        conn.next_event()


def test_exactly_max_header_lines_is_accepted() -> None:
    conn = AgiConnection(max_header_lines=4)
    conn.receive_data(b"".join(b"agi_v%d: x\n" % i for i in range(4)) + b"\n")
    assert isinstance(conn.next_event(), Header)


def test_unconsumed_input_is_bounded() -> None:
    conn = AgiConnection(max_line=100, max_buffer=1000)
    with pytest.raises(RemoteProtocolError, match="unconsumed"):
        conn.receive_data(b"x" * 1001)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_header_bytes_are_bounded() -> None:
    conn = AgiConnection(max_line=100, max_header_lines=1000, max_buffer=1000)
    with pytest.raises(RemoteProtocolError, match="larger than 1000"):
        for i in range(20):
            conn.receive_data(b"agi_%02d: " % i + b"x" * 80 + b"\n")
            assert isinstance(conn.next_event(), NeedData)


def test_usage_block_is_bounded() -> None:
    conn = idle_connection(max_line=100, max_buffer=1000)
    conn.send_command("NOOP")
    conn.receive_data(b"520-start\n")
    with pytest.raises(RemoteProtocolError, match="larger than 1000"):
        for _ in range(200):
            assert isinstance(conn.next_event(), NeedData)
            conn.receive_data(b"usage line\n")


def test_eof_before_anything_is_a_clean_close() -> None:
    conn = AgiConnection()
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed()
    assert conn.next_event() == ConnectionClosed()
    assert conn.state is ConnectionState.CLOSED


@pytest.mark.parametrize("data", [b"agi_network_script: inbound\n", b"agi_network_script: inb"])
def test_eof_mid_header_is_an_error(data: bytes) -> None:
    conn = AgiConnection()
    conn.receive_data(data)
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="closed"):
        conn.next_event()
    with pytest.raises(RemoteProtocolError):  # sticky, and never NeedData
        conn.next_event()


def test_eof_mid_reply_line_and_mid_block_are_errors() -> None:
    for data in (b"200 resu", b"520-Invalid\nusage\n"):
        conn = idle_connection()
        conn.send_command("NOOP")
        conn.receive_data(data)
        conn.receive_data(b"")
        with pytest.raises(RemoteProtocolError, match="closed"):
            conn.next_event()


def test_eof_while_awaiting_a_reply_is_a_close() -> None:
    conn = idle_connection()
    conn.send_command("NOOP")
    conn.receive_data(b"HANGUP\n")
    conn.receive_data(b"")
    assert conn.next_event() == Hangup()
    assert conn.next_event() == ConnectionClosed()


def test_data_after_eof_is_a_local_error() -> None:
    conn = AgiConnection()
    conn.receive_data(b"")
    conn.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"x")


def test_constructor_rejects_nonsense_bounds() -> None:
    with pytest.raises(ValueError):
        AgiConnection(max_line=1000, max_buffer=10)


# ---------------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("CALLERID(num)",), b"GET VARIABLE CALLERID(num)\n"),
        (("${CALLERID(all)}",), b'GET VARIABLE "${CALLERID(all)}"\n'),
        (("a b",), b'GET VARIABLE "a b"\n'),
        (("",), b'GET VARIABLE ""\n'),
        (('say "hi"',), b'GET VARIABLE "say \\"hi\\""\n'),
        (("back\\slash",), b'GET VARIABLE "back\\\\slash"\n'),
        ((7, "+14155550123"), b"GET VARIABLE 7 +14155550123\n"),
        (("caf\u00e9",), 'GET VARIABLE "caf\u00e9"\n'.encode()),
    ],
)
def test_command_quoting(args: tuple[str | int, ...], line: bytes) -> None:
    assert format_command("GET VARIABLE", *args) == line


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x00b", "lone surrogate \ud800"])
def test_command_arguments_cannot_break_lines(bad: str) -> None:
    with pytest.raises(ValueError):
        format_command("SET VARIABLE", "X", bad)
    conn = idle_connection()
    with pytest.raises(ValueError):
        conn.send_command("SET VARIABLE", "X", bad)
    assert conn.state is ConnectionState.IDLE  # a refused command is not outstanding


@pytest.mark.parametrize("command", ["", "SET  VARIABLE", " NOOP", "set\nvariable", "EXEC 1", "GET-VARIABLE"])
def test_bad_command_words(command: str) -> None:
    with pytest.raises(ValueError):
        format_command(command)


def test_command_length_is_bounded_by_asterisks_buffer() -> None:
    fits = "x" * (MAX_COMMAND_BYTES - len("VERBOSE \n"))
    assert len(format_command("VERBOSE", fits)) == MAX_COMMAND_BYTES
    with pytest.raises(ValueError, match="limit"):
        format_command("VERBOSE", fits + "x")
    with pytest.raises(ValueError, match="too many"):
        format_command("VERBOSE", *["x"] * 127)


def test_one_command_at_a_time() -> None:
    conn = AgiConnection()
    with pytest.raises(LocalProtocolError):
        conn.send_command("NOOP")  # before the header
    conn = idle_connection()
    conn.send_command("NOOP")
    with pytest.raises(LocalProtocolError):
        conn.send_command("NOOP")
    conn.receive_data(b"200 result=0\n")
    assert isinstance(conn.next_event(), Reply)
    conn.send_command("NOOP")
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed()
    with pytest.raises(LocalProtocolError):
        conn.send_command("NOOP")


_SENDABLE_TEXT = st.text(alphabet=st.characters(exclude_characters="\r\n\x00", exclude_categories=["Cs"]))


@given(st.lists(_SENDABLE_TEXT, max_size=6))
def test_asterisk_reads_back_every_argument(args: list[str]) -> None:
    line = format_command("SET VARIABLE", *args).decode()
    assert line.endswith("\n")
    assert asterisk_parse_args(line[:-1]) == ["SET", "VARIABLE", *args]
    assert quote_argument(args[0] if args else "x")


# ---------------------------------------------------------------------------------------------------
# Properties over hostile input
# ---------------------------------------------------------------------------------------------------

_HEADER_FRAGMENTS = st.sampled_from(
    [b"agi_network_script: inbound\n", b"agi_arg_1: x\n", b"agi_callerid: +1 (415)\n", b"\n", b"\r\n"]
)
_REPLY_FRAGMENTS = st.sampled_from(
    [
        b"200 result=1\n",
        b"200 result=1 (a) endpos=5 b=c\n",
        b"200 result=0 (timeout)\r\n",
        b"510 Invalid or unknown command\n",
        b"511 Command Not Permitted on a dead channel\n",
        b"520-Invalid command syntax.\n",
        b"usage\n",
        b"520 End of proper usage.\n",
        b"x520 End of proper usage.\n",
        b"HANGUP\n",
        b"100 result=0 Trying...\n",
    ]
)
_JUNK = st.one_of(st.sampled_from([b"\x00", b"\xff\xfe", b":", b" ", b"\n", b"\r"]), st.binary(max_size=6))
_AGI_LIKE = st.tuples(
    st.one_of(st.just([]), st.lists(st.one_of(_HEADER_FRAGMENTS, _JUNK), max_size=6)),
    st.sampled_from([b"", b"agi_network_script: inbound\nagi_arg_1: x\n\n"]),
    st.lists(st.one_of(*[_REPLY_FRAGMENTS] * 8, _JUNK), max_size=30),
).map(lambda parts: b"".join(parts[0]) + parts[1] + b"".join(parts[2]))
_ANY_INPUT = st.one_of(st.binary(max_size=600), _AGI_LIKE)


def events_and_ending(data: bytes, chunks: list[bytes], **bounds: int) -> tuple[list[Event], str]:
    """The events and how the stream ended ("closed" or the ProtocolError type).

    Anything but a ProtocolError escapes and fails the test; so does a codec that spins.
    """
    conn = AgiConnection(**bounds)
    feed = iter(chunks)
    events: list[Event] = []
    for _ in range(len(data) + len(chunks) + 10):
        try:
            event = conn.next_event()
            if isinstance(event, NeedData):
                conn.receive_data(next(feed, b""))
                continue
        except ProtocolError as error:
            return events, type(error).__name__
        if isinstance(event, ConnectionClosed):
            return events, "closed"
        events.append(event)
        if conn.state is ConnectionState.IDLE:
            conn.send_command("NOOP")
    raise AssertionError("the codec spins")


@settings(max_examples=400, deadline=None)
@given(_ANY_INPUT, st.lists(st.integers(0, 600), max_size=10))
def test_arbitrary_input_ends_cleanly_or_with_protocol_error(data: bytes, cuts: list[int]) -> None:
    # Tight bounds, so that they are hit too.
    events_and_ending(data, split_at(data, cuts), max_line=40, max_header_lines=5, max_buffer=200)


@settings(max_examples=400, deadline=None)
@given(_ANY_INPUT, st.lists(st.integers(0, 600), max_size=10))
def test_arbitrary_input_is_chunking_invariant(data: bytes, cuts: list[int]) -> None:
    whole = events_and_ending(data, [data], max_line=64)
    assert events_and_ending(data, split_at(data, cuts), max_line=64) == whole
    assert events_and_ending(data, bytewise(data), max_line=64) == whole


_VALUE_CHARACTERS = st.one_of(
    st.characters(min_codepoint=32, max_codepoint=126),  # mostly ASCII: the fast path's input
    st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\n"),
)
_HEADER_LINE = st.one_of(
    st.builds(
        lambda name, value: f"{name}: {value}",
        st.sampled_from(["agi_callerid", "agi_dnid", "agi_arg_1", "agi_x", "agi_network_script", "agi_", "x"]),
        st.text(alphabet=_VALUE_CHARACTERS, max_size=70),
    ),
    st.sampled_from(["agi_empty:", "agi_nospace:x", "agi_a:  two spaces", "agi_b: a: b", "no colon", "agi_c: x\r"]),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_HEADER_LINE, max_size=8), st.binary(max_size=40))
def test_whole_header_fast_path_agrees_with_the_line_rules(lines: list[str], after: bytes) -> None:
    # A header fed whole may be parsed in one pass; byte by byte it never is: both must agree,
    # errors included, at tight bounds too.
    data = ("\n".join(lines) + "\n\n").encode() + after
    for bounds in ({"max_line": 64}, {"max_line": 40, "max_header_lines": 5, "max_buffer": 200}):
        assert events_and_ending(data, [data], **bounds) == events_and_ending(data, bytewise(data), **bounds)
