"""Small CDR files for the replay tests, written the way Asterisk's cdr_csv writes them."""

from __future__ import annotations

import csv
import time
from collections.abc import Iterable
from pathlib import Path

from tests.conftest import START

CDR_START = START + 3600.0  # 2026-11-18 09:26:40 UTC


def ts(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def cdr_row(
    uniqueid: str,
    caller: str,
    callee: str,
    start: float,
    *,
    ring: float = 5.0,
    billsec: int = 0,
    disposition: str | None = None,
    clid: str | None = None,
    channel: str = "PJSIP/carrier-00000001",
) -> list[str]:
    """One 18-column row; answered when ``billsec`` > 0."""
    answered = billsec > 0
    end = start + ring + billsec
    return [
        "",
        caller,
        callee,
        "from-trunk",
        clid if clid is not None else f'"" <{caller}>',
        channel,
        "PJSIP/100-00000002",
        "Dial",
        "PJSIP/100,30",
        ts(start),
        ts(start + ring) if answered else "",
        ts(end),
        str(int(end - start)),
        str(billsec),
        disposition or ("ANSWERED" if answered else "NO ANSWER"),
        "DOCUMENTATION",
        uniqueid,
        "",
    ]


def write_cdr(path: Path, rows: Iterable[list[str]]) -> Path:
    """Write rows in the order a PBX does: when each call ends."""
    ordered = sorted(rows, key=lambda r: r[11])
    with path.open("w", newline="") as out:
        csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(ordered)
    return path


def write_labels(path: Path, labels: Iterable[tuple[str, str, str, str]]) -> Path:
    with path.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("uniqueid", "label", "family", "campaign"))
        writer.writerows(labels)
    return path


def sweep_and_legit() -> tuple[list[list[str]], list[tuple[str, str, str, str]]]:
    """A sweep campaign (one number dialing 20 consecutive DIDs, one call every 30 s, unanswered)
    among 20 legitimate callers (one answered two-minute call each, every 90 s)."""
    rows: list[list[str]] = []
    labels: list[tuple[str, str, str, str]] = []
    for i in range(20):
        uid = f"sweep.{i}"
        rows.append(cdr_row(uid, "+12025550147", f"+1312555{100 + i:04d}", CDR_START + 30 * i))
        labels.append((uid, "abusive", "sweep", "sweep-1"))
    for i in range(20):
        uid = f"legit.{i}"
        rows.append(cdr_row(uid, f"+1415555{200 + i:04d}", f"+1312555{100 + i:04d}", CDR_START + 90 * i, billsec=120))
        labels.append((uid, "legit", "personal", f"person-{i}"))
    return rows, labels
