"""The report's figures on a small hand-made labelled replay, computed by hand below."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from callshield.config import Config, parse_config
from callshield.replay import (
    Label,
    LabelledFigures,
    LabelsError,
    ReplayReport,
    VerdictRow,
    VerdictWriter,
    build_report,
    format_report,
    read_labels,
    read_verdicts,
    replay,
)
from callshield.replay._report import percentile
from tests.unit.replay_support import CDR_START

SCORE = {"block": 90, "screen": 60, "connect": 10}
LEGIT_SCORE = {"block": 85, "screen": 55, "connect": 0}


def campaign(name: str, start: float, decided: list[str]) -> list[VerdictRow]:
    return [
        VerdictRow(f"{name}.{i}", start + i, "connect", d, SCORE[d], "test") for i, d in enumerate(decided)
    ]  # shadow mode: every call connected, `decided` is what enforcing would have done


def dataset() -> tuple[list[VerdictRow], dict[str, Label]]:
    rows: list[VerdictRow] = []
    labels: dict[str, Label] = {}

    def add(new: list[VerdictRow], label: str, family: str, camp: str) -> None:
        rows.extend(new)
        labels.update({row.uniqueid: Label(label, family, camp) for row in new})

    # robo-A: 14 calls; connect x3, screen, connect, block x9 → caught 10, delay 3; after the
    # first 10: indices 10-13, all blocked.
    add(campaign("robo-A", 0, ["connect"] * 3 + ["screen", "connect"] + ["block"] * 9), "abusive", "robocall", "robo-A")
    # robo-B: 12 calls, only the last blocked → delay 11; after the first 10: 1 of 2 blocked.
    add(campaign("robo-B", 100, ["connect"] * 11 + ["block"]), "abusive", "robocall", "robo-B")
    # sweep-C: 3 calls, never caught. sweep-D: 2 calls, both blocked → delay 0.
    add(campaign("sweep-C", 200, ["connect"] * 3), "abusive", "sweep", "sweep-C")
    add(campaign("sweep-D", 300, ["block", "block"]), "abusive", "sweep", "sweep-D")
    # Two wangiri calls without a campaign id: one screened.
    add(campaign("wangiri", 400, ["screen", "connect"]), "abusive", "wangiri", "")
    # Legitimate: personal 10 calls (1 screened, 1 blocked), business 5 calls (all connected).
    personal = ["screen", "block"] + ["connect"] * 8
    add(
        [VerdictRow(f"p.{i}", 500 + i, "connect", d, LEGIT_SCORE[d], "test") for i, d in enumerate(personal)],
        "legit",
        "personal",
        "",
    )
    add([VerdictRow(f"b.{i}", 600 + i, "connect", "connect", 0, "clean") for i in range(5)], "legit", "business", "b")
    rows.append(VerdictRow("unlabelled", 700, "connect", "connect", 0, "clean"))
    labels["ghost"] = Label("abusive", "robocall", "robo-Z")  # a label without a call
    random.Random(4).shuffle(rows)  # the report orders by start time itself
    return rows, labels


@pytest.fixture
def report() -> ReplayReport:
    rows, labels = dataset()
    return build_report(rows, labels, policy=parse_config('[policy]\nmode = "shadow"\n').policy)


def figures(report: ReplayReport) -> LabelledFigures:
    assert report.labelled is not None
    return report.labelled


def test_counts_use_decided_and_actions_stay_as_told(report: ReplayReport) -> None:
    assert report.calls == 49
    assert report.actions == {"connect": 49}
    assert report.decided == {"connect": 33, "block": 13, "screen": 3}
    assert (report.mode, report.metric) == ("shadow", "decided")


def test_shares_overall_and_after_first_10(report: ReplayReport) -> None:
    labelled = figures(report)
    assert (labelled.matched, labelled.unlabelled_calls, labelled.labels_without_call) == (48, 1, 1)
    abusive = labelled.abusive
    assert (abusive.calls, abusive.blocked, abusive.screened) == (33, 12, 2)
    assert abusive.caught_share == pytest.approx(14 / 33)
    after = labelled.abusive_after_first_10
    assert (after.calls, after.blocked, after.screened) == (6, 5, 0)
    assert after.caught_share == pytest.approx(5 / 6)
    legit = labelled.legit
    assert (legit.calls, legit.blocked, legit.screened) == (15, 1, 1)
    assert legit.screened_share == pytest.approx(1 / 15) and legit.blocked_share == pytest.approx(1 / 15)


def test_per_family(report: ReplayReport) -> None:
    families = {(f.label, f.family): f for f in figures(report).families}
    assert set(families) == {
        ("abusive", "robocall"),
        ("abusive", "sweep"),
        ("abusive", "wangiri"),
        ("legit", "business"),
        ("legit", "personal"),
    }
    robocall = families[("abusive", "robocall")]
    assert (robocall.share.calls, robocall.share.blocked, robocall.share.screened) == (26, 10, 1)
    assert robocall.after_first_10 is not None
    assert (robocall.after_first_10.calls, robocall.after_first_10.blocked) == (6, 5)
    assert robocall.detection is not None
    assert (robocall.detection.median, robocall.detection.p90) == (3, 11)  # delays 3, 11
    sweep = families[("abusive", "sweep")]
    assert (sweep.share.calls, sweep.share.blocked) == (5, 2)
    assert sweep.after_first_10 is not None and sweep.after_first_10.caught_share is None  # no call past the 10th
    assert sweep.detection is not None
    assert (sweep.detection.median, sweep.detection.p90, sweep.detection.never_detected) == (0, None, 1)
    wangiri = families[("abusive", "wangiri")]
    assert wangiri.share.screened == 1 and wangiri.detection is not None and wangiri.detection.campaigns == 0
    personal = families[("legit", "personal")]
    assert (personal.share.calls, personal.share.screened, personal.share.blocked) == (10, 1, 1)
    assert personal.after_first_10 is None and personal.detection is None
    assert families[("legit", "business")].share.caught_share == 0.0


def test_detection_delay(report: ReplayReport) -> None:
    delays = {c.campaign: c.delay for c in figures(report).campaigns}
    assert delays == {"robo-A": 3, "robo-B": 11, "sweep-C": None, "sweep-D": 0}
    d = figures(report).detection
    assert (d.campaigns, d.detected, d.never_detected) == (4, 3, 1)
    # All four, the never-detected one last: 0, 3, 11, never. Nearest rank: p50 → 2nd, p90 → 4th.
    assert (d.median, d.p90) == (3, None)
    assert (d.median_detected, d.p90_detected) == (3, 11)


def test_precision_recall_curve(report: ReplayReport) -> None:
    curve = {p.threshold: p for p in figures(report).curve}
    assert len(curve) == 101
    # Scores: abusive block 90 / screen 60 / connect 10; legit block 85 / screen 55 / connect 0.
    assert curve[50].precision == pytest.approx(14 / 16) and curve[50].recall == pytest.approx(14 / 33)
    assert curve[80].precision == pytest.approx(12 / 13) and curve[80].recall == pytest.approx(12 / 33)
    assert curve[0].precision == pytest.approx(33 / 48) and curve[0].recall == 1.0
    assert (curve[91].flagged, curve[91].precision, curve[91].recall) == (0, None, 0.0)


def test_score_summary(report: ReplayReport) -> None:
    s = report.scores
    assert sum(s.counts) == 49 and s.counts[90] == 12 and s.max == 90
    assert figures(report).score_counts["legit"][0] == 13 and figures(report).score_counts["abusive"][10] == 19


def test_report_is_json_and_text(report: ReplayReport) -> None:
    data = json.loads(json.dumps(report.as_dict()))
    assert data["labelled"]["detection"]["median"] == 3
    text = format_report(report)
    assert "abusive after first 10 of campaign" in text and "83.33%" in text and "not reached" in text


def test_without_labels() -> None:
    rows, _ = dataset()
    report = build_report(rows, None, policy=Config().policy, rejected={"columns": 2})
    assert report.labelled is None and report.rejected == {"columns": 2}
    assert "labelled" not in format_report(report)


def test_percentile_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 90) == 4.0
    assert percentile([7.0], 90) == 7.0


def test_verdicts_file_round_trip(tmp_path: Path) -> None:
    from tests.unit.replay_support import cdr_row, write_cdr

    rows = [cdr_row(f"u{i}", "+12025550147", f"+131255501{i:02d}", CDR_START + 30 * i) for i in range(6)]
    from callshield.replay import read_cdr

    calls = read_cdr(write_cdr(tmp_path / "Master.csv", rows)).calls
    labels = {"u0": Label("abusive", "sweep", "s1")}
    path = tmp_path / "verdicts.csv"
    with path.open("w", newline="") as out:
        writer = VerdictWriter(out, labels)
        written = [writer.write(record) for record in replay(calls, config=Config())]
    lines = path.read_text().splitlines()
    assert lines[0] == "uniqueid,start,action,decided,score,reason,mode,reasons,caller,callee,label,family,campaign"
    assert len(lines) == 7 and lines[1].endswith(",abusive,sweep,s1") and lines[2].endswith(",,,")
    assert list(read_verdicts(path)) == written
    assert "pattern:sweep" in lines[-1]


def test_labels_file(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(
        "campaign,uniqueid,label,family,extra\n"
        "c1,u1,abusive,robocall,x\n"
        "c1,u2,ABUSIVE,robocall,x\n"
        ",u3,legit,personal,x\n"
        "c1,u1,legit,personal,x\n"  # duplicate
        "c1,,abusive,robocall,x\n"  # no uniqueid
        "c1,u4,spam,robocall,x\n"  # bad label
        "c1,u5\n"  # short
        "\n"
    )
    labels = read_labels(path)
    assert labels == {
        "u1": Label("abusive", "robocall", "c1"),
        "u2": Label("abusive", "robocall", "c1"),
        "u3": Label("legit", "personal", ""),
    }
    assert dict(labels.rejected) == {
        "duplicate_uniqueid": 1,
        "empty_uniqueid": 1,
        "bad_label": 1,
        "columns": 1,
        "blank_line": 1,
    }
    bad = tmp_path / "bad.csv"
    bad.write_text("id,kind\n1,spam\n")
    with pytest.raises(LabelsError, match="missing uniqueid, label, family, campaign"):
        read_labels(bad)
    with pytest.raises(LabelsError, match="cannot read"):
        read_labels(tmp_path / "missing.csv")


def test_reasons_of_false_alarms_and_misses() -> None:
    rows = [
        VerdictRow("l1", 1, "block", "block", 90, "pattern:fanout"),
        VerdictRow("l2", 2, "screen", "screen", 60, "pattern:fanout"),
        VerdictRow("l3", 3, "block", "block", 95, "denylist:prefix"),
        VerdictRow("l4", 4, "connect", "connect", 0, "clean"),
        VerdictRow("a1", 5, "connect", "connect", 5, "number:new"),
        VerdictRow("a2", 6, "block", "block", 100, "pattern:sweep"),
    ]
    labels = {f"l{i}": Label("legit", "business", "") for i in range(1, 5)}
    labels |= {"a1": Label("abusive", "robocall", "r"), "a2": Label("abusive", "robocall", "r")}
    labelled = figures(build_report(rows, labels, policy=Config().policy))
    assert labelled.legit_caught_reasons == {"pattern:fanout": 2, "denylist:prefix": 1}
    assert labelled.abusive_missed_reasons == {"number:new": 1}
