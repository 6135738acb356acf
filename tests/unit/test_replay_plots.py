"""The report directory: valid PNG plots, summary.md and report.json."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import msgspec

from callshield.config import Config
from callshield.replay import ReplayReport, build_report, write_report_dir
from tests.unit.test_replay_report import dataset

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > 10_000, (path, len(data))  # axes, bars, labels: not an empty canvas
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, height) == (800, 450)


def test_labelled_report_dir(tmp_path: Path) -> None:
    rows, labels = dataset()
    report = build_report(rows, labels, policy=Config().policy)
    written = write_report_dir(report, tmp_path / "report")
    names = sorted(p.name for p in written)
    assert names == ["detection_delay.png", "precision_recall.png", "report.json", "scores.png", "summary.md"]
    for name in ("scores.png", "precision_recall.png", "detection_delay.png"):
        assert_png(tmp_path / "report" / name)
    summary = (tmp_path / "report" / "summary.md").read_text()
    for image in ("scores.png", "precision_recall.png", "detection_delay.png"):
        assert f"]({image})" in summary
    assert "| abusive, after a campaign's first 10 calls | 6 | 5 (83.33%) |" in summary
    assert "| robocall | 2 | 0 | 3 | 11 |" in summary
    saved = (tmp_path / "report" / "report.json").read_bytes()
    assert json.loads(saved)["labelled"]["abusive"]["calls"] == 33
    assert msgspec.json.decode(saved, type=ReplayReport) == report  # plots can be redrawn from it


def test_unlabelled_report_dir_has_the_score_plot_only(tmp_path: Path) -> None:
    rows, _ = dataset()
    written = write_report_dir(build_report(rows, None, policy=Config().policy), tmp_path)
    assert sorted(p.name for p in written) == ["report.json", "scores.png", "summary.md"]
    assert_png(tmp_path / "scores.png")
    assert "Labelled traffic" not in (tmp_path / "summary.md").read_text()
