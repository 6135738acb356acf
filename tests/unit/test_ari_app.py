"""The Stasis application's logic against a fake ARI (REST recorded, events fed by hand)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from typing import Any

import pytest

from callshield.agi.server import verdict_variables
from callshield.ari import (
    AriApp,
    AriAppSettings,
    AriConnectionError,
    AriRequest,
    AriResponse,
    ChannelGone,
    decode_event,
)
from callshield.engine import Firewall
from callshield.verdict import Action, Call, CallOutcome, ScreenResult, Verdict
from tests.conftest import FirewallFactory

CHANNEL = "1795845352.0"
DID = "+18005550100"
SCREEN_CONFIG = """
[policy]
screen_at = 40
block_at = 90

[screening]
prompt = ["silence/1", "vm-press"]
tries = 1
digit_timeout = "500ms"

[[rules]]
action = "deny"
pattern = "+1415555*"
"""
CLEAN = "+16175550123"
DENIED = "+14155550111"
SCREENED = "+15555550100"  # not a number in the NANP: "invalid", screened with the config above


def event(kind: str, channel: str = CHANNEL, **fields: Any) -> bytes:
    body: dict[str, Any] = {"type": kind, "timestamp": "2026-11-28T05:55:52.478+0000", **fields}
    if channel:
        body["channel"] = {
            "id": channel,
            "name": "PJSIP/callshield-trunk-00000000",
            "state": fields.pop("state", "Ring"),
            "caller": {"name": "", "number": fields.pop("caller", CLEAN)},
            "dialplan": {"context": "callshield-check", "exten": DID, "priority": 27},
        }
        body.pop("caller", None)
        body.pop("state", None)
    return json.dumps(body).encode()


def stasis_start(caller: str, *args: str, channel: str = CHANNEL) -> bytes:
    return event("StasisStart", channel, caller=caller, args=list(args or ("inbound",)))


class FakeRest:
    """Records requests; answers 204 (200 for GET), or what ``reply`` says."""

    def __init__(self) -> None:
        self.sent: list[AriRequest] = []
        self.reply: Callable[[AriRequest], object] | None = None
        self.presentation = "allowed_not_screened"

    async def send(self, request: AriRequest) -> AriResponse:
        self.sent.append(request)
        if self.reply is not None:
            result = self.reply(request)
            if asyncio.iscoroutine(result):
                result = await result
            if isinstance(result, BaseException):
                raise result
            if isinstance(result, AriResponse):
                return result
        if request.method == "GET":
            return AriResponse(200, json.dumps({"value": self.presentation}).encode())
        return AriResponse(201 if "/play/" in request.template else 204)

    def lines(self) -> list[str]:
        out = []
        for r in self.sent:
            query = "&".join(f"{k}={v}" for k, v in r.query)
            out.append(f"{r.method} {r.path}" + (f"?{query}" if query else ""))
        return out

    def variables(self) -> list[tuple[str, str]]:
        posts = [dict(r.query) for r in self.sent if r.template.endswith("/variable") and r.method == "POST"]
        return [(q["variable"], q["value"]) for q in posts]


async def settle(app: AriApp, rounds: int = 50) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)
    await app.close(grace=5.0)


def make_app(fw: Firewall, rest: FakeRest, **settings: Any) -> AriApp:
    options: dict[str, Any] = {"feedback_delay": 0.0, **settings}
    return AriApp(fw, rest, AriAppSettings(**options), rng=random.Random(7))


def decisions(fw: Firewall) -> list[Any]:
    fw.flush()
    return fw.audit.recent(10)


async def test_clean_caller_gets_the_verdict_variables_then_continue(make_firewall: FirewallFactory) -> None:
    fw = make_firewall(SCREEN_CONFIG)
    rest = FakeRest()
    app = make_app(fw, rest)
    app.handle_message(stasis_start(CLEAN))
    await settle(app)
    (record,) = decisions(fw)
    assert record.action == "connect"
    assert rest.lines()[0] == f"GET /channels/{CHANNEL}/variable?variable=CALLERID(pres)"
    names = [name for name, _ in rest.variables()]
    assert names == ["CALLSHIELD_ID", "CALLSHIELD_SCORE", "CALLSHIELD_REASON", "CALLSHIELD_CAUSE", "CALLSHIELD_ACTION"]
    assert rest.variables()[0] == ("CALLSHIELD_ID", record.id)
    assert rest.variables()[-1] == ("CALLSHIELD_ACTION", "connect")
    assert rest.lines()[-1] == f"POST /channels/{CHANNEL}/continue"
    # The call went back to the dialplan: its hangup handler reports it, the application does not.
    app.handle_message(event("StasisEnd"))
    await asyncio.sleep(0.01)
    assert fw.counters["feedback"] == 0
    assert app.stats.continued == 1 and app.stats.channels_active == 0


async def test_same_variables_as_the_fastagi_server(make_firewall: FirewallFactory) -> None:
    fw = make_firewall(SCREEN_CONFIG)
    rest = FakeRest()
    app = make_app(fw, rest)
    app.handle_message(stasis_start(DENIED))
    await settle(app)
    (record,) = decisions(fw)
    verdict = Verdict(
        id=record.id,
        action=Action(record.action),
        decided=Action(record.decided),
        score=record.score,
        reason=record.reason,
        reasons=(),
        cause=21,
        mode=fw.config.policy.mode,
        caller=record.caller,
        callee=record.callee,
        decided_at=record.ts,
    )
    assert rest.variables() == list(verdict_variables(verdict))


async def test_withheld_presentation_reaches_the_engine(make_firewall: FirewallFactory) -> None:
    fw = make_firewall("")
    seen: list[Call] = []
    decide = fw.decide

    def spy(call: Call) -> Verdict:
        seen.append(call)
        return decide(call)

    fw.decide = spy  # type: ignore[method-assign,assignment]
    rest = FakeRest()
    rest.presentation = "prohib_not_screened"
    app = make_app(fw, rest)
    app.handle_message(stasis_start(CLEAN))
    await settle(app)
    assert [(c.caller, c.callee, c.trunk, c.presentation) for c in seen] == [(CLEAN, DID, "callshield-trunk", 32)]


async def test_block_sets_the_variables_then_deletes_with_the_cause(make_firewall: FirewallFactory) -> None:
    fw = make_firewall(SCREEN_CONFIG)
    rest = FakeRest()
    app = make_app(fw, rest)
    app.handle_message(stasis_start(DENIED))
    await settle(app)
    (record,) = decisions(fw)
    assert record.action == "block" and record.reason == "denylist:prefix"
    assert rest.variables()[-1] == ("CALLSHIELD_ACTION", "block")
    assert rest.lines()[-1] == f"DELETE /channels/{CHANNEL}?reason_code=21"
    # The channel never returns to the dialplan: the application reports it after StasisEnd ...
    app.handle_message(event("ChannelHangupRequest", cause=32, soft=True))
    app.handle_message(event("StasisEnd"))
    await asyncio.sleep(0.01)
    fw.flush()
    stored = fw.audit.get(record.id)
    assert stored is not None and (stored.dialstatus, stored.billsec, stored.hangup_cause) == ("", 0.0, 21)
    assert app.stats.feedbacks == 1
    # ... and the dialplan's hangup handler's report of the same call is not counted again.
    assert fw.feedback(CallOutcome(decision_id=record.id, dialstatus="", billsec=0, hangup_cause=21)) is False
    assert (fw.counters["feedback"], fw.counters["feedback:duplicate"]) == (1, 1)


async def test_hangup_handler_first_makes_the_application_report_a_duplicate(make_firewall: FirewallFactory) -> None:
    fw = make_firewall(SCREEN_CONFIG)
    rest = FakeRest()
    app = make_app(fw, rest, feedback_delay=0.05)
    app.handle_message(stasis_start(DENIED))
    await settle(app)
    (record,) = decisions(fw)
    app.handle_message(event("StasisEnd"))
    assert fw.feedback(CallOutcome(decision_id=record.id, dialstatus="", billsec=0, hangup_cause=21))
    await asyncio.sleep(0.1)
    assert (fw.counters["feedback"], fw.counters["feedback:duplicate"]) == (1, 1)


async def test_decision_timeout_connects_with_reason_timeout(make_firewall: FirewallFactory) -> None:
    fw = make_firewall(SCREEN_CONFIG)
    rest = FakeRest()

    async def slow_first_variable(request: AriRequest) -> None:
        if request.method == "POST" and dict(request.query).get("variable") == "CALLSHIELD_SCORE":
            await asyncio.sleep(1.0)

    rest.reply = slow_first_variable
    app = make_app(fw, rest, decision_timeout=0.05)
    app.handle_message(stasis_start(DENIED))
    await settle(app)
    assert rest.variables()[-2:] == [("CALLSHIELD_REASON", "timeout"), ("CALLSHIELD_ACTION", "connect")]
    assert rest.lines()[-1] == f"POST /channels/{CHANNEL}/continue"
    assert app.stats.decision_timeouts == 1
    assert not any(r.method == "DELETE" for r in rest.sent)


def _screen_rest(app_ref: list[AriApp], *, press: str | None, on: str = "digits/", channel: str = CHANNEL) -> FakeRest:
    """A fake whose playbacks finish at once; ``press`` is sent as DTMF when a sound starting ``on`` plays."""
    rest = FakeRest()

    def reply(request: AriRequest) -> None:
        app = app_ref[0]
        loop = asyncio.get_running_loop()
        if request.template.endswith("/answer"):
            loop.call_soon(app.handle_message, event("ChannelStateChange", channel, state="Up"))
        if "/play/" in request.template:
            playback_id = dict(request.path_params)["playbackId"]
            media = dict(request.query)["media"]
            if press is not None and media.startswith(f"sound:{on}"):
                loop.call_soon(app.handle_message, event("ChannelDtmfReceived", channel, digit=press, duration_ms=100))
            else:
                finished = {"id": playback_id, "target_uri": f"channel:{channel}", "state": "done"}
                loop.call_soon(app.handle_message, event("PlaybackFinished", channel="", playback=finished))

    rest.reply = reply
    return rest


async def test_screened_caller_pressing_the_digit_is_connected(make_firewall: FirewallFactory) -> None:
    fw = make_firewall(SCREEN_CONFIG)
    digit = str(random.Random(7).randint(1, 9))
    ref: list[AriApp] = []
    rest = _screen_rest(ref, press=digit)
    app = make_app(fw, rest)
    ref.append(app)
    app.handle_message(stasis_start(SCREENED))
    await settle(app)
    lines = rest.lines()
    assert f"POST /channels/{CHANNEL}/answer" in lines
    plays = [r for r in rest.sent if "/play/" in r.template]
    assert [dict(r.query)["media"] for r in plays] == ["sound:silence/1", "sound:vm-press", f"sound:digits/{digit}"]
    assert any(line.startswith("DELETE /playbacks/") for line in lines)  # the key stopped the prompt
    assert rest.variables()[4] == ("CALLSHIELD_ACTION", "screen")
    assert rest.variables()[-2:] == [("CALLSHIELD_SCREEN", "passed"), ("CALLSHIELD_ACTION", "connect")]
    assert lines[-1] == f"POST /channels/{CHANNEL}/continue"
    (record,) = decisions(fw)
    assert (record.screen, record.action) == ("passed", "connect")
    assert app.stats.screen_passed == 1


async def test_wrong_key_fails_and_silence_times_out(make_firewall: FirewallFactory) -> None:
    fw = make_firewall(SCREEN_CONFIG)
    digit = random.Random(7).randint(1, 9)
    ref: list[AriApp] = []
    rest = _screen_rest(ref, press=str(digit % 9 + 1), on="vm-press")  # a wrong key, during the prompt
    app = make_app(fw, rest)
    ref.append(app)
    app.handle_message(stasis_start(SCREENED))
    await settle(app)
    assert rest.variables()[-2:] == [("CALLSHIELD_SCREEN", "failed"), ("CALLSHIELD_ACTION", "block")]
    assert rest.lines()[-1] == f"DELETE /channels/{CHANNEL}?reason_code=21"

    silent: list[AriApp] = []
    rest2 = _screen_rest(silent, press=None, channel="c2")
    app2 = make_app(fw, rest2)
    silent.append(app2)
    app2.handle_message(stasis_start(SCREENED, channel="c2"))
    started = asyncio.get_running_loop().time()
    await settle(app2)
    assert asyncio.get_running_loop().time() - started >= 0.5  # waited digit_timeout for a key
    assert rest2.variables()[-2:] == [("CALLSHIELD_SCREEN", "timeout"), ("CALLSHIELD_ACTION", "block")]
    assert rest2.lines()[-1] == "DELETE /channels/c2?reason_code=21"
    results = sorted(r.screen for r in decisions(fw))
    assert results == ["failed", "timeout"]


async def test_caller_hanging_up_mid_challenge(make_firewall: FirewallFactory) -> None:
    fw = make_firewall(SCREEN_CONFIG)
    rest = FakeRest()
    app = make_app(fw, rest)

    def reply(request: AriRequest) -> None:
        if request.template.endswith("/answer"):
            up = event("ChannelStateChange", state="Up")
            asyncio.get_running_loop().call_soon(app.handle_message, up)
        if "/play/" in request.template:  # the caller hangs up during the first prompt
            loop = asyncio.get_running_loop()
            later = {**json.loads(event("StasisEnd")), "timestamp": "2026-11-28T05:55:54.478+0000"}
            loop.call_soon(app.handle_message, event("ChannelHangupRequest"))
            loop.call_soon(app.handle_message, json.dumps(later).encode())

    rest.reply = reply
    app.handle_message(stasis_start(SCREENED))
    await settle(app)
    await asyncio.sleep(0.01)
    (record,) = decisions(fw)
    assert record.screen == "timeout"
    assert not any(name == "CALLSHIELD_SCREEN" for name, _ in rest.variables())
    assert not any(r.template.endswith("/continue") for r in rest.sent)
    assert record.billsec == pytest.approx(2.0)  # answered at 05:55:52.478, gone at 05:55:54.478
    assert record.hangup_cause is None  # the caller's BYE carries no cause in ARI
    assert app.stats.caller_gone == 1 and app.stats.screen_timeout == 1


async def test_caller_gone_before_the_variables(make_firewall: FirewallFactory) -> None:
    fw = make_firewall(SCREEN_CONFIG)
    rest = FakeRest()
    rest.reply = lambda r: ChannelGone(r, 404, b"") if r.method == "POST" else None
    app = make_app(fw, rest)
    app.handle_message(stasis_start(CLEAN))
    await settle(app)
    assert app.stats.caller_gone == 1
    assert len(rest.variables()) == 1  # stopped at the first 404


async def test_unknown_arguments_connect_without_a_decision(make_firewall: FirewallFactory) -> None:
    fw = make_firewall(SCREEN_CONFIG)
    rest = FakeRest()
    app = make_app(fw, rest)
    app.handle_message(stasis_start(DENIED, "originator"))
    await settle(app)
    assert rest.variables() == [("CALLSHIELD_REASON", "unknown-script"), ("CALLSHIELD_ACTION", "connect")]
    assert rest.lines()[-1] == f"POST /channels/{CHANNEL}/continue"
    assert decisions(fw) == [] and app.stats.unknown_args == 1


async def test_engine_failure_fails_open(make_firewall: FirewallFactory) -> None:
    fw = make_firewall(SCREEN_CONFIG)

    def broken(call: Call) -> Verdict:
        raise RuntimeError("bug")

    fw.decide = broken  # type: ignore[method-assign,assignment]
    rest = FakeRest()
    app = make_app(fw, rest)
    app.handle_message(stasis_start(DENIED))
    await settle(app)
    assert rest.variables() == [("CALLSHIELD_REASON", "error"), ("CALLSHIELD_ACTION", "connect")]
    assert rest.lines()[-1] == f"POST /channels/{CHANNEL}/continue"
    assert app.stats.engine_errors == 1


async def test_unreachable_asterisk_is_retried_with_a_fail_open_continue(make_firewall: FirewallFactory) -> None:
    fw = make_firewall(SCREEN_CONFIG)
    rest = FakeRest()
    failures = [AriConnectionError("down")] * 2

    def reply(request: AriRequest) -> object:
        if request.template.endswith("/variable") and request.method == "POST" and failures:
            return failures.pop()
        if request.template.endswith("/continue") and len(failures) == 1:
            return failures.pop()
        return None

    rest.reply = reply
    app = make_app(fw, rest)
    app.handle_message(stasis_start(DENIED))
    await settle(app)
    assert rest.lines()[-2:] == [f"POST /channels/{CHANNEL}/continue"] * 2  # the second try went through
    assert (app.stats.rest_errors, app.stats.continued) == (1, 1)


async def test_hostile_events_are_counted_never_fatal(make_firewall: FirewallFactory) -> None:
    fw = make_firewall(SCREEN_CONFIG)
    rest = FakeRest()
    app = make_app(fw, rest)
    for junk in (b"", b"{", b"[1]", b'{"type": "StasisStart"}', b'{"type": "StasisStart", "channel": {"id": ""}}'):
        app.handle_message(junk)
    app.handle_message(event("ChannelDtmfReceived", channel="nobody", digit="5"))  # not ours
    app.handle_message(event("StasisEnd", channel="nobody"))
    app.handle_message(event("ChannelDtmfReceived", digit="55"))  # not a key
    app.handle_message(stasis_start(CLEAN))
    app.handle_message(stasis_start(CLEAN))  # a duplicate StasisStart is ignored
    await settle(app)
    stats = app.stats
    assert stats.malformed_events == 4
    assert stats.stray_events >= 4
    assert stats.decisions == 1 and stats.continued == 1


async def test_channels_beyond_the_limit_are_only_continued(make_firewall: FirewallFactory) -> None:
    fw = make_firewall(SCREEN_CONFIG)
    rest = FakeRest()
    gate = asyncio.Event()

    async def hold(request: AriRequest) -> None:
        if request.method == "GET":
            await gate.wait()

    rest.reply = hold
    app = make_app(fw, rest, max_channels=1)
    app.handle_message(stasis_start(DENIED, channel="a"))
    app.handle_message(stasis_start(DENIED, channel="b"))
    for _ in range(20):
        await asyncio.sleep(0)
    assert rest.lines()[-1] == "POST /channels/b/continue"
    gate.set()
    await settle(app)
    assert app.stats.channels_rejected == 1
    assert rest.lines()[-1] == "DELETE /channels/a?reason_code=21"


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="decision_timeout"):
        AriAppSettings(decision_timeout=0)
    with pytest.raises(ValueError, match="cause_default"):
        AriAppSettings(cause_default=300)
    assert decode_event(stasis_start(CLEAN)) is not None


def test_screen_results_are_strings() -> None:
    assert [r.value for r in ScreenResult] == ["passed", "failed", "timeout"]
