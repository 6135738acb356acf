"""The Stasis application's logic: events in, REST requests out, verdicts from the engine.

Per channel that enters the application with ``Stasis(callshield,inbound)``:

1. A :class:`~callshield.verdict.Call` from the channel (caller number and name, the DID from
   the second Stasis argument or ``dialplan.exten``, the trunk from the channel name, and the
   presentation read with one ``GET .../variable?variable=CALLERID(pres)`` when configured).
2. ``engine.decide()``, then ``POST .../variable`` one at a time for CALLSHIELD_ID, _SCORE, _REASON,
   _CAUSE and last CALLSHIELD_ACTION (:func:`~callshield.agi.server.verdict_variables`, the same
   values and order as the FastAGI server). ``decision_timeout`` bounds presentation, decision and
   variables; on expiry CALLSHIELD_REASON=timeout, CALLSHIELD_ACTION=connect and ``continue``.
3. ``connect``: ``POST .../continue``. ``block``: ``DELETE /channels/{id}?reason_code=<cause>`` (the
   variables are set first, so the hangup handler and the audit have CALLSHIELD_ID). ``screen`` with
   ``screening.in_session``: answer, run the :class:`~callshield.screening.Challenge` (``Play`` is a
   playback a key interrupts; ``Listen`` waits for a ``ChannelDtmfReceived``), tell
   ``engine.screened()``, set CALLSHIELD_SCREEN and CALLSHIELD_ACTION again, then continue or hang
   up with the cause. A caller who hangs up mid-challenge counts as ``Challenge.hung_up()``.

Other Stasis arguments are answered like the FastAGI server answers an unknown script:
CALLSHIELD_REASON=unknown-script, CALLSHIELD_ACTION=connect, ``continue`` (fail open).

Hangup feedback. Asterisk stops sending a channel's events at ``StasisEnd``, so the application
cannot see how a call it returned to the dialplan ends: those calls are reported by the dialplan's
hangup handler (FastAGI ``hangup``), as with ``CALLSHIELD_VIA=agi``. The application reports the
calls that end inside Stasis (blocked by it, failed screening, caller gone during the decision or
the challenge) ``feedback_delay`` seconds after ``StasisEnd``: no DIALSTATUS, billsec from the
answer (screening) to the end, the cause it hung up with or the caller's hangup cause when ARI
gave one. The hangup handler reports those calls too, with Asterisk's own HANGUPCAUSE and
CDR(billsec), usually within milliseconds: ``Firewall.feedback`` takes one outcome per decision id,
so the handler's report wins, the application's copy is dropped (counted ``feedback:duplicate``),
and an application running without a FastAGI listener still learns about the calls it ended.

Nothing a peer sends crashes the application: malformed events are counted and dropped, REST
failures end the channel's handling with a fail-open ``continue`` where still possible.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

import msgspec

from callshield.adapter import DecisionEngine, report_screen
from callshield.agi.translate import trunk_from_channel, verdict_variables
from callshield.ari._client import AriConnectionError, AriError, AriHttpError, AriResponse, ChannelGone
from callshield.ari._events import (
    Channel,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    ChannelStateChange,
    Event,
    EventError,
    PlaybackFinished,
    StasisEnd,
    StasisStart,
    decode_event,
    parse_timestamp,
)
from callshield.ari._requests import (
    AriRequest,
    answer,
    continue_in_dialplan,
    get_variable,
    hangup,
    play,
    set_variable,
    stop_playback,
)
from callshield.config import ScreeningConfig
from callshield.numbers import PRESENTATION_NAMES
from callshield.screening import KEYS, Challenge, Finished, Play, challenge_rng
from callshield.verdict import Action, Call, CallOutcome, ScreenResult, Verdict

__all__ = [
    "INBOUND_ARG",
    "AriApp",
    "AriAppSettings",
    "AriAppStats",
    "AriEngine",
    "AriRest",
    "call_from_channel",
    "presentation_from_name",
]

logger = logging.getLogger(__name__)

INBOUND_ARG: Final = "inbound"
"""The first ``Stasis()`` argument of an inbound call check."""
MALFORMED_LOGGED: Final = 20
"""Malformed events logged at WARNING; later ones only at DEBUG."""
INBOX_LIMIT: Final = 64
"""Signals (keys, playback ends) queued per channel; keys beyond it are dropped."""
RESCUE_ATTEMPTS: Final = 5
"""Tries of the fail-open ``continue`` after a REST failure, with growing pauses."""


AriEngine = DecisionEngine
"""What the application needs from the decision core (the adapters' shared protocol)."""


class AriRest(Protocol):
    """Sends REST requests (:class:`~callshield.ari.AriClient`, or a fake in tests)."""

    async def send(self, request: AriRequest) -> AriResponse:
        """Send one request; raise ChannelGone, AriHttpError or AriConnectionError on failure."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class AriAppSettings:
    """Bounds and options of the application (times in seconds)."""

    decision_timeout: float = 0.3
    """Budget for presentation, decision and variables; past it the call is connected (reason ``timeout``)."""
    read_presentation: bool = True
    """Read ``CALLERID(pres)`` (one extra GET) so withheld numbers are recognised."""
    max_channels: int = 10000
    """Channels handled at once; beyond it a new channel is only continued (fail open)."""
    sound_limit: float = 30.0
    """Longest one prompt sound may play before it is stopped."""
    cause_default: int = 21
    """Q.850 cause used when a verdict carries none in 1..127."""
    feedback_delay: float = 2.0
    """Seconds after StasisEnd before the application reports a call it ended (the dialplan's hangup
    handler, which knows more, normally reports first)."""

    def __post_init__(self) -> None:
        if not self.decision_timeout > 0 or not self.sound_limit > 0:
            raise ValueError("decision_timeout and sound_limit must be positive")
        if self.feedback_delay < 0:
            raise ValueError("feedback_delay must not be negative")
        if self.max_channels < 1:
            raise ValueError("max_channels must be at least 1")
        if not 1 <= self.cause_default <= 127:
            raise ValueError("cause_default must be a Q.850 cause (1..127)")


@dataclass(slots=True)
class AriAppStats:
    """Counters since the application was created."""

    events: int = 0
    malformed_events: int = 0
    """Messages that were not usable ARI events (dropped)."""
    stray_events: int = 0
    """Events for channels the application does not handle, or duplicates of a StasisStart."""
    channels_active: int = 0
    channels_total: int = 0
    channels_rejected: int = 0
    """Channels only continued because max_channels were active."""
    decisions: int = 0
    decision_timeouts: int = 0
    engine_errors: int = 0
    unknown_args: int = 0
    continued: int = 0
    blocked: int = 0
    caller_gone: int = 0
    """Channels that hung up before callshield was done with them."""
    challenges: int = 0
    screen_passed: int = 0
    screen_failed: int = 0
    screen_timeout: int = 0
    dropped_keys: int = 0
    feedbacks: int = 0
    rest_errors: int = 0
    """REST requests answered with an unexpected error status, or not answered."""
    errors: int = 0
    """Channel handlers ended by an unexpected exception (logged with its traceback)."""


def presentation_from_name(name: str) -> int | None:
    """The numeric presentation of a ``CALLERID(pres)`` value (``prohib_not_screened`` -> 32), else None."""
    return PRESENTATION_NAMES.get(name.strip().lower())


def call_from_channel(channel: Channel, args: Sequence[str], *, presentation: int | None = None) -> Call:
    """The :class:`Call` a channel in ``Stasis(app,inbound[,DID])`` describes; strings stay raw.

    The DID is the second Stasis argument when given, else the channel's extension (the sample
    dialplan runs Stasis inside ``Gosub(callshield-check,${EXTEN},1)``).
    """
    did = args[1].strip() if len(args) > 1 else ""
    return Call(
        caller=channel.caller.number,
        callee=did or channel.dialplan.exten,
        caller_name=channel.caller.name,
        presentation=presentation,
        trunk=trunk_from_channel(channel.name),
        channel=channel.id,
    )


class _Gone(Exception):
    """The channel hung up or left the application."""


_Signal = tuple[Literal["key", "played", "gone"], str]


class _ChannelState:
    """What the application knows about one channel between StasisStart and StasisEnd."""

    __slots__ = (
        "answered_at",
        "continuing",
        "decision_id",
        "ended",
        "fed_back",
        "gone",
        "hangup_cause",
        "id",
        "inbox",
        "requested_cause",
        "task",
    )

    def __init__(self, channel_id: str) -> None:
        self.id = channel_id
        self.inbox: asyncio.Queue[_Signal] = asyncio.Queue(INBOX_LIMIT)
        self.gone = False
        """A hangup was requested or the channel left the application."""
        self.ended: float | None = None
        """Asterisk's time of StasisEnd (0.0 when it had no usable timestamp)."""
        self.answered_at: float | None = None
        self.decision_id: str | None = None
        self.continuing = False
        """``continue`` was sent: the dialplan (its hangup handler) owns the feedback."""
        self.requested_cause: int | None = None
        """The cause the application hung the channel up with."""
        self.hangup_cause: int | None = None
        """The cause of a hangup requested by someone else (the caller)."""
        self.fed_back = False
        self.task: asyncio.Task[None] | None = None

    def signal(self, kind: Literal["key", "played", "gone"], value: str = "") -> bool:
        """Queue a signal for the handler; False when the inbox is full (gone is also a flag)."""
        if kind == "gone":
            self.gone = True
        try:
            self.inbox.put_nowait((kind, value))
        except asyncio.QueueFull:
            return False
        return True


class AriApp:
    """The callshield Stasis application. Feed it every websocket message with :meth:`handle_message`.

    Usage::

        app = AriApp(firewall, AriClient(session, "http://127.0.0.1:8088"))
        async for message in websocket:
            app.handle_message(message.data)
        await app.close(grace=5.0)
    """

    def __init__(
        self,
        engine: AriEngine,
        rest: AriRest,
        settings: AriAppSettings | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._engine = engine
        self._rest = rest
        self._settings = settings if settings is not None else AriAppSettings()
        self._rng = rng if rng is not None else challenge_rng()
        self._stats = AriAppStats()
        self._channels: dict[str, _ChannelState] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending_feedback: dict[_ChannelState, asyncio.TimerHandle] = {}
        self._playback_ids = itertools.count(1)
        self._playback_prefix = f"callshield-{random.getrandbits(32):08x}-"

    @property
    def stats(self) -> AriAppStats:
        """A snapshot of the counters."""
        return dataclasses.replace(self._stats)

    @property
    def settings(self) -> AriAppSettings:
        """The settings the application was created with."""
        return self._settings

    def swap_engine(self, engine: AriEngine) -> None:
        """Use ``engine`` for channels that enter from now on."""
        self._engine = engine

    @property
    def active_channels(self) -> int:
        """Channels between StasisStart and StasisEnd."""
        return len(self._channels)

    def connection_lost(self) -> int:
        """Forget channels whose handling is over: their StasisEnd may have been lost with the websocket.

        Channels still being handled keep going (their requests do not need the websocket). Returns
        how many were forgotten.
        """
        done = [cid for cid, state in self._channels.items() if state.task is not None and state.task.done()]
        for channel_id in done:
            del self._channels[channel_id]
        self._stats.channels_active = len(self._channels)
        return len(done)

    # -- events ----------------------------------------------------------------------------------

    def handle_message(self, data: str | bytes) -> None:
        """Decode and handle one websocket message; a malformed one is counted and dropped."""
        try:
            event = decode_event(data)
        except EventError as exc:
            self._stats.malformed_events += 1
            level = logging.WARNING if self._stats.malformed_events <= MALFORMED_LOGGED else logging.DEBUG
            logger.log(level, "dropping a malformed ARI event: %s", exc)
            return
        try:
            self.handle(event)
        except Exception:  # a bug must not take the connection (and every other call) down
            self._stats.errors += 1
            logger.exception("handling an ARI %s event failed", type(event).__name__)

    def handle(self, event: Event) -> None:
        """Handle one decoded event (synchronously; channel work runs in tasks)."""
        self._stats.events += 1
        if isinstance(event, StasisStart):
            self._start(event)
        elif isinstance(event, StasisEnd):
            self._end(event)
        elif isinstance(event, ChannelDtmfReceived):
            state = self._known(event.channel.id)
            valid = len(event.digit) == 1 and event.digit in KEYS
            if state is not None and valid and not state.signal("key", event.digit):
                self._stats.dropped_keys += 1
        elif isinstance(event, PlaybackFinished):
            target = event.playback.target_uri
            state = self._known(target.removeprefix("channel:")) if target.startswith("channel:") else None
            if state is not None:
                state.signal("played", event.playback.id)
        elif isinstance(event, ChannelHangupRequest):
            state = self._known(event.channel.id)
            if state is not None:
                if not event.soft and event.cause:
                    state.hangup_cause = event.cause
                state.signal("gone")
        elif isinstance(event, ChannelStateChange):
            state = self._known(event.channel.id)
            if state is not None and event.channel.state == "Up" and state.answered_at is None:
                state.answered_at = parse_timestamp(event.timestamp)
        elif isinstance(event, ChannelDestroyed):
            state = self._known(event.channel.id)
            if state is not None:
                state.hangup_cause = state.hangup_cause or event.cause or None
                state.signal("gone")
        # Other events (ChannelVarset, PlaybackStarted, Dial, ...) carry nothing the application needs.

    def _known(self, channel_id: str) -> _ChannelState | None:
        state = self._channels.get(channel_id)
        if state is None:
            self._stats.stray_events += 1
        return state

    def _start(self, event: StasisStart) -> None:
        stats = self._stats
        channel_id = event.channel.id
        if not channel_id or channel_id in self._channels:
            stats.stray_events += 1
            return
        state = _ChannelState(channel_id)
        if len(self._channels) >= self._settings.max_channels:
            stats.channels_rejected += 1
            handler = self._rescue(state)  # continue at once: fail open rather than queue the call
        else:
            handler = self._serve(state, event)
        self._channels[channel_id] = state
        stats.channels_total += 1
        stats.channels_active += 1
        task = asyncio.create_task(handler, name=f"ari-channel-{channel_id}")
        state.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _end(self, event: StasisEnd) -> None:
        state = self._channels.pop(event.channel.id, None)
        if state is None:
            self._stats.stray_events += 1
            return
        self._stats.channels_active -= 1
        state.ended = parse_timestamp(event.timestamp) or 0.0
        state.signal("gone")
        if not state.continuing:
            self._schedule_feedback(state)

    def _schedule_feedback(self, state: _ChannelState) -> None:
        if state.fed_back or state.decision_id is None or state in self._pending_feedback:
            return
        loop = asyncio.get_running_loop()
        self._pending_feedback[state] = loop.call_later(self._settings.feedback_delay, self._feedback, state)

    def _feedback(self, state: _ChannelState) -> None:
        """Report a call that ended inside the application (once; see the module docstring)."""
        self._pending_feedback.pop(state, None)
        if state.fed_back or state.decision_id is None or state.ended is None:
            return
        state.fed_back = True
        billsec = 0.0
        if state.answered_at is not None and state.ended:
            billsec = max(0.0, state.ended - state.answered_at)
        cause = state.requested_cause if state.requested_cause is not None else state.hangup_cause
        outcome = CallOutcome(decision_id=state.decision_id, dialstatus="", billsec=billsec, hangup_cause=cause)
        try:
            self._engine.feedback(outcome)
        except Exception:
            self._stats.engine_errors += 1
            logger.exception("engine.feedback() failed for decision %s", state.decision_id)
            return
        self._stats.feedbacks += 1

    # -- one channel -----------------------------------------------------------------------------

    async def _serve(self, state: _ChannelState, event: StasisStart) -> None:
        try:
            await self._handle_channel(state, event)
        except _Gone:
            self._stats.caller_gone += 1
        except AriError as exc:
            self._stats.rest_errors += 1
            logger.warning("ARI request failed for channel %s: %s; continuing it", state.id, exc)
            await self._rescue(state)
        except Exception:
            self._stats.errors += 1
            logger.exception("handling channel %s failed; continuing it", state.id)
            await self._rescue(state)

    async def _handle_channel(self, state: _ChannelState, event: StasisStart) -> None:
        args = event.args
        if not args or args[0].strip().lower() != INBOUND_ARG:
            self._stats.unknown_args += 1
            logger.debug("channel %s entered with arguments %r; connecting it", state.id, list(args[:4]))
            await self._set_variables(state, _fail_open_variables("unknown-script"))
            await self._continue(state)
            return
        if state.gone:
            raise _Gone
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.decision_timeout
        verdict: Verdict | None = None
        try:
            async with asyncio.timeout_at(deadline):
                presentation = await self._presentation(state) if self._settings.read_presentation else None
                verdict = self._decide(state, call_from_channel(event.channel, args, presentation=presentation))
                if loop.time() >= deadline:  # decide() is synchronous: it cannot be interrupted
                    raise TimeoutError
                await self._set_variables(state, self._variables_for(verdict))
        except TimeoutError:
            self._stats.decision_timeouts += 1
            await self._set_variables(state, _fail_open_variables("timeout"))
            await self._continue(state)
            return
        if verdict is None:
            await self._continue(state)  # fail open after an engine error
        elif verdict.action is Action.BLOCK:
            await self._hangup(state, self._cause(verdict))
        elif verdict.action is Action.SCREEN and (screening := self._engine.screening) is not None:
            await self._screen(state, verdict, screening)
        else:
            await self._continue(state)

    def _decide(self, state: _ChannelState, call: Call) -> Verdict | None:
        try:
            verdict = self._engine.decide(call)
        except Exception:
            self._stats.engine_errors += 1
            logger.exception("engine.decide() failed; connecting the call")
            return None
        self._stats.decisions += 1
        state.decision_id = verdict.id
        return verdict

    def _variables_for(self, verdict: Verdict | None) -> tuple[tuple[str, str], ...]:
        if verdict is None:
            return _fail_open_variables("error")
        return verdict_variables(verdict, cause_default=self._settings.cause_default)

    def _cause(self, verdict: Verdict) -> int:
        return verdict.cause if 1 <= verdict.cause <= 127 else self._settings.cause_default

    async def _presentation(self, state: _ChannelState) -> int | None:
        """The caller's presentation, or None when it cannot be read (never fatal)."""
        try:
            response = await self._send(state, get_variable(state.id, "CALLERID(pres)"))
            value = msgspec.json.decode(response.body, type=_VariableValue).value
        except (AriHttpError, AriConnectionError, msgspec.DecodeError) as exc:
            if isinstance(exc, ChannelGone):
                raise _Gone from None
            logger.debug("cannot read CALLERID(pres) of %s: %s", state.id, exc)
            return None
        return presentation_from_name(value)

    # -- screening -------------------------------------------------------------------------------

    async def _screen(self, state: _ChannelState, verdict: Verdict, screening: ScreeningConfig) -> None:
        self._stats.challenges += 1
        challenge = Challenge.new(screening, self._rng)
        try:
            result = await self._run_challenge(state, challenge)
        except _Gone:
            report_screen(self._engine, self._stats, verdict.id, challenge.hung_up())
            raise
        report_screen(self._engine, self._stats, verdict.id, result)
        action = Action.CONNECT if result is ScreenResult.PASSED else Action.BLOCK
        await self._set_variables(state, (("CALLSHIELD_SCREEN", result.value), ("CALLSHIELD_ACTION", action.value)))
        if action is Action.CONNECT:
            await self._continue(state)
        else:
            await self._hangup(state, self._cause(verdict))

    async def _run_challenge(self, state: _ChannelState, challenge: Challenge) -> ScreenResult:
        await self._send(state, answer(state.id))
        while not isinstance(step := challenge.next_step(), Finished):
            if isinstance(step, Play):
                key = await self._play(state, step.sound)
            else:
                key = await self._wait_key(state, step.timeout)
            challenge.heard(key)
        return step.result

    async def _play(self, state: _ChannelState, sound: str) -> str | None:
        """Play one sound; the key pressed during it (the playback is then stopped), else None."""
        key = self._queued_key(state)
        if key is not None:
            return key  # pressed between two steps: the next sound is interrupted before it starts
        playback_id = f"{self._playback_prefix}{next(self._playback_ids)}"
        try:
            await self._send(state, play(state.id, playback_id, f"sound:{sound}"))
        except ChannelGone:
            raise
        except AriHttpError as exc:  # e.g. a missing sound: go on with the challenge
            self._stats.rest_errors += 1
            logger.warning("cannot play %r on %s: %s", sound, state.id, exc)
            return None
        deadline = asyncio.get_running_loop().time() + self._settings.sound_limit
        while True:
            signal = await self._next_signal(state, deadline)
            if signal is None or signal[0] == "key":
                await self._stop_playback(state, playback_id)
                return None if signal is None else signal[1]
            if signal == ("played", playback_id):
                return None

    async def _wait_key(self, state: _ChannelState, timeout: float) -> str | None:
        """The first key pressed within ``timeout`` seconds, else None."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            signal = await self._next_signal(state, deadline)
            if signal is None:
                return None
            if signal[0] == "key":
                return signal[1]

    def _queued_key(self, state: _ChannelState) -> str | None:
        while True:
            try:
                kind, value = state.inbox.get_nowait()
            except asyncio.QueueEmpty:
                return None
            if kind == "gone":
                raise _Gone
            if kind == "key":
                return value

    async def _next_signal(self, state: _ChannelState, deadline: float) -> _Signal | None:
        """The next signal before ``deadline`` (None on timeout); raise _Gone when the channel is."""
        if state.gone:
            raise _Gone
        try:
            async with asyncio.timeout_at(deadline):
                signal = await state.inbox.get()
        except TimeoutError:
            return None
        if signal[0] == "gone":
            raise _Gone
        return signal

    async def _stop_playback(self, state: _ChannelState, playback_id: str) -> None:
        with contextlib.suppress(AriHttpError):  # 404: it had just finished
            await self._send(state, stop_playback(playback_id))

    # -- requests --------------------------------------------------------------------------------

    async def _send(self, state: _ChannelState, request: AriRequest) -> AriResponse:
        try:
            return await self._rest.send(request)
        except ChannelGone:
            state.gone = True
            raise _Gone from None

    async def _set_variables(self, state: _ChannelState, variables: Sequence[tuple[str, str]]) -> None:
        for name, value in variables:
            await self._send(state, set_variable(state.id, name, value))

    async def _continue(self, state: _ChannelState) -> None:
        state.continuing = True  # before sending: StasisEnd may arrive before the response
        try:
            await self._send(state, continue_in_dialplan(state.id))
        except BaseException:
            state.continuing = False
            if state.ended is not None:  # StasisEnd already came (caller gone): it skipped the report
                self._schedule_feedback(state)
            raise
        self._stats.continued += 1

    async def _hangup(self, state: _ChannelState, cause: int) -> None:
        state.requested_cause = cause
        await self._send(state, hangup(state.id, cause))
        self._stats.blocked += 1

    async def _rescue(self, state: _ChannelState) -> None:
        """Fail open after a failure: ``continue`` the channel, retrying while Asterisk is unreachable."""
        for attempt in range(RESCUE_ATTEMPTS):
            if state.ended is not None:
                return
            try:
                await self._continue(state)
            except _Gone:
                return
            except AriConnectionError:
                await asyncio.sleep(0.2 * 2**attempt)
                continue
            except AriHttpError as exc:
                logger.warning("cannot continue channel %s: %s", state.id, exc)
                return
            return
        logger.warning("gave up continuing channel %s: Asterisk unreachable", state.id)

    # -- shutdown --------------------------------------------------------------------------------

    async def close(self, grace: float = 5.0) -> None:
        """Let running channel handlers finish for up to ``grace`` seconds, then cancel the rest."""
        pending = set(self._tasks)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=max(0.0, grace))
        for task in pending:
            task.cancel()
        if pending:
            logger.info("cancelled %d ARI channel handlers still running after %.1f s", len(pending), grace)
            await asyncio.gather(*pending, return_exceptions=True)
        for state, handle in list(self._pending_feedback.items()):  # report now rather than never
            handle.cancel()
            self._feedback(state)


class _VariableValue(msgspec.Struct, frozen=True):
    value: str


def _fail_open_variables(reason: str) -> tuple[tuple[str, str], ...]:
    return (("CALLSHIELD_REASON", reason), ("CALLSHIELD_ACTION", Action.CONNECT.value))
