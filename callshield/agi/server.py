"""The asyncio FastAGI server: Asterisk connects for each call, callshield answers in variables.

The conversation rules live in the sans-I/O codec (:mod:`callshield.agi.protocol`); this module only
moves bytes, keeps time and talks to the decision engine. The dialplan side is contract 1 of
``DESIGN.md``: ``AGI(agi://HOST:4573/inbound)`` before the call is routed and
``AGI(agi://HOST:4573/hangup,${CALLSHIELD_ID},${DIALSTATUS},${CDR(billsec)},${HANGUPCAUSE},${CALLSHIELD_SCREEN})``
in a hangup handler.

Scripts (the path of the AGI URL, query string ignored, case-insensitive):

- ``inbound``: a :class:`~callshield.verdict.Call` from the header, ``engine.decide()``, then one
  ``SET VARIABLE`` at a time (AGI has no pipelining) for CALLSHIELD_ID, _SCORE, _REASON, _CAUSE and
  last CALLSHIELD_ACTION, then close. ACTION goes last because it is the commit: the dialplan acts
  on it alone, so an exchange cut short leaves either no action (the dialplan connects) or an
  action whose cause, reason and id are already in place.
- ``hangup``: arguments (decision id, DIALSTATUS, billsec, HANGUPCAUSE) become a
  :class:`~callshield.verdict.CallOutcome` for ``engine.feedback()``; no commands are sent. Junk
  fields are tolerated (billsec 0, cause None) and counted. A fifth argument, CALLSHIELD_SCREEN,
  brings the result of a challenge the dialplan ran to ``engine.screened()``.

Screening: for a ``screen`` verdict, when the engine's ``screening`` settings say so, the session
runs the challenge of :mod:`callshield.screening` after the variables are set (ANSWER, STREAM FILE
with every key as escape digit, WAIT FOR DIGIT), reports the result to ``engine.screened()``, and
sets CALLSHIELD_SCREEN and CALLSHIELD_ACTION (connect or block) again.
- anything else: logged (once per name) and counted, and answered CALLSHIELD_REASON=unknown-script,
  CALLSHIELD_ACTION=connect: the call connects as it would anyway (fail open), and a typo in the
  dialplan shows on the Asterisk side too instead of passing silently as AGISTATUS=SUCCESS.

Time bounds (:class:`AgiServerSettings`): the header must arrive within ``header_timeout``; every
reply within ``command_timeout``; the whole inbound exchange (decision and variables) within
``decision_timeout``. When that expires callshield lets the outstanding command finish (still
within its command_timeout) and then sets CALLSHIELD_REASON=timeout, CALLSHIELD_ACTION=connect,
unless the caller is gone. A peer that stops answering is dropped command_timeout after the last
command; one that answers slowly gets the connect after decision_timeout plus three replies. When
Asterisk reports ``HANGUP`` the session stops after the outstanding reply; as CALLSHIELD_ID is set
first it is usually in place for the hangup feedback.

Transport: each connection is an :class:`asyncio.Protocol` driven by callbacks and timer handles
(no task or stream per call: they cost several times the decision itself); only the screening
challenge runs as a coroutine.

Size bounds: the codec bounds lines, header lines and buffered bytes. Beyond ``max_sessions``
concurrent sessions a new connection is closed at once: Asterisk sees no variables and the
dialplan connects the call (fail open) rather than queueing it.
A failure in one session is logged and counted and never reaches the others.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final, cast

from callshield.adapter import DecisionEngine, report_screen
from callshield.agi.protocol import (
    AgiConnection,
    Hangup,
    Header,
    NeedData,
    RemoteProtocolError,
    Reply,
)
from callshield.agi.translate import (
    VALUE_LIMIT,
    call_from_header,
    mset_argument,
    outcome_from_args,
    screen_from_args,
    trunk_from_channel,
    verdict_variables,
)
from callshield.agi.translate import fail_open_variables as _fail_open_variables
from callshield.config import ScreeningConfig
from callshield.screening import KEYS, Challenge, Finished, Play, challenge_rng, key_from_result
from callshield.verdict import Action, Call, ScreenResult, Verdict

__all__ = [
    "HANGUP_SCRIPT",
    "INBOUND_SCRIPT",
    "AgiServer",
    "AgiServerSettings",
    "AgiServerStats",
    "DecisionEngine",
    "call_from_header",
    "outcome_from_args",
    "run_server",
    "screen_from_args",
    "trunk_from_channel",
    "verdict_variables",
]

logger = logging.getLogger(__name__)

INBOUND_SCRIPT: Final = "inbound"
HANGUP_SCRIPT: Final = "hangup"
CLOSE_TIMEOUT: Final = 1.0
"""Seconds a closing connection may take to flush before it is aborted."""
UNKNOWN_SCRIPTS_LOGGED: Final = 100
"""Distinct unknown script names logged at WARNING; later ones only at DEBUG."""
MSET_MISSING: Final = "-2"
"""EXEC's result when the application does not exist."""
SOUND_LIMIT: Final = 30.0
"""Seconds one prompt sound of the screening challenge may play before the peer counts as stuck."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgiServerSettings:
    """Where the server listens and the bounds it enforces (times in seconds)."""

    host: str = "127.0.0.1"
    port: int = 4573
    max_line: int = 8192
    """Longest line accepted from Asterisk, in bytes."""
    max_header_lines: int = 256
    max_buffer: int = 65536
    """Most bytes of unconsumed input, or of one header or reply, held per session."""
    header_timeout: float = 2.0
    command_timeout: float = 2.0
    """How long to wait for the reply to one command."""
    decision_timeout: float = 0.3
    """Budget for the whole inbound exchange; past it the call is connected (reason ``timeout``)."""
    max_sessions: int = 10000
    cause_default: int = 21
    """Q.850 cause used when a verdict carries none in 1..127 (21: call rejected)."""
    mset: bool = True
    """Set a verdict's variables with one ``EXEC MSet`` instead of one SET VARIABLE each."""

    def __post_init__(self) -> None:
        for name in ("max_line", "max_header_lines", "max_buffer", "max_sessions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("header_timeout", "command_timeout", "decision_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.max_buffer < self.max_line:
            raise ValueError("max_buffer must be at least max_line")
        if not 1 <= self.cause_default <= 127:
            raise ValueError("cause_default must be a Q.850 cause (1..127)")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be 0..65535")


@dataclass(slots=True)
class AgiServerStats:
    """Counters since the server was created."""

    sessions_active: int = 0
    sessions_total: int = 0
    sessions_rejected: int = 0
    """Connections closed at once because max_sessions were active (or the server was closing)."""
    decisions: int = 0
    decision_timeouts: int = 0
    """Inbound exchanges answered ``connect``/``timeout`` because decision_timeout expired."""
    engine_errors: int = 0
    """decide() or feedback() raised (the call was connected with reason ``error``)."""
    feedbacks: int = 0
    feedback_junk: int = 0
    """Hangup feedback with a malformed billsec or cause (tolerated)."""
    feedback_without_id: int = 0
    """Hangup feedback without a decision id (the inbound AGI had not set one)."""
    unknown_scripts: int = 0
    challenges: int = 0
    """Screening challenges run in a session."""
    screen_passed: int = 0
    screen_failed: int = 0
    screen_timeout: int = 0
    """Challenges nobody answered in time, or whose caller hung up first."""
    hangups: int = 0
    """HANGUP lines: the caller hung up while callshield was answering."""
    refused_commands: int = 0
    """Replies other than 200 (510, 511, 520, ...)."""
    protocol_errors: int = 0
    timeouts: int = 0
    """Sessions ended because the header or a reply did not arrive in time."""
    errors: int = 0
    """Sessions ended by an unexpected exception (logged with its traceback)."""


# ---------------------------------------------------------------------------------------------------
# One session
# ---------------------------------------------------------------------------------------------------

_HEADER, _VARIABLES, _FAIL_OPEN, _CHALLENGE, _DONE = "header", "variables", "fail-open", "challenge", "done"
"""Session phases: waiting for the header; setting the verdict; setting connect/timeout after the
decision budget expired; running the screening challenge (a coroutine); closing."""

Variables = Sequence[tuple[str, str]]


def _nothing() -> None:
    pass


class _Session(asyncio.Protocol):
    """One FastAGI connection, from the header to the close, driven by callbacks.

    The usual exchange (header, decision, five SET VARIABLEs, close) runs entirely in protocol
    callbacks and timer handles: no task, no stream, no future per command. That is most of the
    server's cost per call (a stream-based session used ~4x the CPU of the decision). Only the
    screening challenge, a long conversation, runs as a coroutine, fed replies through a future.

    Invariants: at most one command is outstanding (AGI has no pipelining); ``_timer`` is the
    one deadline that ends the session (header, or the outstanding command's reply); the decision
    budget has its own ``_budget`` handle and only ever switches the rest of the exchange to
    connect/timeout, after the outstanding reply.
    """

    def __init__(self, server: AgiServer) -> None:
        self._server = server
        self._engine = server.engine  # a config reload swaps it for sessions that start later
        settings = server.settings
        self._settings = settings
        self._stats = server._stats
        self._conn = AgiConnection(
            max_line=settings.max_line,
            max_header_lines=settings.max_header_lines,
            max_buffer=settings.max_buffer,
        )
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._phase = _HEADER
        self._accepted = False
        self._timer: asyncio.TimerHandle | None = None
        self._budget: asyncio.TimerHandle | None = None
        self._budget_spent = False
        self._pending: list[tuple[str, str]] = []
        self._mset: Variables | None = None  # the variables of an outstanding EXEC MSet
        self._then: Callable[[], None] = self._finish
        self._waiter: asyncio.Future[Reply | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.hangup_seen = False
        self._last_command = ""
        self.closed: asyncio.Future[None] = self._loop.create_future()

    # -- transport callbacks -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        server, stats = self._server, self._stats
        if server.closing or stats.sessions_active >= self._settings.max_sessions:
            stats.sessions_rejected += 1
            self._phase = _DONE
            self._transport.close()  # fail open: Asterisk gets no variables and the dialplan connects
            return
        self._accepted = True
        server._sessions.add(self)
        stats.sessions_active += 1
        stats.sessions_total += 1
        # No TCP_NODELAY call: asyncio's and uvloop's TCP transports set it on every socket already.
        self._arm(self._settings.header_timeout)

    def data_received(self, data: bytes) -> None:
        self._guarded(self._receive, data)

    def eof_received(self) -> bool:
        self._guarded(self._receive, b"")
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._phase = _DONE
        self._cancel_timers()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)  # the challenge sees the caller gone
        if self._accepted:
            self._accepted = False
            self._stats.sessions_active -= 1
            self._server._sessions.discard(self)
        if not self.closed.done():
            self.closed.set_result(None)
        # Break the reference cycles (transport <-> protocol, the continuation's closure) so that
        # reference counting frees the session now: left to the cyclic GC, thousands of dead
        # sessions made its full collections stall the loop for 100+ ms.
        self._transport = None
        self._then = _nothing
        self._pending = []
        self._mset = None

    # -- events ------------------------------------------------------------------------------------

    def _guarded(self, handler: Callable[[bytes], None], data: bytes) -> None:
        """Run a callback; whatever goes wrong ends this session only, counted and logged."""
        try:
            handler(data)
        except RemoteProtocolError as error:
            self._stats.protocol_errors += 1
            logger.info("FastAGI protocol error from %s: %s", self._peer(), error)
            self._abort()
        except Exception:
            self._stats.errors += 1
            logger.exception("FastAGI session from %s failed", self._peer())
            self._abort()

    def _receive(self, data: bytes) -> None:
        if self._phase == _DONE:
            return
        self._conn.receive_data(data)
        while self._phase != _DONE:
            event = self._conn.next_event()
            if isinstance(event, NeedData):
                return
            if isinstance(event, Header):
                self._on_header(event)
            elif isinstance(event, Hangup):
                self._note_hangup()
            elif isinstance(event, Reply):
                if event.code >= 200:
                    self._on_reply(event)
            else:  # ConnectionClosed: before a header it was a port probe
                self._on_reply(None)
                return

    def _on_header(self, header: Header) -> None:
        self._disarm()
        script = header.script.lower()
        if script == INBOUND_SCRIPT:
            self._inbound(header)
        elif script == HANGUP_SCRIPT:
            self._hangup(header)
            self._finish()
        else:
            self._unknown_script(header)

    def _on_reply(self, reply: Reply | None) -> None:
        """The final reply to the outstanding command, or None when Asterisk closed the connection."""
        self._disarm()
        if self._waiter is not None:
            if not self._waiter.done():
                self._waiter.set_result(reply)
            return
        if self._phase == _HEADER or not self._may_continue(reply):
            self._finish()
            return
        assert reply is not None
        if self._mset is not None:
            variables, self._mset = self._mset, None
            if reply.result == MSET_MISSING:  # no MSet application: one SET VARIABLE each
                self._pending = list(reversed(variables))
        if self._budget_spent and self._phase == _VARIABLES:
            self._phase = _FAIL_OPEN  # the decision budget expired: connect, after the outstanding reply
            self._set_variables(_fail_open_variables("timeout"), then=self._finish)
            return
        self._send_next()

    # -- scripts -----------------------------------------------------------------------------------

    def _inbound(self, header: Header) -> None:
        loop = self._loop
        deadline = loop.time() + self._settings.decision_timeout
        verdict = self._decide(call_from_header(header.variables))
        if loop.time() >= deadline:  # decide() is synchronous: it cannot be interrupted
            self._stats.decision_timeouts += 1
            self._phase = _FAIL_OPEN
            self._set_variables(_fail_open_variables("timeout"), then=self._finish)
            return
        self._phase = _VARIABLES
        self._budget = loop.call_at(deadline, self._on_budget_spent)
        self._set_variables(self._variables_for(verdict), then=lambda: self._after_verdict(verdict))

    def _after_verdict(self, verdict: Verdict | None) -> None:
        if self._budget is not None:
            self._budget.cancel()
            self._budget = None
        screening = self._engine.screening if verdict is not None and verdict.action is Action.SCREEN else None
        if verdict is None or screening is None:
            self._finish()
            return
        self._phase = _CHALLENGE
        self._task = self._loop.create_task(self._challenge_task(verdict, screening))

    def _hangup(self, header: Header) -> None:
        outcome, junk = outcome_from_args(header.args)
        if junk:
            self._stats.feedback_junk += 1
            logger.debug("hangup feedback with malformed fields: %r", header.args[:4])
        if outcome is None:
            self._stats.feedback_without_id += 1
            return
        try:
            screen = screen_from_args(header.args)
            if screen is not None:  # a challenge the dialplan ran (one the server ran is not counted twice)
                self._engine.screened(outcome.decision_id, screen)
            self._engine.feedback(outcome)
        except Exception:
            self._stats.engine_errors += 1
            logger.exception("engine.feedback() failed for decision %s", outcome.decision_id)
            return
        self._stats.feedbacks += 1

    def _unknown_script(self, header: Header) -> None:
        self._stats.unknown_scripts += 1
        script = header.script[:VALUE_LIMIT]
        unknown = self._server._unknown_scripts
        if script in unknown or len(unknown) >= UNKNOWN_SCRIPTS_LOGGED:
            logger.debug("unknown AGI script %r", script)
        else:
            unknown.add(script)
            logger.warning(
                "unknown AGI script %r (expected %r or %r); answering connect",
                script,
                INBOUND_SCRIPT,
                HANGUP_SCRIPT,
            )
        self._phase = _FAIL_OPEN
        self._set_variables(_fail_open_variables("unknown-script"), then=self._finish)

    # -- steps -------------------------------------------------------------------------------------

    def _decide(self, call: Call) -> Verdict | None:
        try:
            verdict = self._engine.decide(call)
        except Exception:
            self._stats.engine_errors += 1
            logger.exception("engine.decide() failed; connecting the call")
            return None
        self._stats.decisions += 1
        return verdict

    def _variables_for(self, verdict: Verdict | None) -> Variables:
        if verdict is None:
            return _fail_open_variables("error")
        return verdict_variables(verdict, cause_default=self._settings.cause_default)

    def _on_budget_spent(self) -> None:
        self._budget = None
        if self._phase == _VARIABLES:
            self._budget_spent = True
            self._stats.decision_timeouts += 1

    def _set_variables(self, variables: Variables, *, then: Callable[[], None]) -> None:
        """Set the variables, in one EXEC MSet or one SET VARIABLE at a time (a reply each); then
        ``then()``, unless the session ends first."""
        self._then = then
        argument = mset_argument(variables) if self._settings.mset else None
        if argument is None:
            self._pending = list(reversed(variables))
            self._send_next()
            return
        self._pending = []
        self._mset = variables
        self._send("EXEC", "MSet", argument, timeout=self._settings.command_timeout)

    def _send_next(self) -> None:
        if self._pending:
            name, value = self._pending.pop()
            self._send("SET VARIABLE", name, value, timeout=self._settings.command_timeout)
        else:
            self._then()

    def _may_continue(self, reply: Reply | None) -> bool:
        if reply is None:
            return False  # Asterisk closed the connection
        if not reply.ok:
            self._stats.refused_commands += 1
            level = logging.DEBUG if reply.code == 511 else logging.WARNING
            logger.log(level, "Asterisk answered %r with %r; session ends", self._last_command, reply.raw)
            return False
        return not self.hangup_seen

    def _note_hangup(self) -> None:
        if not self.hangup_seen:
            self.hangup_seen = True
            self._stats.hangups += 1

    # -- the screening challenge (a coroutine: a long conversation with many steps) ----------------

    async def _challenge_task(self, verdict: Verdict, screening: ScreeningConfig) -> None:
        try:
            await self._screen(verdict, screening)
        except TimeoutError:
            self._stats.timeouts += 1
            logger.info("FastAGI peer %s too slow during screening; closing", self._peer())
            self._abort()
            return
        except asyncio.CancelledError:
            self._abort()
            raise
        except Exception:
            self._stats.errors += 1
            logger.exception("screening challenge with %s failed", self._peer())
            self._abort()
            return
        self._finish()

    async def _screen(self, verdict: Verdict, screening: ScreeningConfig) -> None:
        """Run the challenge, tell the engine, then set CALLSHIELD_SCREEN and CALLSHIELD_ACTION again.

        CALLSHIELD_ACTION is ``screen`` while it runs: a session cut short leaves the call to the
        dialplan, which connects it (fail open) unless it runs its own challenge.
        """
        self._stats.challenges += 1
        challenge = Challenge.new(screening, self._server._rng)
        try:
            result = await self._run_challenge(challenge)
        except TimeoutError:
            report_screen(self._engine, self._stats, verdict.id, challenge.hung_up())
            raise  # the peer is stuck: the session ends as any other that times out
        report_screen(self._engine, self._stats, verdict.id, result)
        if self.hangup_seen:
            return
        action = Action.CONNECT if result is ScreenResult.PASSED else Action.BLOCK
        for name, value in (("CALLSHIELD_SCREEN", result.value), ("CALLSHIELD_ACTION", action.value)):
            reply = await self._command(self._settings.command_timeout, "SET VARIABLE", name, value)
            if not self._may_continue(reply):
                return  # (two variables after a long challenge: not worth an MSet)

    async def _run_challenge(self, challenge: Challenge) -> ScreenResult:
        command_timeout = self._settings.command_timeout
        reply = await self._command(command_timeout, "ANSWER")
        if not self._answered(reply):
            return challenge.hung_up()
        while not isinstance(step := challenge.next_step(), Finished):
            if isinstance(step, Play):
                reply = await self._command(SOUND_LIMIT + command_timeout, "STREAM FILE", step.sound, KEYS)
            else:
                reply = await self._command(step.timeout + command_timeout, "WAIT FOR DIGIT", int(step.timeout * 1000))
            if not self._answered(reply):
                return challenge.hung_up()
            assert reply is not None
            challenge.heard(key_from_result(reply.result))
        return step.result

    def _answered(self, reply: Reply | None) -> bool:
        """Whether a challenge step went through: not refused, no hangup, no ``result=-1`` (channel gone)."""
        return self._may_continue(reply) and reply is not None and not (reply.result or "").startswith("-")

    async def _command(self, timeout: float, command: str, *args: str | int) -> Reply | None:
        """Send one command and wait up to ``timeout`` s for its final reply; None when Asterisk closed."""
        if self._phase == _DONE:
            return None
        waiter: asyncio.Future[Reply | None] = self._loop.create_future()
        self._waiter = waiter
        try:
            self._send(command, *args, timeout=None)
            async with asyncio.timeout(timeout):
                return await waiter
        finally:
            self._waiter = None

    # -- I/O -----------------------------------------------------------------------------------------

    def _send(self, command: str, *args: str | int, timeout: float | None) -> None:
        """Write one command; with ``timeout``, the session ends unless its reply comes in time."""
        line = self._conn.send_command(command, *args)
        self._last_command = line.decode("utf-8").rstrip("\n")
        assert self._transport is not None
        self._transport.write(line)
        if timeout is not None:
            self._arm(timeout)

    def _arm(self, timeout: float) -> None:
        self._disarm()
        self._timer = self._loop.call_later(timeout, self._on_timeout)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _cancel_timers(self) -> None:
        self._disarm()
        if self._budget is not None:
            self._budget.cancel()
            self._budget = None

    def _on_timeout(self) -> None:
        self._timer = None
        if self._phase == _DONE:
            return
        self._stats.timeouts += 1
        logger.info("FastAGI peer %s too slow; closing", self._peer())
        self._abort()

    def _finish(self) -> None:
        """Close politely: flush what was written; abort if the peer does not take it in time."""
        if self._phase == _DONE:
            return
        self._phase = _DONE
        self._cancel_timers()
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.close()
            self._loop.call_later(CLOSE_TIMEOUT, self._abort_unless_closed)

    def _abort_unless_closed(self) -> None:
        if not self.closed.done() and self._transport is not None:
            self._transport.abort()

    def _abort(self) -> None:
        """Close at once, discarding unsent bytes (a broken or stuck peer)."""
        self._phase = _DONE
        self._cancel_timers()
        if self._transport is not None:
            self._transport.abort()

    def cancel(self) -> None:
        """End the session now (server shutdown after the grace period)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._abort()

    def _peer(self) -> str:
        return str(self._transport.get_extra_info("peername")) if self._transport is not None else "?"


# ---------------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------------


class AgiServer:
    """A FastAGI server answering every call with the verdict of ``engine``.

    Usage::

        server = AgiServer(engine, AgiServerSettings(port=0))
        await server.start()
        ...
        await server.close(grace=5.0)
    """

    def __init__(
        self,
        engine: DecisionEngine,
        settings: AgiServerSettings | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._engine = engine
        self._rng = rng if rng is not None else challenge_rng()
        self._settings = settings if settings is not None else AgiServerSettings()
        self._stats = AgiServerStats()
        self._server: asyncio.Server | None = None
        self._sessions: set[_Session] = set()
        self._unknown_scripts: set[str] = set()
        self._closing = False
        self._closed = asyncio.Event()

    @property
    def settings(self) -> AgiServerSettings:
        """The settings the server was created with."""
        return self._settings

    @property
    def engine(self) -> DecisionEngine:
        """The engine new sessions use."""
        return self._engine

    @property
    def closing(self) -> bool:
        """Whether close() has begun: new connections are refused."""
        return self._closing

    @property
    def stats(self) -> AgiServerStats:
        """A snapshot of the counters."""
        return dataclasses.replace(self._stats)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets (empty before start() and after close())."""
        if self._server is None:
            return ()
        return tuple(self._server.sockets)

    @property
    def port(self) -> int:
        """The TCP port listened on: the ephemeral one chosen when settings.port is 0."""
        for sock in self.sockets:
            return int(sock.getsockname()[1])
        raise RuntimeError("the server is not listening")

    def swap_engine(self, engine: DecisionEngine) -> None:
        """Use ``engine`` for every session that starts from now on (config reload).

        Sessions already running finish with the engine they started with.
        """
        self._engine = engine

    async def start(self) -> None:
        """Start listening on settings.host:settings.port."""
        if self._server is not None:
            raise RuntimeError("the server is already started")
        if self._closing:
            raise RuntimeError("the server is closed")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Session(self),
            self._settings.host,
            self._settings.port,
            backlog=min(self._settings.max_sessions, 4096),
        )
        logger.info("FastAGI listening on %s", ", ".join(str(s.getsockname()) for s in self.sockets))

    async def serve_forever(self) -> None:
        """Start if needed, then return once close() has completed."""
        if self._server is None and not self._closing:
            await self.start()
        await self._closed.wait()

    async def close(self, grace: float = 5.0) -> None:
        """Stop accepting, let running sessions finish for up to ``grace`` seconds, cancel the rest."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        try:
            if self._server is not None:
                self._server.close()
            await self._drain_sessions(grace)
            if self._server is not None:
                await self._server.wait_closed()
        finally:
            self._closed.set()

    async def __aenter__(self) -> AgiServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _drain_sessions(self, grace: float) -> None:
        pending = {session.closed for session in self._sessions}
        if pending:
            _, pending = await asyncio.wait(pending, timeout=max(0.0, grace))
        if pending:
            logger.info("ending %d FastAGI sessions still running after %.1f s", len(pending), grace)
            for session in list(self._sessions):
                session.cancel()
            await asyncio.wait(pending, timeout=CLOSE_TIMEOUT)


async def run_server(
    engine: DecisionEngine,
    settings: AgiServerSettings | None = None,
    *,
    stop: asyncio.Event,
    grace: float = 5.0,
) -> None:
    """Serve FastAGI until ``stop`` is set, then close gracefully within ``grace`` seconds."""
    server = AgiServer(engine, settings)
    await server.start()
    try:
        await stop.wait()
    finally:
        await server.close(grace)
