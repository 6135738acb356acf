"""A sans-I/O FastAGI codec: bytes from Asterisk in, events out; commands out as bytes.

Like h11, this module never touches a socket, a clock or an event loop. The transport feeds it the
bytes it read (``b""`` when the peer closed) and pulls events; it asks it for the bytes of a command
and writes them itself::

    conn = AgiConnection()
    conn.receive_data(data)
    event = conn.next_event()     # Header, Reply, Hangup, NeedData or ConnectionClosed
    writer.write(conn.send_command("SET VARIABLE", "CALLSHIELD_ACTION", "block"))

Every violation by the peer raises :class:`RemoteProtocolError`; misuse by the caller (a second
command while one is outstanding, data after EOF) raises :class:`LocalProtocolError`. Both are
:class:`ProtocolError`. Nothing else escapes, whatever the bytes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Final, NoReturn, TypeAlias

from callshield.errors import CallshieldError

__all__ = [
    "MAX_COMMAND_BYTES",
    "AgiConnection",
    "ConnectionClosed",
    "ConnectionState",
    "Event",
    "Hangup",
    "Header",
    "LocalProtocolError",
    "NeedData",
    "ProtocolError",
    "RemoteProtocolError",
    "Reply",
    "format_command",
    "quote_argument",
]


# ---------------------------------------------------------------------------------------------------
# Errors and events
# ---------------------------------------------------------------------------------------------------


class ProtocolError(CallshieldError):
    """The FastAGI conversation cannot continue."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something FastAGI does not allow (or more than the configured bounds)."""


class LocalProtocolError(ProtocolError):
    """This side used the connection out of turn (e.g. a second command before the first reply)."""


_EMPTY: Final[MappingProxyType[str, str]] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    """The ``agi_*`` block Asterisk sends first, ended by a blank line."""

    variables: Mapping[str, str]
    """Every ``agi_*`` line, name to value, as sent."""
    script: str
    """The script path of the request (``agi_network_script``, else the path of ``agi_request``),
    without a query string and without leading or trailing slashes: ``inbound``."""
    query: str = ""
    """The query string of the script path, if any (``mode=test`` for ``screen?mode=test``)."""
    args: tuple[str, ...] = ()
    """``agi_arg_1``, ``agi_arg_2``, ... in numeric order."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """Asterisk's answer to one command (a multi-line ``520-`` usage block is one Reply)."""

    code: int
    """200 for success; 510 unknown command, 511 not permitted on a dead channel, 520 bad syntax."""
    result: str | None = None
    """The ``result=`` token, e.g. ``"1"``, ``"-1"`` or the digits of GET DATA; None if absent."""
    data: str | None = None
    """The parenthesised value of a 200 (``+14155550123`` of ``(+14155550123)``; ``""`` for ``()``),
    free text after the result, or the message of an error code (with the usage text of a
    ``520-`` block); None when there is none."""
    endpos: int | None = None
    """The ``endpos=`` sample offset of the playback and recording commands."""
    extra: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    """Other ``key=value`` fields after the result (``results=foo bar`` of a speech reply)."""
    raw: str = ""
    """The reply line(s) as received, joined with ``\\n``, without the final line break."""

    @property
    def ok(self) -> bool:
        """Whether the command was accepted (code 200)."""
        return self.code == 200


@dataclass(frozen=True, slots=True)
class Hangup:
    """The line ``HANGUP``: the caller hung up while the AGI ran. It can arrive before the reply
    to an outstanding command; that reply still follows (``511`` if the command needs a live
    channel)."""


@dataclass(frozen=True, slots=True)
class NeedData:
    """No complete event is buffered: feed more bytes (or ``b""`` for EOF)."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed the connection cleanly (returned again on every later call)."""


Event: TypeAlias = Header | Reply | Hangup | NeedData | ConnectionClosed

_NEED_DATA: Final = NeedData()
_CLOSED: Final = ConnectionClosed()


# ---------------------------------------------------------------------------------------------------
# Grammar: the only place that knows what lines look like
# ---------------------------------------------------------------------------------------------------
#
# What res_agi.c sends: lines ending in LF (a CR before the LF is dropped, so CRLF works too).
#
#   session      = header *( reply / hangup )
#   header       = 1*header-line blank-line
#   header-line  = name ":" [ " " value ]       ; name = "agi_" 1*( ALNUM / "_" ), each name once;
#                                               ; "name:" with nothing after is an empty value
#   hangup       = "HANGUP"
#   reply        = code [ " " text ]            ; code = 3DIGIT; a 200 must have "result=" token
#                / code "-" text *usage-line end-line
#   end-line     = code " " text                ; "520 End of proper usage."
#                / usage-text code " End of proper usage."
#                                               ; Asterisk prints the usage without a final
#                                               ; newline, so the marker can share its line
#   result-text  = "result=" token [ " " tail ] ; tail = "(" data ")"          (GET VARIABLE)
#                                               ;      / "(" data ") " fields  (speech)
#                                               ;      / fields / free text    ("Trying...")
#   fields       = key "=" value *( " " key "=" value )      ; "endpos=1234 results=foo bar"
#
# Every line is at most max_line bytes and holds no NUL (Asterisk's strings are C strings: a NUL
# is never real). Lines are UTF-8; invalid sequences are replaced by U+FFFD and counted in
# AgiConnection.decoding_errors rather than rejected: a caller name in Latin-1 must not make a
# call skip screening (rejecting would fail open).
#
# Commands we send: WORDS *( " " argument ) LF, at most MAX_COMMAND_BYTES with the LF (res_agi
# reads into a 2048-byte buffer and would run the rest of a longer line as a second command).
# An argument is sent bare when it is non-empty and made of SAFE_ARGUMENT characters, else in
# double quotes with '"' and '\' backslash-escaped: Asterisk's parse_args() removes the quotes and
# escapes, so both spellings mean the same, and bare arguments match what other AGI libraries
# (and the recorded sessions) send byte for byte. CR, LF and NUL cannot be sent at all.

_HEADER_NAME: Final = re.compile(r"agi_[A-Za-z0-9_]+")
_ARG_NAME: Final = re.compile(r"agi_arg_([0-9]{1,4})")
_REPLY_LINE: Final = re.compile(r"([0-9]{3})(?:([ -])(.*))?", re.DOTALL)
_RESULT: Final = re.compile(r"result=(\S+)(?: (.*))?", re.DOTALL)
_PAREN_ONLY: Final = re.compile(r"\((.*)\)", re.DOTALL)
_PAREN_THEN_FIELDS: Final = re.compile(r"\((.*?)\) ([A-Za-z_]\w*=.*)", re.DOTALL | re.ASCII)
_FIELDS: Final = re.compile(r"[A-Za-z_]\w*=.*", re.DOTALL | re.ASCII)
_FIELD_BOUNDARY: Final = re.compile(r" (?=[A-Za-z_]\w*=)", re.ASCII)
_INTEGER: Final = re.compile(r"-?[0-9]{1,18}")
_COMMAND_WORDS: Final = re.compile(r"[A-Za-z]+(?: [A-Za-z]+)*")
_SAFE_ARGUMENT: Final = re.compile(r"[A-Za-z0-9_+\-.,:@/()*#=%]+")
_FORBIDDEN_IN_COMMAND: Final = re.compile(r"[\r\n\x00]")

HANGUP_LINE: Final = "HANGUP"
USAGE_END: Final = " End of proper usage."
MAX_COMMAND_BYTES: Final = 2047
"""Longest command line (with its LF) Asterisk reads as one command (AGI_BUF_LEN 2048 - 1)."""
MAX_COMMAND_ARGS: Final = 127
"""Most words (command words plus arguments) parse_args() keeps (MAX_ARGS 128 - 1)."""


def quote_argument(argument: str | int) -> str:
    """One command argument as Asterisk's parse_args() reads it back unchanged.

    Raises ValueError for CR, LF or NUL, which no quoting can carry.
    """
    text = str(argument)
    if _FORBIDDEN_IN_COMMAND.search(text):
        raise ValueError(f"AGI argument contains CR, LF or NUL: {text[:40]!r}")
    if _SAFE_ARGUMENT.fullmatch(text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def format_command(command: str, *args: str | int) -> bytes:
    """The bytes of one AGI command line, e.g. ``format_command("SET VARIABLE", "X", "a b")``.

    ``command`` is the command's words (letters and single spaces). Raises ValueError for a bad
    command, an argument with CR/LF/NUL or that UTF-8 cannot encode (a lone surrogate), too many
    arguments, or a line over MAX_COMMAND_BYTES.
    """
    if not _COMMAND_WORDS.fullmatch(command):
        raise ValueError(f"not an AGI command: {command[:40]!r}")
    if len(command.split(" ")) + len(args) > MAX_COMMAND_ARGS:
        raise ValueError(f"too many AGI arguments ({len(args)})")
    line = " ".join([command, *(quote_argument(arg) for arg in args)]) + "\n"
    encoded = line.encode("utf-8")
    if len(encoded) > MAX_COMMAND_BYTES:
        raise ValueError(f"AGI command line is {len(encoded)} bytes, the limit is {MAX_COMMAND_BYTES}")
    return encoded


def _parse_header_line(line: str) -> tuple[str, str]:
    name, colon, value = line.partition(":")
    if not colon or not _HEADER_NAME.fullmatch(name):
        raise RemoteProtocolError(f"not an AGI header line: {_excerpt(line)}")
    if value.startswith(" "):
        return name, value[1:]
    if value:
        raise RemoteProtocolError(f"no space after the colon in AGI header line: {_excerpt(line)}")
    return name, ""


def _script_and_query(variables: Mapping[str, str]) -> tuple[str, str]:
    raw = variables.get("agi_network_script")
    if raw is None:
        request = variables.get("agi_request", "")
        _, scheme_sep, rest = request.partition("://")
        location = rest if scheme_sep else request
        raw = location.partition("/")[2]  # drop host[:port]
    path, _, query = raw.partition("?")
    return path.strip("/"), query


def _header_args(variables: Mapping[str, str]) -> tuple[str, ...]:
    numbered: list[tuple[int, str]] = []
    for name, value in variables.items():
        match = _ARG_NAME.fullmatch(name)
        if match:
            numbered.append((int(match.group(1)), value))
    return tuple(value for _, value in sorted(numbered))


def _make_header(variables: dict[str, str]) -> Header:
    frozen = MappingProxyType(variables)
    script, query = _script_and_query(frozen)
    return Header(variables=frozen, script=script, query=query, args=_header_args(frozen))


def _parse_fields(text: str) -> Mapping[str, str]:
    pairs = (item.partition("=") for item in _FIELD_BOUNDARY.split(text))
    return MappingProxyType({key: value for key, _, value in pairs})


def _parse_result_text(code: int, text: str, raw: str) -> Reply:
    match = _RESULT.fullmatch(text)
    if match is None:
        raise RemoteProtocolError(f"AGI reply without a result: {_excerpt(raw)}")
    result, tail = match.group(1), match.group(2) or ""
    data: str | None = None
    extra: Mapping[str, str] = _EMPTY
    if only := _PAREN_ONLY.fullmatch(tail):
        data = only.group(1)
    elif then := _PAREN_THEN_FIELDS.fullmatch(tail):
        data, extra = then.group(1), _parse_fields(then.group(2))
    elif _FIELDS.fullmatch(tail):
        extra = _parse_fields(tail)
    elif tail:
        data = tail
    endpos_text = extra.get("endpos", "")
    endpos = int(endpos_text) if _INTEGER.fullmatch(endpos_text) else None
    return Reply(code=code, result=result, data=data, endpos=endpos, extra=extra, raw=raw)


def _parse_reply_line(line: str) -> tuple[int, bool, str]:
    """(code, starts a block, text) of a reply line."""
    match = _REPLY_LINE.fullmatch(line)
    if match is None:
        raise RemoteProtocolError(f"not an AGI reply: {_excerpt(line)}")
    return int(match.group(1)), match.group(2) == "-", match.group(3) or ""


def _make_reply(code: int, text: str, raw: str) -> Reply:
    if code == 200 or text.startswith("result="):
        return _parse_result_text(code, text, raw)
    return Reply(code=code, data=text, raw=raw)


def _block_end(code: int, line: str) -> str | None:
    """The usage text left on the line if it ends a ``NNN-`` block, else None."""
    if line.startswith(f"{code} "):
        return ""
    marker = f"{code}{USAGE_END}"
    if line.endswith(marker):
        return line[: -len(marker)]
    return None


def _excerpt(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:60] + "...")


# ---------------------------------------------------------------------------------------------------
# State rules: the only place that knows what may happen when
# ---------------------------------------------------------------------------------------------------
#
#   HEADER          header lines accumulate; the blank line emits Header           -> IDLE
#   IDLE            send_command()                                                -> AWAITING_REPLY
#   AWAITING_REPLY  a final reply (code >= 200) emits Reply                       -> IDLE
#                   a 1xx reply emits Reply and keeps waiting
#                   "NNN-" starts a usage block                                   -> IN_REPLY_BLOCK
#   IN_REPLY_BLOCK  lines accumulate; the end line emits one Reply                -> IDLE
#   IDLE, AWAITING  "HANGUP" emits Hangup and changes nothing (the outstanding command is still
#                   answered); any other line in IDLE is an unsolicited reply: an error
#   any             EOF before the first byte, or at a line boundary in IDLE or AWAITING_REPLY,
#                   emits ConnectionClosed                                        -> CLOSED
#                   (Asterisk closes while a command is outstanding when the caller hangs up
#                   with AGIEXITONHANGUP; the transport knows whether it was waiting)
#                   any other EOF (mid-line, mid-header, mid-block) is a RemoteProtocolError
#   any             a RemoteProtocolError                                         -> ERROR, sticky
#
# Only one command is ever outstanding: FastAGI has no pipelining. Bounds: one line <= max_line
# bytes; a header <= max_header_lines lines; unconsumed input, and the lines of the header or
# usage block being assembled, each <= max_buffer bytes. A transport that feeds data only after
# NeedData never holds more than max_line + one read.


class ConnectionState(Enum):
    """Where the conversation is (see the state rules in the module source)."""

    HEADER = "header"
    IDLE = "idle"
    AWAITING_REPLY = "awaiting-reply"
    IN_REPLY_BLOCK = "in-reply-block"
    CLOSED = "closed"
    ERROR = "error"


class AgiConnection:
    """The server side of one FastAGI conversation, as a state machine.

    Keyword arguments bound what a peer can make it hold: ``max_line`` bytes per line,
    ``max_header_lines`` header lines, ``max_buffer`` bytes of unconsumed input or of one event
    being assembled.
    """

    def __init__(self, *, max_line: int = 8192, max_header_lines: int = 256, max_buffer: int = 65536) -> None:
        if max_line < 1 or max_header_lines < 1 or max_buffer < max_line:
            raise ValueError("bounds must be positive and max_buffer >= max_line")
        self.max_line: Final = max_line
        self.max_header_lines: Final = max_header_lines
        self.max_buffer: Final = max_buffer
        self.header: Header | None = None
        """The header, once it has been emitted."""
        self.decoding_errors = 0
        """Lines that held invalid UTF-8 (decoded with U+FFFD replacements)."""
        self._state = ConnectionState.HEADER
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer known to hold no LF
        self._eof = False
        self._received_any = False
        self._error: RemoteProtocolError | None = None
        self._variables: dict[str, str] = {}
        self._event_bytes = 0  # raw bytes of the header or usage block being assembled
        self._block_code = 0
        self._block_lines: list[str] = []

    # -- public API ------------------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """The current state."""
        return self._state

    @property
    def awaiting_reply(self) -> bool:
        """Whether a command is outstanding."""
        return self._state in (ConnectionState.AWAITING_REPLY, ConnectionState.IN_REPLY_BLOCK)

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the peer; ``b""`` means the peer closed (EOF).

        Raises RemoteProtocolError when unconsumed input would exceed ``max_buffer``, and
        LocalProtocolError for data after EOF.
        """
        if self._eof:
            if data:
                raise LocalProtocolError("data received after EOF")
            return
        if not data:
            self._eof = True
            return
        self._received_any = True
        if len(self._buffer) + len(data) > self.max_buffer:
            self._fail(RemoteProtocolError(f"more than {self.max_buffer} bytes of unconsumed input"))
        self._buffer += data

    def next_event(self) -> Event:
        """The next event, NeedData, or ConnectionClosed. Raises RemoteProtocolError on a violation
        (and again on every later call)."""
        if self._error is not None:
            raise RemoteProtocolError(str(self._error))
        if self._state is ConnectionState.CLOSED:
            return _CLOSED
        try:
            return self._next_event()
        except RemoteProtocolError as error:
            self._fail(error)

    def send_command(self, command: str, *args: str | int) -> bytes:
        """The bytes to write for one command; it becomes the outstanding command.

        Raises LocalProtocolError unless the header has been received and no command is
        outstanding, ValueError for a command that cannot be sent (see :func:`format_command`).
        """
        if self._state is not ConnectionState.IDLE:
            raise LocalProtocolError(f"cannot send a command in state {self._state.value}")
        encoded = format_command(command, *args)
        self._state = ConnectionState.AWAITING_REPLY
        return encoded

    # -- events ----------------------------------------------------------------------------------

    def _fail(self, error: RemoteProtocolError) -> NoReturn:
        self._state = ConnectionState.ERROR
        self._error = error
        raise error

    def _next_event(self) -> Event:
        if self._state is ConnectionState.HEADER and not self._variables:
            header = self._whole_header()
            if header is not None:
                return header
        # Each pass consumes one buffered line, so this ends: with an event, NeedData or an error.
        while (line := self._take_line()) is not None:
            event = self._on_line(*line)
            if event is not None:
                return event
        return self._on_no_line()

    def _on_line(self, line: str, size: int) -> Event | None:
        state = self._state
        if state is ConnectionState.HEADER:
            return self._on_header_line(line, size)
        if state is ConnectionState.IN_REPLY_BLOCK:
            return self._on_block_line(line, size)
        if line == HANGUP_LINE:
            return Hangup()
        if state is ConnectionState.IDLE:
            raise RemoteProtocolError(f"unsolicited AGI reply: {_excerpt(line)}")
        return self._on_reply_line(line, size)

    def _on_no_line(self) -> Event:
        if not self._eof:
            return _NEED_DATA
        if self._buffer:
            raise RemoteProtocolError("connection closed in the middle of a line")
        if self._state is ConnectionState.HEADER and self._received_any:
            raise RemoteProtocolError("connection closed in the middle of the AGI header")
        if self._state is ConnectionState.IN_REPLY_BLOCK:
            raise RemoteProtocolError("connection closed in the middle of a multi-line reply")
        self._state = ConnectionState.CLOSED
        return _CLOSED

    def _on_header_line(self, line: str, size: int) -> Header | None:
        if not line:
            if not self._variables:
                raise RemoteProtocolError("empty AGI header")
            self.header = _make_header(self._variables)
            self._variables = {}
            self._state = ConnectionState.IDLE
            return self.header
        if len(self._variables) >= self.max_header_lines:
            raise RemoteProtocolError(f"AGI header longer than {self.max_header_lines} lines")
        self._count_event_bytes(size)
        name, value = _parse_header_line(line)
        if name in self._variables:
            raise RemoteProtocolError(f"AGI header repeats {name}")
        self._variables[name] = value
        return None

    def _on_reply_line(self, line: str, size: int) -> Reply | None:
        code, starts_block, text = _parse_reply_line(line)
        if starts_block:
            self._state = ConnectionState.IN_REPLY_BLOCK
            self._block_code = code
            self._block_lines = []
            self._event_bytes = 0
            self._add_block_line(line, size)
            return None
        if code >= 200:
            self._state = ConnectionState.IDLE
        return _make_reply(code, text, line)

    def _on_block_line(self, line: str, size: int) -> Reply | None:
        self._add_block_line(line, size)
        left = _block_end(self._block_code, line)
        if left is None:
            return None
        first, *usage = self._block_lines
        body = [first[4:], *usage[:-1]]
        if left:
            body.append(left)
        reply = Reply(code=self._block_code, data="\n".join(body), raw="\n".join(self._block_lines))
        self._block_lines = []
        self._state = ConnectionState.IDLE
        return reply

    def _add_block_line(self, line: str, size: int) -> None:
        self._count_event_bytes(size)
        self._block_lines.append(line)

    def _count_event_bytes(self, size: int) -> None:
        self._event_bytes += size
        if self._event_bytes > self.max_buffer:
            raise RemoteProtocolError(f"AGI header or reply larger than {self.max_buffer} bytes")

    def _whole_header(self) -> Header | None:
        """Fast path: a complete, well-formed header already buffered, parsed in one pass.

        Only for input the line-by-line rules accept unchanged (LF line ends, ASCII, no NUL,
        within the bounds, valid names, no repeats); for anything else it returns None and
        consumes nothing, and the line-by-line path gives the verdict, errors included.
        """
        buffer = self._buffer
        end = buffer.find(b"\n\n")
        if end < 0 or end + 2 > self.max_buffer:
            return None
        block = bytes(buffer[:end])
        if b"\r" in block or b"\x00" in block or not block.isascii():
            return None
        lines = block.decode("ascii").split("\n")
        if len(lines) > self.max_header_lines:
            return None
        variables: dict[str, str] = {}
        max_line = self.max_line
        for line in lines:
            name, colon, value = line.partition(": ")
            if not colon or len(line) > max_line or name in variables or not _HEADER_NAME.fullmatch(name):
                if not (line.endswith(":") and _HEADER_NAME.fullmatch(line[:-1]) and line[:-1] not in variables):
                    return None
                name, value = line[:-1], ""  # "name:" with nothing after: an empty value
                if len(line) > max_line:
                    return None
            variables[name] = value
        del buffer[: end + 2]
        self._scanned = 0
        self.header = _make_header(variables)
        self._state = ConnectionState.IDLE
        return self.header

    # -- lines -----------------------------------------------------------------------------------

    def _take_line(self) -> tuple[str, int] | None:
        """The next complete line (decoded, without its line break) and its raw size, or None."""
        end = self._buffer.find(b"\n", self._scanned)
        if end < 0:
            self._scanned = len(self._buffer)
            if self._scanned > self.max_line + 1:  # + 1: the CR of a CRLF may still come
                raise RemoteProtocolError(f"AGI line longer than {self.max_line} bytes")
            return None
        raw = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        self._scanned = 0
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) > self.max_line:
            raise RemoteProtocolError(f"AGI line longer than {self.max_line} bytes")
        if b"\x00" in raw:
            raise RemoteProtocolError("NUL byte in an AGI line")
        return self._decode(raw), end + 1

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.decoding_errors += 1
            return raw.decode("utf-8", errors="replace")
