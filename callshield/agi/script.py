"""``callshield-agi``: the classic AGI script, one process per call, speaking AGI on stdin/stdout (pyst2).

For PBXs that run ``AGI(callshield-agi,...)`` from their agi-bin (small PBXs, FreePBX) instead of
talking to ``callshield serve`` over FastAGI. Same verdicts, same channel variables, same SQLite
database: the script opens the node database as an external writer (like the CLI), so a
``callshield serve`` running at the same time keeps working and picks its writes up.

Dialplan (``asterisk_conf/extensions_callshield.conf`` with ``CALLSHIELD_VIA=script``)::

    AGI(callshield-agi,inbound)
    AGI(callshield-agi,hangup,${CALLSHIELD_ID},${DIALSTATUS},${CDR(billsec)},${HANGUPCAUSE})

Command line: ``callshield-agi [--config PATH] [--db PATH] MODE [ARG...]``; the config also comes
from ``$CALLSHIELD_CONFIG`` and the database from ``$CALLSHIELD_DB`` (else ``storage.path``).

Modes (the first argument, like the FastAGI path):

- ``inbound``: decide the call of the AGI header and set CALLSHIELD_ID, _SCORE, _REASON, _CAUSE and
  last CALLSHIELD_ACTION; commit the decision to the database before exiting, so the hangup
  feedback finds it. A ``screen`` verdict with ``screening.in_session`` runs the challenge here:
  answer, play the prompt and the digit, listen, then set CALLSHIELD_SCREEN and CALLSHIELD_ACTION
  again (connect or block) and record the result.
- ``hangup``: the arguments (decision id, DIALSTATUS, billsec, HANGUPCAUSE[, CALLSHIELD_SCREEN])
  become the hangup feedback; no command is sent.
- anything else: CALLSHIELD_REASON=unknown-script, CALLSHIELD_ACTION=connect.

Fail open: any error is written to stderr (Asterisk logs it) as one line and, unless a verdict was
already given, answered CALLSHIELD_REASON=error, CALLSHIELD_ACTION=connect; the exit status is
always 0 and nothing but AGI commands ever reaches stdout. Time: everything from the start of
:func:`main` to the verdict (config, database open, decision) is bounded by
``agi.decision_timeout`` with an interval timer; past it the call gets CALLSHIELD_REASON=timeout,
CALLSHIELD_ACTION=connect. Interpreter start and imports come before and cannot be bounded
(see ``bench/RESULTS.md``: they are most of the cost of this mode).

``CALLSHIELD_AGI_TIMINGS=1`` writes one ``callshield-agi timings {...}`` line (JSON, milliseconds per
phase) to stderr at exit; ``CALLSHIELD_AGI_DEBUG=1`` writes tracebacks instead of one-line errors.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
import sqlite3
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Final, TextIO

from asterisk import agi as pyst2  # untyped: used only through AgiChannel below

from callshield import db
from callshield.agi.translate import call_from_header, outcome_from_args, screen_from_args, verdict_variables
from callshield.config import AgiConfig, Config, load_config
from callshield.engine import Firewall
from callshield.screening import KEYS, Challenge, Finished, Play, challenge_rng
from callshield.verdict import Action, ScreenResult, Verdict

__all__ = [
    "DB_VARIABLE",
    "HANGUP_MODE",
    "INBOUND_MODE",
    "AgiChannel",
    "ChannelGone",
    "Options",
    "main",
    "parse_args",
]

INBOUND_MODE: Final = "inbound"
HANGUP_MODE: Final = "hangup"
DB_VARIABLE: Final = "CALLSHIELD_DB"
"""Environment variable naming the database file (overrides ``storage.path``; ``--db`` overrides it)."""
TIMINGS_VARIABLE: Final = "CALLSHIELD_AGI_TIMINGS"
DEBUG_VARIABLE: Final = "CALLSHIELD_AGI_DEBUG"
PROG: Final = "callshield-agi"
USAGE: Final = f"usage: {PROG} [--config PATH] [--db PATH] {{{INBOUND_MODE}|{HANGUP_MODE}}} [ARG...]"
_UNSAFE: Final = str.maketrans("", "", '"\\')
DEFAULT_DECISION_TIMEOUT: Final = float(AgiConfig().decision_timeout)
"""The decision budget until the config file is read."""
_CHANNEL_UP: Final = 6
"""``CHANNEL STATUS`` result of a channel that is up."""

log = logging.getLogger(PROG)


# ---------------------------------------------------------------------------------------------------
# pyst2, wrapped narrowly (it has no types)
# ---------------------------------------------------------------------------------------------------


class ChannelGone(Exception):
    """The caller hung up (or Asterisk closed the AGI pipe): no command can be carried out any more."""


class _Discard(io.TextIOBase):
    """A text sink for pyst2's debug chatter (it writes every header line and command to stderr)."""

    def write(self, text: str) -> int:
        return len(text)


class AgiChannel:
    """The AGI conversation with Asterisk on stdin/stdout, through ``pyst2``'s :class:`asterisk.agi.AGI`.

    Constructing it reads the ``agi_*`` header. Every method raises :class:`ChannelGone` when the
    channel has hung up, and ``pyst2``'s own errors (``AGIError``) for anything else.
    """

    def __init__(self, stdin: TextIO, stdout: TextIO) -> None:
        self._stdin = _Replies(stdin)
        self._agi: Any = pyst2.AGI(stdin=self._stdin, stdout=stdout, stderr=_Discard())
        self._stdin.header_read = True

    @property
    def env(self) -> dict[str, str]:
        """The ``agi_*`` header, as ``{"agi_callerid": "+1...", ...}``."""
        return {str(k): str(v) for k, v in self._agi.env.items()}

    @property
    def got_sighup(self) -> bool:
        """Asterisk sent SIGHUP: the caller hung up."""
        return bool(self._agi._got_sighup)

    def set_variable(self, name: str, value: str) -> None:
        """``SET VARIABLE name "value"`` (quotes and backslashes removed from the value)."""
        self._call(self._agi.set_variable, name, value.translate(_UNSAFE))

    def answer(self) -> None:
        self._call(self._agi.answer)

    def verbose(self, message: str, level: int = 1) -> None:
        """``VERBOSE "message" level``: a line in Asterisk's log."""
        self._call(self._agi.verbose, " ".join(message.translate(_UNSAFE).split())[:400], level)

    def stream_file(self, sound: str, escape_digits: str = "") -> str | None:
        """Play ``sound``; the key that interrupted it, or None."""
        return _key(self._call(self._agi.stream_file, sound, escape_digits=escape_digits))

    def wait_for_digit(self, timeout_ms: int) -> str | None:
        """Wait up to ``timeout_ms`` for a key; the key, or None."""
        return _key(self._call(self._agi.wait_for_digit, timeout_ms))

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except pyst2.AGIHangup as exc:  # SIGHUP, EPIPE, or "(hangup)" in the reply
            raise ChannelGone(str(exc)) from None
        except _PipeClosed:
            raise ChannelGone("Asterisk closed the AGI pipe") from None
        except (pyst2.AGIAppError, pyst2.AGIUnknownError) as exc:
            # result=-1 (what a hung-up channel answers, but also a missing sound file), 511 on a dead
            # channel, or EOF: tell a hangup from a failure on a live channel by asking.
            if self.got_sighup or not self._is_up():
                raise ChannelGone(str(exc)) from None
            raise

    def _is_up(self) -> bool:
        try:
            result = self._agi.execute("CHANNEL STATUS")["result"][0]
        except (pyst2.AGIException, _PipeClosed, OSError):
            return False
        return str(result) == str(_CHANNEL_UP)


class _PipeClosed(Exception):
    """End of input where Asterisk owes a reply (pyst2 would fail with a ValueError on the empty line)."""


class _Replies:
    """stdin for pyst2: the header ends at a blank line or at end of input; after it, end of input
    means Asterisk is gone."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.header_read = False

    def readline(self) -> str:
        line = self._stream.readline()
        if not line and self.header_read:
            raise _PipeClosed
        return line


def _key(value: object) -> str | None:
    text = str(value or "")
    return text if len(text) == 1 and text in KEYS else None


# ---------------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    """The command line: options, the mode (first argument) and the mode's arguments."""

    mode: str
    args: tuple[str, ...] = ()
    config: str | None = None
    database: str | None = None
    help: bool = False


def parse_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Options:
    """``[--config PATH] [--db PATH] MODE [ARG...]``; options only before the mode.

    Mode arguments are taken verbatim (empty ones included: ``hangup,ID,,0,21`` has no DIALSTATUS).
    Raises ValueError for an option without its value or an unknown option.
    """
    env = os.environ if environ is None else environ
    config: str | None = None
    database = env.get(DB_VARIABLE) or None
    index = 0
    while index < len(argv) and argv[index].startswith("-"):
        arg = argv[index]
        if arg in ("-h", "--help"):
            return Options(mode="", help=True)
        name, has_value, value = arg.partition("=")
        if name not in ("--config", "--db"):
            raise ValueError(f"unknown option {arg!r}")
        if not has_value:
            index += 1
            if index >= len(argv):
                raise ValueError(f"{name} needs a value")
            value = argv[index]
        if name == "--config":
            config = value
        else:
            database = value
        index += 1
    mode = argv[index].strip().lower() if index < len(argv) else ""
    return Options(mode=mode, args=tuple(argv[index + 1 :]), config=config, database=database)


# ---------------------------------------------------------------------------------------------------
# Time bound
# ---------------------------------------------------------------------------------------------------


class DecisionTimeout(BaseException):
    """``agi.decision_timeout`` expired (a BaseException, so no ``except Exception`` swallows it)."""


class _Deadline:
    """An ITIMER_REAL timer that raises :class:`DecisionTimeout` in the main thread when it expires.

    The budget counts from ``origin`` (a ``time.perf_counter()`` value: the start of :func:`main`). A
    signal interrupts Python code at once, but a C call in progress (a SQLite busy wait) finishes
    first: :meth:`check` tells a deadline that passed while the timer could not fire.
    """

    def __init__(self, origin: float) -> None:
        self._origin = origin
        self._end = origin
        self._previous: Any = None
        self._armed = False

    def set(self, seconds: float) -> None:
        """Expire ``seconds`` after the origin (at once if that is past)."""
        self._end = self._origin + seconds
        if not self._armed:
            self._previous = signal.signal(signal.SIGALRM, self._expired)
            self._armed = True
        signal.setitimer(signal.ITIMER_REAL, max(self._end - time.perf_counter(), 1e-6))

    def check(self) -> None:
        if time.perf_counter() >= self._end:
            raise DecisionTimeout

    def disarm(self) -> None:
        if self._armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous)
            self._armed = False

    @staticmethod
    def _expired(signum: int, frame: FrameType | None) -> None:
        raise DecisionTimeout


# ---------------------------------------------------------------------------------------------------
# The script
# ---------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Run:
    """What one run has done so far: enough to fail open correctly and to report timings."""

    options: Options
    channel: AgiChannel | None = None
    committed: bool = False
    """CALLSHIELD_ACTION holds a verdict: a later error must not turn it into ``connect``."""
    hung_up: bool = False
    error: str = ""
    """The error being answered with a fail open, for the Asterisk log (AGI ``VERBOSE``)."""
    marks: list[tuple[str, float]] = field(default_factory=list)

    def mark(self, phase: str) -> None:
        self.marks.append((phase, time.perf_counter()))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one AGI script invocation (the ``callshield-agi`` console script); always returns 0."""
    started = time.perf_counter()
    logging.basicConfig(level=logging.WARNING, format=f"{PROG}: %(levelname)s: %(message)s", stream=sys.stderr)
    try:
        options = parse_args(sys.argv[1:] if argv is None else argv)
    except ValueError as exc:
        options = Options(mode="")
        error = _error(f"{exc}; {USAGE}")
    else:
        error = ""
    if options.help:
        print(__doc__.split("\n\n")[0] + "\n\n" + USAGE)
        return 0
    run = _Run(options, error=error)
    run.marks.append(("start", started))
    stdin, stdout = _stdio()
    try:
        _serve(run, stdin, stdout)
    except Exception as exc:
        run.error = _report(exc)
        _fail_open(run, "error")
    except DecisionTimeout:
        run.error = _error(f"no verdict within agi.decision_timeout ({options.mode}); connecting the call")
        _fail_open(run, "timeout")
    finally:
        run.mark("end")
        _finish(run, stdout)
    if argv is None:
        # The console script, one process per call: the database is closed and the output flushed,
        # so skip the interpreter's teardown of every imported module (~15 ms, a tenth of a call).
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(0)
    return 0


def _serve(run: _Run, stdin: TextIO, stdout: TextIO) -> None:
    mode = run.options.mode
    if mode == INBOUND_MODE:
        _inbound(run, stdin, stdout)
        return
    run.channel = AgiChannel(stdin, stdout)
    run.mark("header")
    if mode == HANGUP_MODE:
        _hangup(run)
        return
    run.error = _error(
        f"unknown mode {mode[:64]!r} (expected {INBOUND_MODE!r} or {HANGUP_MODE!r}); connecting the call"
    )
    _fail_open(run, "unknown-script")


def _inbound(run: _Run, stdin: TextIO, stdout: TextIO) -> None:
    # The timer covers the header, the config, the database and the decision (the built-in default
    # until the config is read); with the default 300 ms the verdict comes well before it unless
    # something is stuck.
    deadline = _Deadline(run.marks[0][1])
    try:
        deadline.set(DEFAULT_DECISION_TIMEOUT)
        run.channel = channel = AgiChannel(stdin, stdout)
        run.mark("header")
        config = load_config(run.options.config)
        deadline.set(config.agi.decision_timeout)
        run.mark("config")
        firewall = Firewall.open(config, path=run.options.database, external_writer=True)
        run.mark("open")
        try:
            verdict = firewall.decide(call_from_header(channel.env))
            deadline.check()
        except BaseException:
            firewall.connection.close()
            raise
    finally:
        deadline.disarm()
    run.mark("decide")
    try:
        try:
            _give_verdict(run, channel, verdict, config)
        except ChannelGone:
            run.hung_up = True  # the decision is still recorded: the hangup feedback will come
        _commit(firewall)
        run.mark("flush")
        if verdict.action is Action.SCREEN and config.screening.in_session and not run.hung_up:
            _screen(run, channel, firewall, verdict, config)
    finally:
        firewall.connection.close()


def _give_verdict(run: _Run, channel: AgiChannel, verdict: Verdict, config: Config) -> None:
    for name, value in verdict_variables(verdict, cause_default=config.policy.block_cause):
        channel.set_variable(name, value)
    run.committed = True
    run.mark("variables")


def _screen(run: _Run, channel: AgiChannel, firewall: Firewall, verdict: Verdict, config: Config) -> None:
    """Run the challenge in this process; record the result; set CALLSHIELD_SCREEN and _ACTION again."""
    run.committed = False  # CALLSHIELD_ACTION=screen: an error from here on connects the call
    challenge = Challenge.new(config.screening, challenge_rng())
    try:
        channel.answer()
        while not isinstance(step := challenge.next_step(), Finished):
            if isinstance(step, Play):
                challenge.heard(channel.stream_file(step.sound, escape_digits=KEYS))
            else:
                challenge.heard(channel.wait_for_digit(int(step.timeout * 1000)))
        result = step.result
    except ChannelGone:
        run.hung_up = True
        result = challenge.hung_up()
    firewall.screened(verdict.id, result)
    if not run.hung_up:
        action = Action.CONNECT if result is ScreenResult.PASSED else Action.BLOCK
        try:
            channel.set_variable("CALLSHIELD_SCREEN", result.value)
            channel.set_variable("CALLSHIELD_ACTION", action.value)
        except ChannelGone:
            run.hung_up = True
    run.committed = True
    _commit(firewall)
    run.mark("screen")


def _hangup(run: _Run) -> None:
    outcome, junk = outcome_from_args(run.options.args)
    if junk:
        log.info("hangup feedback with malformed fields: %r", run.options.args[:4])
    if outcome is None:
        return  # no decision id: the inbound AGI had not set one
    config = load_config(run.options.config)
    run.mark("config")
    firewall = Firewall.open(config, path=run.options.database, external_writer=True)
    run.mark("open")
    try:
        screen = screen_from_args(run.options.args)
        if screen is not None:  # a challenge the dialplan ran
            firewall.screened(outcome.decision_id, screen)
        firewall.feedback(outcome)
        run.mark("feedback")
        _commit(firewall)
        run.mark("flush")
    finally:
        firewall.connection.close()


def _commit(firewall: Firewall) -> None:
    """Commit the buffered writes now, and this process's dialing-pattern window.

    ``flush()`` leaves pattern snapshots to the server for an external writer (a CLI has no call
    windows); this process does have one, for this caller, and the next call's process restores it:
    without it rate, fan-out and sweep patterns could never build up across script calls.
    """
    firewall.flush()
    statements = firewall.patterns.take_writes(firewall.clock.now())
    if len(statements) > 1:  # more than the expiry DELETE: a window changed
        try:
            db.apply(firewall.connection, statements)
        except sqlite3.Error as exc:
            log.warning("could not save the dialing-pattern window: %s", exc)


def _fail_open(run: _Run, reason: str) -> None:
    """Answer connect (with ``reason``) unless a verdict stands, the caller is gone, or this is no call."""
    if run.committed or run.hung_up or run.options.mode == HANGUP_MODE:
        return
    variables = (("CALLSHIELD_REASON", reason), ("CALLSHIELD_ACTION", Action.CONNECT.value))
    channel = run.channel
    try:
        if channel is None:
            # The header was not read (cut short): send the commands without waiting for replies;
            # Asterisk carries them out in order all the same.
            sys.stdout.write("".join(f'SET VARIABLE "{name}" "{value}"\n' for name, value in variables))
            sys.stdout.flush()
            return
        if run.error:  # Asterisk logs script stderr only on its console: say it in its log too
            channel.verbose(f"{PROG}: {run.error}")
        for name, value in variables:
            channel.set_variable(name, value)
    except ChannelGone:
        run.hung_up = True
    except Exception as exc:
        _report(exc)


# ---------------------------------------------------------------------------------------------------
# Process plumbing
# ---------------------------------------------------------------------------------------------------


def _stdio() -> tuple[TextIO, TextIO]:
    """stdin/stdout as UTF-8 text whatever the locale (Asterisk's environment may have none)."""
    for stream in (sys.stdin, sys.stdout):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(encoding="utf-8", errors="replace")
    return sys.stdin, sys.stdout


def _error(message: str) -> str:
    """Write ``callshield-agi: message`` to stderr; return the message."""
    sys.stderr.write(f"{PROG}: {message}\n")
    return message


def _report(exc: BaseException) -> str:
    """One line on stderr (and a traceback with CALLSHIELD_AGI_DEBUG=1); never anything on stdout."""
    if os.environ.get(DEBUG_VARIABLE) == "1":
        sys.stderr.write("".join(traceback.format_exception(exc)))
    where = ""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        where = f" at {os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"
    message = str(exc).replace("\n", " ")[:300]
    return _error(f"error: {type(exc).__name__}: {message}{where}; connecting the call (fail open)")


def _finish(run: _Run, stdout: TextIO) -> None:
    if os.environ.get(TIMINGS_VARIABLE) == "1":
        marks = run.marks
        phases = {name: round((t - marks[i][1]) * 1000, 3) for i, (name, t) in enumerate(marks[1:])}
        phases["total"] = round((marks[-1][1] - marks[0][1]) * 1000, 3)
        sys.stderr.write(f"{PROG} timings {json.dumps({'mode': run.options.mode, **phases})}\n")
    try:
        stdout.flush()
    except OSError:
        # Asterisk closed the pipe (hangup): make the interpreter's own flush at exit a no-op, so
        # that no "BrokenPipeError" noise is printed.
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stdout.fileno())
            os.close(devnull)


if __name__ == "__main__":  # pragma: no cover - the console script calls main()
    sys.exit(main())
