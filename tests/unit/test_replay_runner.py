"""Replaying through the real engine: CDR → Call mapping, time order, decide-before-feedback, learning."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from callshield import db
from callshield.config import Config, parse_config
from callshield.engine import Firewall
from callshield.features import FEATURE_NAMES, F
from callshield.replay import CdrCall, ReplayRecord, build_report, call_of, outcome_of, read_cdr, read_labels, replay
from callshield.verdict import Action, Mode, Reason
from tests.unit.replay_support import CDR_START, cdr_row, sweep_and_legit, write_cdr, write_labels


def run(
    tmp_path: Path, rows: list[list[str]], config: Config | None = None, database: Path | None = None
) -> list[ReplayRecord]:
    calls = read_cdr(write_cdr(tmp_path / "Master.csv", rows)).calls
    return list(replay(calls, config=config or Config(), database=database))


def test_call_mapping() -> None:
    row = cdr_row("u1", "", "+13125550100", CDR_START, clid='"Jane Roe" <4155550123>', channel="PJSIP/carrier-0000002a")
    cdr = read_cdr_row(row)
    call = call_of(cdr)
    assert (call.caller, call.caller_name, call.callee) == ("4155550123", "Jane Roe", "+13125550100")
    assert (call.trunk, call.channel, call.started_at) == ("carrier", "PJSIP/carrier-0000002a", CDR_START)
    with_src = call_of(read_cdr_row(cdr_row("u2", "+14155550199", "100", CDR_START, clid="Front desk <200>")))
    assert (with_src.caller, with_src.caller_name) == ("+14155550199", "Front desk")
    outcome = outcome_of(read_cdr_row(cdr_row("u3", "+1", "1", CDR_START, billsec=42)), "d1")
    assert (outcome.dialstatus, outcome.billsec, outcome.ended_at) == ("ANSWER", 42.0, CDR_START + 47)
    busy = outcome_of(read_cdr_row(cdr_row("u4", "+1", "1", CDR_START, disposition="BUSY")), "d2")
    assert (busy.dialstatus, busy.billsec) == ("BUSY", 0.0)


def read_cdr_row(row: list[str]) -> CdrCall:
    with tempfile.TemporaryDirectory() as folder:
        return read_cdr(write_cdr(Path(folder) / "one.csv", [row])).calls[0]


def test_decided_at_start_and_fed_back_at_end_in_time_order(tmp_path: Path) -> None:
    caller = "+14155550123"
    rows = [
        # 1: answered, long: still open when call 2 starts, over before call 3.
        cdr_row("c1", caller, "+13125550100", CDR_START, billsec=290),
        # 2: starts during call 1, unanswered, ends at +65.
        cdr_row("c2", caller, "+13125550101", CDR_START + 60),
        # 3: after both ended.
        cdr_row("c3", caller, "+13125550102", CDR_START + 400),
    ]
    records = run(tmp_path, rows)
    assert [r.cdr.uniqueid for r in records] == ["c1", "c2", "c3"]  # decision order, though the file is by end
    assert [r.verdict.decided_at for r in records] == [CDR_START, CDR_START + 60, CDR_START + 400]
    second, third = records[1].verdict.features, records[2].verdict.features
    assert second[F["concurrent"]] == 2  # call 1 has not ended: its outcome comes at its end, not its start
    assert second[F["ended"]] == 0
    assert third[F["concurrent"]] == 1  # both ended before call 3 started
    assert third[F["ended"]] == 2
    assert third[F["answer_ratio"]] == 0.5  # one of the two answered: outcomes were learned


def test_an_end_and_a_start_in_the_same_second_end_first(tmp_path: Path) -> None:
    caller = "+14155550123"
    rows = [
        cdr_row("a", caller, "+13125550100", CDR_START, ring=10),
        cdr_row("b", caller, "+13125550101", CDR_START + 10),
    ]
    second = run(tmp_path, rows)[1].verdict.features
    assert (second[F["concurrent"]], second[F["ended"]]) == (1, 1)


def test_feedback_teaches(tmp_path: Path) -> None:
    """A caller whose calls are never answered scores higher later than at first; one whose calls
    are answered for minutes does not."""
    rows = []
    for i in range(8):  # every 12 minutes, alternating two callees: under every rate and fan-out limit
        rows.append(cdr_row(f"short.{i}", "+12025550147", f"+131255501{i % 2:02d}", CDR_START + 720 * i))
        rows.append(
            cdr_row(f"long.{i}", "+14155550123", f"+131255502{i % 2:02d}", CDR_START + 720 * i + 1, billsec=180)
        )
    records = run(tmp_path, rows)
    short = [r.verdict for r in records if r.cdr.uniqueid.startswith("short")]
    long = [r.verdict for r in records if r.cdr.uniqueid.startswith("long")]
    assert short[-1].score > short[0].score
    assert "pattern:short_calls" in {reason.code for reason in short[-1].reasons}
    assert long[-1].score <= long[0].score
    assert short[-1].score > long[-1].score


def test_features_are_always_the_live_vector(tmp_path: Path) -> None:
    config = parse_config('[[rules]]\naction = "deny"\npattern = "+1202555*"\n')
    rows = [
        cdr_row("anon", "anonymous", "+13125550100", CDR_START),
        cdr_row("denied", "+12025550147", "+13125550100", CDR_START + 1),
        cdr_row("junk", "12", "+13125550100", CDR_START + 2),
        cdr_row("plain", "+14155550123", "+13125550100", CDR_START + 3),
    ]
    records = run(tmp_path, rows, config)
    assert all(len(r.verdict.features) == len(FEATURE_NAMES) for r in records)
    by_id = {r.cdr.uniqueid: r.verdict for r in records}
    assert by_id["anon"].features[F["anonymous"]] == 1.0
    assert (by_id["denied"].action, by_id["denied"].reason) == (Action.BLOCK, "denylist:prefix")


def test_shadow_mode_connects_but_decides_and_the_report_uses_decided(tmp_path: Path) -> None:
    rows, labels = sweep_and_legit()
    truth = read_labels(write_labels(tmp_path / "labels.csv", labels))
    enforce = run(tmp_path, rows)
    shadow_config = parse_config('[policy]\nmode = "shadow"\n')
    shadow = run(tmp_path, rows, shadow_config)
    assert all(r.verdict.action is Action.CONNECT and r.verdict.mode is Mode.SHADOW for r in shadow)
    assert any(r.verdict.decided is not Action.CONNECT for r in shadow)
    shadow_report = build_report(shadow, truth, policy=shadow_config.policy)
    enforce_report = build_report(enforce, truth, policy=Config().policy)
    assert shadow_report.actions == {"connect": len(rows)}
    assert shadow_report.labelled is not None and enforce_report.labelled is not None
    # The sweep is seen at its 4th call (pattern.sweep = 4): screened, then blocked.
    assert shadow_report.labelled.abusive.caught_share == pytest.approx(17 / 20)
    assert shadow_report.labelled.abusive.screened == 1
    assert shadow_report.labelled.detection.median == 3
    assert shadow_report.labelled.legit.caught_share == 0.0
    assert enforce_report.labelled.abusive == shadow_report.labelled.abusive


def test_scratch_database_is_removed_and_state_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    rows, _ = sweep_and_legit()
    run(tmp_path, rows)
    assert list((tmp_path / "tmp").iterdir()) == []
    state = tmp_path / "state.sqlite3"
    records = run(tmp_path, rows, database=state)
    fw = Firewall(config=Config(), conn=db.connect(state))
    stored = fw.audit.get(records[-1].verdict.id)
    assert stored is not None and stored.ended is not None  # the decision and its outcome were written
    assert fw.store.row(12025550147) is not None
    fw.close()


class _EveryoneIsSuspect:
    """A stand-in learned model: scores every call 70 from the features it is given."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, ...]] = []

    def score(self, features: tuple[float, ...]) -> tuple[int, tuple[Reason, ...]]:
        self.seen.append(features)
        return 70, (Reason(code="model:test", points=70.0, detail="test scorer"),)


def test_a_scorer_replaces_the_built_in_one(tmp_path: Path) -> None:
    rows, _ = sweep_and_legit()
    scorer = _EveryoneIsSuspect()
    calls = read_cdr(write_cdr(tmp_path / "Master.csv", rows)).calls
    records = list(replay(calls, config=Config(), scorer=scorer))
    assert all(r.verdict.score == 70 for r in records)
    legit = [r.verdict for r in records if r.cdr.uniqueid.startswith("legit")]
    assert {(v.decided, v.reason) for v in legit} == {(Action.SCREEN, "model:test")}
    sweep = [(r.verdict.decided, r.verdict.reason) for r in records if r.cdr.uniqueid.startswith("sweep")]
    # The same caller: three challenges an hour (screening.max_challenges), then blocked.
    assert sweep == [(Action.SCREEN, "model:test")] * 3 + [(Action.BLOCK, "screen:limit")] * 17
    assert scorer.seen == [r.verdict.features for r in records]  # the model saw the live vector


def test_stopping_early_keeps_what_was_decided(tmp_path: Path) -> None:
    rows, _ = sweep_and_legit()
    calls = read_cdr(write_cdr(tmp_path / "Master.csv", rows)).calls
    state = tmp_path / "state.sqlite3"
    records = replay(calls, config=Config(), database=state)
    first = [next(records) for _ in range(5)]
    records.close()
    conn = db.connect(state)
    assert conn.execute("SELECT count(*) FROM decisions").fetchone()[0] == 5
    assert {row[0] for row in conn.execute("SELECT id FROM decisions")} == {r.verdict.id for r in first}
    conn.close()
