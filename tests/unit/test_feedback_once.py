"""Hangup feedback is taken once per decision (the ARI app and the dialplan's hangup handler both report)."""

from __future__ import annotations

from callshield.clock import ManualClock
from callshield.verdict import Call, CallOutcome
from tests.conftest import FirewallFactory


def test_second_feedback_for_a_decision_is_ignored(make_firewall: FirewallFactory, clock: ManualClock) -> None:
    fw = make_firewall("")
    verdict = fw.decide(Call(caller="+17185550123", callee="+13125550100"))
    assert fw.feedback(CallOutcome(decision_id=verdict.id, dialstatus="ANSWER", billsec=2))
    assert not fw.feedback(CallOutcome(decision_id=verdict.id, dialstatus="ANSWER", billsec=2))
    assert not fw.feedback(CallOutcome(decision_id=verdict.id, dialstatus="ANSWER", billsec=300))
    assert (fw.counters["feedback"], fw.counters["feedback:duplicate"]) == (1, 2)
    view = fw.store.view(17185550123, clock.now())
    assert view.short_calls == 1.0 and view.legit_calls == 0.0  # neither counted twice nor overwritten
    fw.flush()
    record = fw.audit.get(verdict.id)
    assert record is not None and record.billsec == 2


def test_feedback_once_survives_a_restart(make_firewall: FirewallFactory) -> None:
    fw = make_firewall("")
    done = fw.decide(Call(caller="+17185550123", callee="+13125550100"))
    open_ = fw.decide(Call(caller="+16465550123", callee="+13125550100"))
    assert fw.feedback(CallOutcome(decision_id=done.id, dialstatus="NOANSWER"))
    fw.close()
    again = make_firewall("")
    assert not again.feedback(CallOutcome(decision_id=done.id, dialstatus="NOANSWER"))  # from the audit row
    assert again.feedback(CallOutcome(decision_id=open_.id, dialstatus="ANSWER", billsec=90))
    assert again.counters["feedback:duplicate"] == 1
