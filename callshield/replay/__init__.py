"""CDR replay: run an Asterisk CDR through the decision engine on simulated time, and report.

``callshield replay`` is a thin layer over these:

- :func:`read_cdr` reads a ``Master.csv`` (tolerant: bad rows are counted by reason) into
  time-ordered :class:`CdrCall` rows; :func:`read_labels` reads a generated traffic's labels;
- :func:`replay` decides each call at its start and feeds its real outcome back at its end, on a
  scratch database, yielding a :class:`ReplayRecord` (CDR row + :class:`~callshield.verdict.Verdict`,
  whose ``features`` are the live feature vector) per call;
- :func:`build_report` computes a :class:`ReplayReport` (counts, scores and, with labels, catch
  rates, false positives, detection delays); :func:`write_report_dir` writes its plots and summary.
"""

from callshield.replay._cdr import CdrCall, CdrError, CdrRead, TimeParser, read_cdr
from callshield.replay._cli import replay_command
from callshield.replay._labels import ABUSIVE, LEGIT, Label, Labels, LabelsError, read_labels
from callshield.replay._plots import write_report_dir
from callshield.replay._report import (
    AFTER_FIRST,
    CampaignDelay,
    Detection,
    FamilyFigures,
    LabelledFigures,
    ReplayReport,
    ScoreSummary,
    Share,
    ThresholdPoint,
    build_report,
    format_report,
)
from callshield.replay._runner import ReplayRecord, call_of, outcome_of, replay
from callshield.replay._verdicts import VERDICT_COLUMNS, VerdictRow, VerdictWriter, read_verdicts

__all__ = [
    "ABUSIVE",
    "AFTER_FIRST",
    "LEGIT",
    "VERDICT_COLUMNS",
    "CampaignDelay",
    "CdrCall",
    "CdrError",
    "CdrRead",
    "Detection",
    "FamilyFigures",
    "Label",
    "LabelledFigures",
    "Labels",
    "LabelsError",
    "ReplayRecord",
    "ReplayReport",
    "ScoreSummary",
    "Share",
    "ThresholdPoint",
    "TimeParser",
    "VerdictRow",
    "VerdictWriter",
    "build_report",
    "call_of",
    "format_report",
    "outcome_of",
    "read_cdr",
    "read_labels",
    "read_verdicts",
    "replay",
    "replay_command",
    "write_report_dir",
]
