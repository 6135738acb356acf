"""`callshield replay` as users run it: a real process, real files, exit codes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tests.conftest import need_shared
from tests.integration.test_cli import cs
from tests.unit.replay_support import sweep_and_legit, write_cdr, write_labels

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_replay_with_labels_report_and_json(tmp_path: Path) -> None:
    rows, labels = sweep_and_legit()
    rows.append(rows[0][:12])  # one broken row: 12 columns
    cdr = write_cdr(tmp_path / "Master.csv", rows)
    write_labels(tmp_path / "labels.csv", labels)
    result = cs(
        tmp_path,
        "replay",
        str(cdr),
        "--out",
        "verdicts.csv",
        "--labels",
        "labels.csv",
        "--report",
        "report",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["calls"] == 40 and report["rejected"] == {"columns": 1}
    labelled = report["labelled"]
    assert labelled["abusive"]["calls"] == 20 and labelled["abusive"]["caught_share"] == 17 / 20
    assert labelled["legit"]["blocked"] == 0 and labelled["detection"]["median"] == 3
    assert "replayed 40 calls" in result.stderr
    with (tmp_path / "verdicts.csv").open() as f:
        verdicts = list(csv.DictReader(f))
    assert len(verdicts) == 40
    assert {v["uniqueid"] for v in verdicts} == {uid for uid, *_ in labels}
    sweep = [v for v in verdicts if v["campaign"] == "sweep-1"]
    assert [v["decided"] for v in sweep[:5]] == ["connect", "connect", "connect", "screen", "block"]
    assert sweep[4]["reason"] == "pattern:sweep" and sweep[4]["label"] == "abusive"
    for name in ("scores.png", "precision_recall.png", "detection_delay.png"):
        assert (tmp_path / "report" / name).read_bytes()[:8] == PNG_SIGNATURE
    assert "![scores.png](scores.png)" in (tmp_path / "report" / "summary.md").read_text()
    # The node's own database was never created: replay runs on a scratch database.
    assert not (tmp_path / "data").exists()


def test_replay_text_report_and_config(tmp_path: Path) -> None:
    rows, _ = sweep_and_legit()
    cdr = write_cdr(tmp_path / "Master.csv", rows)
    (tmp_path / "shadow.toml").write_text('[policy]\nmode = "shadow"\n')
    result = cs(tmp_path, "replay", str(cdr), "--out", "v.csv", "--config", "shadow.toml", "--state", "kept.sqlite3")
    assert result.returncode == 0, result.stderr
    assert "mode shadow" in result.stdout and "actions: connect 40" in result.stdout
    assert "decided: connect" in result.stdout and "pattern:sweep" in result.stdout
    assert (tmp_path / "kept.sqlite3").exists()
    explained = cs(tmp_path, "--db", "kept.sqlite3", "explain", "+12025550147", "--json")
    assert explained.returncode == 0, explained.stderr
    decisions = json.loads(explained.stdout)["decisions"]
    assert any((d["reason"], d["action"], d["decided"]) == ("pattern:sweep", "connect", "block") for d in decisions)


def test_bad_input_exit_codes(tmp_path: Path) -> None:
    missing = cs(tmp_path, "replay", "nope.csv", "--out", "v.csv")
    assert missing.returncode == 5 and "cannot read nope.csv" in missing.stderr and "Traceback" not in missing.stderr
    cel = cs(tmp_path, "replay", str(need_shared("cdr", "self_test__CELMaster1.csv")), "--out", "v.csv")
    assert cel.returncode == 5 and "no usable CDR rows" in cel.stderr and "columns 16" in cel.stderr
    buggy = cs(tmp_path, "replay", str(need_shared("cdr", "cdrlib__buggy.csv")), "--out", "v.csv")
    assert buggy.returncode == 5 and "bad_csv 1" in buggy.stderr
    rows, _ = sweep_and_legit()
    cdr = write_cdr(tmp_path / "Master.csv", rows)
    (tmp_path / "labels.csv").write_text("id,kind\n")
    labels = cs(tmp_path, "replay", str(cdr), "--out", "v.csv", "--labels", "labels.csv")
    assert labels.returncode == 5 and "header must name" in labels.stderr
    zone = cs(tmp_path, "replay", str(cdr), "--out", "v.csv", "--timezone", "Mars/Olympus")
    assert zone.returncode == 2 and "unknown time zone" in zone.stderr
    (tmp_path / "bad.toml").write_text("[policy]\nscreen_at = 'high'\n")
    config = cs(tmp_path, "replay", str(cdr), "--out", "v.csv", "--config", "bad.toml")
    assert config.returncode == 3 and "screen_at" in config.stderr
    usage = cs(tmp_path, "replay", str(cdr))
    assert usage.returncode == 2 and "--out" in usage.stderr


def test_real_fixture(tmp_path: Path) -> None:
    result = cs(tmp_path, "replay", str(need_shared("cdr", "self_test__Master.csv")), "--out", "v.csv", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["calls"] == 2


def test_context_filter(tmp_path: Path) -> None:
    rows, _ = sweep_and_legit()
    for row in rows[20:]:
        row[3] = "from-internal"
    cdr = write_cdr(tmp_path / "Master.csv", rows)
    only_inbound = cs(tmp_path, "replay", str(cdr), "--out", "v.csv", "--context", "from-trunk", "--json")
    assert only_inbound.returncode == 0, only_inbound.stderr
    assert json.loads(only_inbound.stdout)["calls"] == 20 and "20 rows in other contexts" in only_inbound.stderr
    nothing = cs(tmp_path, "replay", str(cdr), "--out", "v.csv", "--context", "from-pstn")
    assert nothing.returncode == 5 and "40 rows in other contexts than from-pstn" in nothing.stderr
