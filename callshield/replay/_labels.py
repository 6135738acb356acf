"""Reading the labels of a generated traffic file (``callshield simulate``'s ``labels.csv``).

CSV with a header naming at least ``uniqueid,label,family,campaign`` (any order, more columns
allowed); ``label`` is ``legit`` or ``abusive``; ``campaign`` is the stable id of one actor or
operation (may be empty). Bad rows are counted by reason in :attr:`Labels.rejected`:
``columns`` (fewer fields than the header), ``empty_uniqueid``, ``bad_label``, ``duplicate_uniqueid``
(the first is kept).
"""

from __future__ import annotations

import csv
import gzip
import io
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import msgspec

from callshield.replay._cdr import CdrError

LEGIT: Final = "legit"
ABUSIVE: Final = "abusive"
LABEL_COLUMNS: Final = ("uniqueid", "label", "family", "campaign")


class LabelsError(CdrError):
    """The labels file as a whole is unusable (missing, unreadable, no usable header)."""


class Label(msgspec.Struct, frozen=True, gc=False):
    """The ground truth of one call."""

    label: str
    """``legit`` or ``abusive``."""
    family: str
    campaign: str

    @property
    def abusive(self) -> bool:
        return self.label == ABUSIVE


class Labels(dict[str, Label]):
    """Labels by CDR ``uniqueid``, with the rows that were rejected counted by reason."""

    def __init__(self) -> None:
        super().__init__()
        self.rejected: Counter[str] = Counter()


def read_labels(path: Path | str) -> Labels:
    """Read a labels CSV (plain or gzip); raise :class:`LabelsError` if it cannot be used at all."""
    source = Path(path)
    labels = Labels()
    try:
        with source.open("rb") as raw:
            binary = gzip.GzipFile(fileobj=raw) if raw.peek(2)[:2] == b"\x1f\x8b" else raw
            with io.TextIOWrapper(binary, encoding="utf-8", errors="replace", newline="") as text:
                _read(csv.reader(text), labels, source)
    except OSError as exc:
        raise LabelsError(f"cannot read {source}: {exc.strerror or exc}") from None
    except (csv.Error, EOFError) as exc:
        raise LabelsError(f"{source}: not a CSV file: {exc}") from None
    return labels


def _read(rows: Iterator[list[str]], labels: Labels, source: Path) -> None:
    header = next(rows, None)
    names = [name.strip().lower() for name in header or ()]
    missing = [name for name in LABEL_COLUMNS if name not in names]
    if missing:
        raise LabelsError(f"{source}: the header must name {', '.join(LABEL_COLUMNS)} (missing {', '.join(missing)})")
    uid, lab, fam, camp = (names.index(name) for name in LABEL_COLUMNS)
    width = max(uid, lab, fam, camp) + 1
    rejected = labels.rejected
    for row in rows:
        if len(row) < width:
            rejected["blank_line" if not row else "columns"] += 1
            continue
        uniqueid = row[uid].strip()
        label = row[lab].strip().lower()
        if not uniqueid:
            rejected["empty_uniqueid"] += 1
        elif label not in (LEGIT, ABUSIVE):
            rejected["bad_label"] += 1
        elif uniqueid in labels:
            rejected["duplicate_uniqueid"] += 1
        else:
            labels[uniqueid] = Label(label, row[fam].strip(), row[camp].strip())
