"""The verdicts file a replay writes (one row per call), and reading it back for a report.

Columns: ``uniqueid,start,action,decided,score,reason,mode,reasons,caller,callee`` and, when labels
were given, ``label,family,campaign``. ``start`` is the call's start in UTC (``YYYY-MM-DD HH:MM:SS``),
``action`` what the PBX would have been told, ``decided`` what the policy decided before shadow
mode, ``reasons`` every reason code, ``;``-separated.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final, TextIO

import msgspec

from callshield.replay._cdr import CdrError, TimeParser, zone
from callshield.replay._labels import Label
from callshield.replay._runner import ReplayRecord

VERDICT_COLUMNS: Final = (
    "uniqueid",
    "start",
    "action",
    "decided",
    "score",
    "reason",
    "mode",
    "reasons",
    "caller",
    "callee",
)
LABEL_COLUMNS: Final = ("label", "family", "campaign")
_NO_LABEL: Final = ("", "", "")


class VerdictRow(msgspec.Struct, frozen=True, gc=False):
    """What a report needs of one decided call."""

    uniqueid: str
    start: float
    action: str
    decided: str
    score: int
    reason: str


def row_of(record: ReplayRecord) -> VerdictRow:
    verdict = record.verdict
    return VerdictRow(
        record.cdr.uniqueid,
        record.cdr.start,
        verdict.action.value,
        verdict.decided.value,
        verdict.score,
        verdict.reason,
    )


class VerdictWriter:
    """Writes replay records as CSV rows, streaming."""

    def __init__(self, out: TextIO, labels: Mapping[str, Label] | None = None) -> None:
        self._writer = csv.writer(out, lineterminator="\n")
        self._labels = labels
        self._writer.writerow(VERDICT_COLUMNS + (LABEL_COLUMNS if labels is not None else ()))
        self._second = -1
        self._text = ""

    def write(self, record: ReplayRecord) -> VerdictRow:
        """Write ``record``'s row; return what a report needs of it."""
        row = row_of(record)
        verdict = record.verdict
        second = int(row.start)
        if second != self._second:  # replays come in time order: one formatting per second
            self._second, self._text = second, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))
        fields = [
            row.uniqueid,
            self._text,
            row.action,
            row.decided,
            row.score,
            row.reason,
            verdict.mode.value,
            ";".join([r.code for r in verdict.reasons]),
            verdict.caller,
            verdict.callee,
        ]
        if self._labels is not None:
            label = self._labels.get(row.uniqueid)
            fields.extend((label.label, label.family, label.campaign) if label is not None else _NO_LABEL)
        self._writer.writerow(fields)
        return row


def read_verdicts(path: Path | str) -> Iterator[VerdictRow]:
    """Read a verdicts file back (for :func:`build_report` on a saved replay); raise :class:`CdrError`
    if it is not one. Rows with a bad time or score are skipped."""
    source = Path(path)
    parse = TimeParser(zone("UTC")).parse
    try:
        with source.open(encoding="utf-8", newline="") as text:
            reader = csv.reader(text)
            header = next(reader, [])
            if tuple(header[: len(VERDICT_COLUMNS)]) != VERDICT_COLUMNS:
                raise CdrError(
                    f"{source}: not a verdicts file (the header must start with {','.join(VERDICT_COLUMNS)})"
                )
            for fields in reader:
                if len(fields) < len(VERDICT_COLUMNS):
                    continue
                start = parse(fields[1])
                if start is None or not fields[4].isdigit():
                    continue
                yield VerdictRow(fields[0], start, fields[2], fields[3], int(fields[4]), fields[5])
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise CdrError(f"cannot read {source}: {exc}") from None
