"""The decision core end to end in-process: precedence, modes, learning, explainability."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callshield.clock import ManualClock
from callshield.config import parse_config
from callshield.engine import Firewall
from callshield.peers import PeerKind
from callshield.reputation import EvidenceKind
from callshield.verdict import Action, Call, CallOutcome, Mode, ScreenResult, Verdict
from tests.conftest import FirewallFactory

RULES = """
[safety]
critical = ["+18005550100"]

[[rules]]
action = "deny"
pattern = "+1415555*"

[[rules]]
action = "allow"
pattern = "+14155550123"

[[rules]]
action = "deny"
pattern = "+1212555*"
dids = ["+13125550100"]
cause = 17
"""

# (description, setup reports, caller, callee, expected action, expected primary reason)
PRECEDENCE = [
    (
        "safety: emergency callee beats a deny rule",
        0,
        "+14155550199",
        "911",
        Action.CONNECT,
        "safety:emergency",
    ),
    (
        "safety: critical caller beats everything",
        5,
        "+18005550100",
        "+13125550100",
        Action.CONNECT,
        "safety:critical",
    ),
    (
        "rule: exact allow beats prefix deny",
        0,
        "+14155550123",
        "+13125550100",
        Action.CONNECT,
        "allowlist:exact",
    ),
    (
        "rule: local allow beats any score",
        10,
        "+14155550123",
        "+13125550100",
        Action.CONNECT,
        "allowlist:exact",
    ),
    ("rule: prefix deny", 0, "+14155550199", "+13125550100", Action.BLOCK, "denylist:prefix"),
    (
        "rule: DID-scoped deny applies to its DID",
        0,
        "+12125550111",
        "+13125550100",
        Action.BLOCK,
        "denylist:prefix",
    ),
    (
        "rule: DID-scoped deny ignores other DIDs",
        0,
        "+12125550111",
        "+13125550199",
        Action.CONNECT,
        "number:new",
    ),
    ("score: reports block", 4, "+17185550123", "+13125550100", Action.BLOCK, "reputation:reports"),
    ("score: fewer reports screen", 1.5, "+17185550123", "+13125550100", Action.SCREEN, "reputation:reports"),
    ("score: clean new number connects", 0, "+17185550123", "+13125550100", Action.CONNECT, "number:new"),
]


@pytest.mark.parametrize(
    ("why", "reports", "caller", "callee", "action", "reason"), PRECEDENCE, ids=[p[0] for p in PRECEDENCE]
)
def test_precedence(
    make_firewall: FirewallFactory,
    why: str,
    reports: float,
    caller: str,
    callee: str,
    action: Action,
    reason: str,
) -> None:
    fw = make_firewall(RULES)
    if reports:
        fw.report(caller, weight=reports)
    verdict = fw.decide(Call(caller=caller, callee=callee))
    assert (verdict.action, verdict.reason) == (action, reason), why
    assert verdict.reasons[0].code == reason


def test_deny_rule_cause_and_scores(make_firewall: FirewallFactory) -> None:
    fw = make_firewall(RULES)
    scoped = fw.decide(Call(caller="+12125550111", callee="+13125550100"))
    assert (scoped.action, scoped.score, scoped.cause) == (Action.BLOCK, 100, 17)
    default = fw.decide(Call(caller="+14155550199", callee="+13125550100"))
    assert default.cause == 21
    allowed = fw.decide(Call(caller="+14155550123", callee="+13125550100"))
    assert allowed.score == 0


def test_screening_pass_allows_caller_to_that_callee_only(make_firewall: FirewallFactory, clock: ManualClock) -> None:
    fw = make_firewall("")
    fw.report("+17185550123", weight=1.5)
    first = fw.decide(Call(caller="+17185550123", callee="+13125550100"))
    assert first.action is Action.SCREEN
    assert fw.screened(first.id, ScreenResult.PASSED)
    clock.advance(60)
    again = fw.decide(Call(caller="+17185550123", callee="+13125550100"))
    assert (again.action, again.reason) == (Action.CONNECT, "screen:passed")
    other = fw.decide(Call(caller="+17185550123", callee="+13125550199"))
    assert other.reason != "screen:passed"
    clock.advance(fw.config.screening.pass_ttl + 1)
    later = fw.decide(Call(caller="+17185550123", callee="+13125550100"))
    assert later.reason != "screen:passed"


SCREENED_CALLER = "+17185550123"
CAPPED = """
[screening]
max_challenges = 2
challenge_window = "10m"
"""


def screen_once(fw: Firewall, callee: str = "+13125550100") -> str:
    verdict = fw.decide(Call(caller=SCREENED_CALLER, callee=callee))
    return verdict.reason if verdict.action is not Action.SCREEN else "screen"


def test_challenges_per_caller_are_capped(make_firewall: FirewallFactory, clock: ManualClock) -> None:
    fw = make_firewall(CAPPED)
    fw.report(SCREENED_CALLER, weight=1.5)
    for _ in range(3):  # checks (callshield check) are not challenges
        assert fw.decide(Call(caller=SCREENED_CALLER, callee="+13125550100"), record=False).action is Action.SCREEN
    assert [screen_once(fw, f"+1312555010{n}") for n in range(2)] == ["screen", "screen"]
    capped = fw.decide(Call(caller=SCREENED_CALLER, callee="+13125550109"))
    assert (capped.action, capped.decided, capped.reason) == (Action.BLOCK, Action.BLOCK, "screen:limit")
    assert "2 screening challenges" in capped.reasons[0].detail
    assert fw.decide(Call(caller="+17185550124", callee="+13125550100")).action is not Action.BLOCK
    clock.advance(601)
    assert screen_once(fw) == "screen"


def test_challenge_cap_survives_a_restart(make_firewall: FirewallFactory, tmp_path: Path) -> None:
    fw = make_firewall(CAPPED)
    fw.report(SCREENED_CALLER, weight=1.5)
    assert [screen_once(fw), screen_once(fw)] == ["screen", "screen"]
    fw.flush()
    fw.close()
    assert screen_once(make_firewall(CAPPED)) == "screen:limit"


def test_shadow_mode_uses_no_challenges(make_firewall: FirewallFactory, clock: ManualClock) -> None:
    shadow = make_firewall(CAPPED + '[policy]\nmode = "shadow"\n')
    shadow.report(SCREENED_CALLER, weight=1.5)
    for n in range(3):
        verdict = shadow.decide(Call(caller=SCREENED_CALLER, callee="+13125550100"))
        assert (verdict.action, verdict.reason) == (Action.CONNECT, "reputation:reports"), n
        clock.advance(120)


def test_a_screen_result_is_taken_once(make_firewall: FirewallFactory) -> None:
    fw = make_firewall("")
    fw.report(SCREENED_CALLER, weight=1.5)
    verdict = fw.decide(Call(caller=SCREENED_CALLER, callee="+13125550100"))
    assert fw.screened(verdict.id, ScreenResult.FAILED)
    assert not fw.screened(verdict.id, ScreenResult.FAILED)  # e.g. again from the hangup feedback
    assert fw.counters["screen:duplicate"] == 1
    fw.flush()
    fw.close()
    reopened = make_firewall("")
    assert not reopened.screened(verdict.id, ScreenResult.PASSED)  # the audit log has the result
    assert reopened.audit.get(verdict.id).screen == "failed"  # type: ignore[union-attr]


def test_screening_in_session_can_be_left_to_the_dialplan(make_firewall: FirewallFactory) -> None:
    assert make_firewall("").screening is not None
    assert make_firewall("[screening]\nin_session = false\n").screening is None


def test_screen_failures_raise_risk(make_firewall: FirewallFactory) -> None:
    fw = make_firewall("")
    caller = "+17185550123"
    before = fw.decide(Call(caller=caller, callee="+13125550100"), record=False).score
    verdict = fw.decide(Call(caller=caller, callee="+13125550100"))
    fw.screened(verdict.id, ScreenResult.FAILED)
    after = fw.decide(Call(caller=caller, callee="+13125550100"), record=False)
    assert after.score > before
    assert "reputation:screen_failed" in [r.code for r in after.reasons]


def test_shadow_mode_connects_but_records_the_decision(make_firewall: FirewallFactory) -> None:
    fw = make_firewall(RULES + '\n[policy]\nmode = "shadow"\n')
    verdict = fw.decide(Call(caller="+14155550199", callee="+13125550100"))
    assert (verdict.action, verdict.decided, verdict.mode) == (Action.CONNECT, Action.BLOCK, Mode.SHADOW)
    assert verdict.reason == "denylist:prefix"
    fw.flush()
    record = fw.audit.get(verdict.id)
    assert record is not None and (record.action, record.decided) == ("connect", "block")


def test_check_records_nothing(make_firewall: FirewallFactory) -> None:
    fw = make_firewall("")
    for _ in range(3):
        fw.decide(Call(caller="+17185550123", callee="+13125550100"), record=False)
    assert fw.pending() == 0
    assert fw.patterns.window_of(17185550123) is None
    assert fw.store.row(17185550123) is None


def test_sweep_is_blocked_once_the_pattern_trips(make_firewall: FirewallFactory, clock: ManualClock) -> None:
    fw = make_firewall("")
    actions = []
    for i in range(12):
        clock.advance(3)
        verdict = fw.decide(Call(caller="+17185550123", callee=f"+1312555{100 + i:04d}"))
        actions.append(verdict.action)
        fw.feedback(CallOutcome(decision_id=verdict.id, dialstatus="NOANSWER", billsec=0))
    assert actions[0] is Action.CONNECT
    assert actions[-1] is Action.BLOCK
    first_block = actions.index(Action.BLOCK)
    assert first_block <= 6
    assert all(a is Action.BLOCK for a in actions[first_block:])


def test_normal_repeat_caller_is_never_screened(make_firewall: FirewallFactory, clock: ManualClock) -> None:
    fw = make_firewall("")
    for _ in range(20):
        clock.advance(3 * 3600)
        verdict = fw.decide(Call(caller="+17185550123", callee="+13125550100"))
        assert verdict.action is Action.CONNECT
        fw.feedback(CallOutcome(decision_id=verdict.id, dialstatus="ANSWER", billsec=240))
    fw.flush()
    assert fw.store.view(17185550123, clock.now()).legit_calls > 1


def test_feedback_learns_legitimacy_and_short_calls(make_firewall: FirewallFactory, clock: ManualClock) -> None:
    fw = make_firewall("")
    long_call = fw.decide(Call(caller="+17185550123", callee="+13125550100"))
    assert fw.feedback(CallOutcome(decision_id=long_call.id, dialstatus="ANSWER", billsec=300))
    short_call = fw.decide(Call(caller="+16465550123", callee="+13125550100"))
    assert fw.feedback(CallOutcome(decision_id=short_call.id, dialstatus="ANSWER", billsec=2))
    assert not fw.feedback(CallOutcome(decision_id="nope", dialstatus="ANSWER", billsec=2))
    now = clock.now()
    assert fw.store.view(17185550123, now).legit_calls == pytest.approx(1.0)
    assert fw.store.view(16465550123, now).short_calls == pytest.approx(1.0)
    fw.flush()
    record = fw.audit.get(long_call.id)
    assert record is not None and (record.dialstatus, record.billsec) == ("ANSWER", 300)


def test_feedback_after_restart_uses_the_audit_log(make_firewall: FirewallFactory, tmp_path: object) -> None:
    fw = make_firewall("")
    verdict = fw.decide(Call(caller="+17185550123", callee="+13125550100"))
    fw.close()
    again = make_firewall("")
    assert again.feedback(CallOutcome(decision_id=verdict.id, dialstatus="ANSWER", billsec=300))


def test_restart_keeps_reputation_windows_and_passes(make_firewall: FirewallFactory, clock: ManualClock) -> None:
    fw = make_firewall("")
    for i in range(3):
        clock.advance(5)
        fw.decide(Call(caller="+17185550123", callee=f"+1312555{100 + i:04d}"))
    fw.report("+16465550123")
    fw.close()
    clock.advance(30)
    again = make_firewall("")
    window = again.patterns.window_of(17185550123)
    assert window is not None and len(window.times) == 3
    assert again.store.view(16465550123, clock.now()).reports == pytest.approx(1.0, rel=1e-3)
    nxt = again.decide(Call(caller="+17185550123", callee="+13125550103"))
    assert nxt.features[28] == 4  # sweep continues across the restart


def test_evidence_decays_with_the_half_life(make_firewall: FirewallFactory, clock: ManualClock) -> None:
    fw = make_firewall('[reputation]\nhalf_life = "10d"\n')
    fw.report("+17185550123", weight=4)
    assert fw.decide(Call(caller="+17185550123"), record=False).action is Action.BLOCK
    clock.advance(10 * 86400)
    assert fw.store.view(17185550123, clock.now()).reports == pytest.approx(2.0)
    clock.advance(30 * 86400)
    assert fw.decide(Call(caller="+17185550123"), record=False).action is Action.CONNECT


def test_range_heat_raises_neighbours(make_firewall: FirewallFactory) -> None:
    fw = make_firewall("")
    cold = fw.decide(Call(caller="+17185550150", callee="+13125550100"), record=False).score
    for last in ("01", "07", "33", "42"):
        fw.report(f"+171855501{last}", weight=2)
    hot = fw.decide(Call(caller="+17185550150", callee="+13125550100"), record=False)
    assert hot.score > cold
    assert "reputation:range" in [r.code for r in hot.reasons]


def test_region_override_by_trunk(make_firewall: FirewallFactory) -> None:
    fw = make_firewall('[[numbering]]\ntrunk = "uk"\nregion = "GB"\n')
    uk = fw.decide(Call(caller="0044 20 7946 0958", trunk="uk"), record=False)
    us = fw.decide(Call(caller="0044 20 7946 0958"), record=False)
    assert uk.caller == "+442079460958"
    assert us.caller != "+442079460958"
    via_011 = fw.decide(Call(caller="011 44 20 7946 0958"), record=False)
    assert via_011.caller == "+442079460958"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "unknown",
        "anonymous",
        "Restricted",
        "WIRELESS CALLER",
        "__________",
        "'; DROP TABLE reputation; --",
        "$(rm -rf /)",
        "\x00\x01\x02",
        "\ud800",
        "+" + "9" * 40,
        "x" * 1_000_000,
        "sip:+14155550123@host;user=phone",
    ],
)
def test_hostile_caller_ids_get_a_verdict_and_store_nothing_bad(make_firewall: FirewallFactory, raw: str) -> None:
    fw = make_firewall("")
    verdict = fw.decide(Call(caller=raw, callee=raw[:100]))
    assert verdict.action in set(Action)
    assert len(verdict.caller) <= 64
    assert fw.flush() > 0
    record = fw.audit.get(verdict.id)
    assert record is not None and record.caller == verdict.caller


def test_report_refuses_non_numbers(make_firewall: FirewallFactory) -> None:
    fw = make_firewall("")
    with pytest.raises(ValueError, match="not a phone number"):
        fw.report("anonymous")
    assert fw.report("(718) 555-0123", kind=EvidenceKind.ADMIN_REPORT).e164 == "+17185550123"


def test_explain_lists_notable_decisions_and_plain_ones_on_request(
    make_firewall: FirewallFactory, clock: ManualClock
) -> None:
    from callshield.explain import explain

    fw = make_firewall(RULES)
    plain = fw.decide(Call(caller="+17185550123", callee="+13125550100"))
    fw.report("+17185550123", weight=4)
    blocked = fw.decide(Call(caller="+17185550123", callee="+13125550100"))
    fw.flush()
    notable = [d["id"] for d in explain(fw, "+17185550123")["decisions"]]
    assert notable == [blocked.id]
    everything = [d["id"] for d in explain(fw, "+17185550123", all_since=clock.now() - 60)["decisions"]]
    assert everything == [blocked.id, plain.id]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    caller=st.text(max_size=300),
    callee=st.text(max_size=100),
    trunk=st.text(max_size=20),
    presentation=st.one_of(st.none(), st.integers(-1000, 1000)),
)
def test_any_call_gets_a_verdict(
    make_firewall: FirewallFactory, caller: str, callee: str, trunk: str, presentation: int | None
) -> None:
    fw = _shared_firewall(make_firewall)
    verdict = fw.decide(Call(caller=caller, callee=callee, trunk=trunk, presentation=presentation))
    assert verdict.action in set(Action) and 0 <= verdict.score <= 100
    assert len(verdict.caller) <= 64 and verdict.reason


_FIREWALLS: dict[int, object] = {}


def _shared_firewall(make_firewall: FirewallFactory) -> Firewall:
    found = _FIREWALLS.get(id(make_firewall))
    if found is None:
        found = _FIREWALLS[id(make_firewall)] = make_firewall(RULES)
    assert isinstance(found, Firewall)
    return found


def test_read_only_cli_use_does_not_bump_the_generation(tmp_path: Path, clock: ManualClock) -> None:
    from callshield import db
    from callshield.config import Config

    path = tmp_path / "g.db"
    server = Firewall(config=Config(), conn=db.connect(path), clock=clock)
    before = db.generation(server.connection)
    cli = Firewall(config=Config(), conn=db.connect(path), clock=clock, external_writer=True)
    cli.decide(Call(caller="+17185550123"), record=False)
    cli.close()
    assert db.generation(server.connection) == before
    writer = Firewall(config=Config(), conn=db.connect(path), clock=clock, external_writer=True)
    writer.report("+17185550123")
    writer.close()
    assert db.generation(server.connection) == before + 1


def test_a_failed_write_is_retried_and_counted_once(
    make_firewall: FirewallFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from callshield import db

    fw = make_firewall("")
    verdict = fw.decide(Call(caller="+17185550123", callee="+13125550100"))
    fw.report("+17185550123")
    real_apply = db.apply

    def locked(conn: sqlite3.Connection, statements: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(db, "apply", locked)
    assert fw.flush() == 0 and fw.counters["flush:failed"] == 1
    fw.store.invalidate()  # the cache is dropped while the write is still owed
    assert fw.store.view(17185550123, fw.clock.now()).reports == pytest.approx(1.0)
    monkeypatch.setattr(db, "apply", real_apply)
    assert fw.flush() > 0
    fw.store.invalidate()
    assert fw.store.view(17185550123, fw.clock.now()).reports == pytest.approx(1.0)
    assert fw.audit.get(verdict.id) is not None


# --- peer evidence (the mesh) -----------------------------------------------------------------------

PEER_CALLER = "+17185550177"


def peer_block(fw: Firewall, node: str, seq: int = 1, subject: str = PEER_CALLER) -> bool:
    return fw.peer_verdict(subject=subject, node=node, kind=PeerKind.BLOCK, seq=seq, at=fw.clock.now(), ttl=86400)


def check(fw: Firewall, caller: str = PEER_CALLER) -> Verdict:
    return fw.decide(Call(caller=caller, callee="+13125550100"), record=False)


def test_one_peer_alone_never_blocks_but_a_quorum_does(make_firewall: FirewallFactory) -> None:
    fw = make_firewall("")
    peer_block(fw, "a")
    assert check(fw).action is Action.SCREEN  # a campaign blocked on one node is screened on the others
    assert not peer_block(fw, "a", seq=1)  # the same verdict again (QoS 1): still one node
    assert check(fw).action is Action.SCREEN
    peer_block(fw, "b")
    verdict = check(fw)
    assert (verdict.action, verdict.reason) == (Action.BLOCK, "peer:quorum")
    assert "2 peer nodes" in verdict.reasons[0].detail


def test_quorum_and_trust_come_from_the_config(make_firewall: FirewallFactory) -> None:
    fw = make_firewall('[mesh]\nquorum = 3\npeer_trust = { "rogue" = 0.0 }\n')
    for node in ("a", "b"):
        peer_block(fw, node)
    assert check(fw).reason == "peer:no-quorum"
    peer_block(fw, "rogue")  # counts towards the quorum, weighs nothing
    assert check(fw).action is Action.BLOCK
    fw.apply_config(parse_config('[mesh]\nquorum = 4\n'))
    assert check(fw).action is Action.SCREEN


def test_a_single_peer_cannot_tip_local_evidence_into_a_block(make_firewall: FirewallFactory) -> None:
    fw = make_firewall("")
    fw.report(PEER_CALLER)
    fw.report(PEER_CALLER)
    local = check(fw)
    assert local.action is Action.SCREEN
    peer_block(fw, "rogue")
    tipped = check(fw)
    assert tipped.score >= fw.config.policy.block_at
    assert (tipped.action, tipped.reason) == (Action.SCREEN, "peer:no-quorum")
    peer_block(fw, "second")
    assert check(fw).action is Action.BLOCK


def test_local_evidence_blocks_without_waiting_for_peers(make_firewall: FirewallFactory) -> None:
    fw = make_firewall("")
    for _ in range(4):
        fw.report(PEER_CALLER)
    peer_block(fw, "a")
    verdict = check(fw)
    assert verdict.action is Action.BLOCK
    assert verdict.reason != "peer:no-quorum"


def test_a_local_allow_beats_any_number_of_peer_blocks(make_firewall: FirewallFactory) -> None:
    fw = make_firewall(f'[[rules]]\naction = "allow"\npattern = "{PEER_CALLER}"\n')
    for node in "abcdef":
        peer_block(fw, node)
    assert check(fw).action is Action.CONNECT


def test_revocations_redeliveries_and_restarts(make_firewall: FirewallFactory, tmp_path: Path) -> None:
    fw = make_firewall("")
    for node in ("a", "b", "c"):
        assert peer_block(fw, node, seq=5)
    assert not peer_block(fw, "a", seq=5)  # QoS 1 delivered it twice
    assert fw.counters["peer:stale"] == 1
    assert check(fw).action is Action.BLOCK
    assert fw.peer_revoke(subject=PEER_CALLER, node="c", seq=6)
    assert fw.peer_revoke(subject=PEER_CALLER, node="b", seq=6)
    assert check(fw).action is Action.SCREEN  # one node's block stands
    fw.flush()
    fw.close()
    again = make_firewall("")
    assert again.peers.view(PEER_CALLER, again.clock.now()).blockers == 1  # b and c revoked


def test_privacy_mode_matches_peers_by_keyed_hash(make_firewall: FirewallFactory) -> None:
    from callshield.mesh import subject_for

    key = "ab" * 32
    fw = make_firewall(f'[mesh]\nprivacy = true\nprivacy_key = "{key}"\n')
    hashed = subject_for(PEER_CALLER, bytes.fromhex(key))
    assert PEER_CALLER[2:] not in hashed
    for node in ("a", "b"):
        peer_block(fw, node, subject=hashed)
    assert check(fw).action is Action.BLOCK
    peer_block(fw, "c", subject=PEER_CALLER)  # a plain number means nothing in privacy mode
    assert fw.peers.view(hashed, fw.clock.now()).blockers == 2


def test_peer_verdicts_expire(make_firewall: FirewallFactory, clock: ManualClock) -> None:
    fw = make_firewall("")
    for node in ("a", "b", "c"):
        peer_block(fw, node)
    clock.advance(86401)
    fw.maintenance()
    assert fw.peers.subjects() == 0
    assert check(fw).reason != "peer:quorum"


def test_explain_shows_the_standing_peer_verdicts(make_firewall: FirewallFactory) -> None:
    from callshield.explain import explain

    fw = make_firewall("")
    peer_block(fw, "a")
    peer_block(fw, "b", seq=3)
    data = explain(fw, PEER_CALLER)
    assert sorted((p["node"], p["kind"], p["seq"]) for p in data["peers"]) == [("a", "block", 1), ("b", "block", 3)]
    assert data["features"]["peer_bad"] > 0
