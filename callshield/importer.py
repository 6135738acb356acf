"""Bulk blocklist import and export.

Formats:
    ``ftc``   the FTC Do-Not-Call complaint CSV (header names ``company_phone_number`` and a date column,
              ``complaint_date``, ``violation_date`` or ``created_date``); gzip is detected by content.
              Each row is one complaint (weight 1) dated by its row, or by the import time with
              ``dates="now"``.
    ``list``  one number per line; ``#`` starts a comment; text after a comma is ignored. Each number
              is one listing (weight 2) dated now.

Rules: a bad row is counted under a reason and skipped, never fatal; an import is one transaction,
so an import killed halfway leaves the database exactly as before it; a file already imported
(same SHA-256) is refused unless forced, so evidence is never counted twice by accident.
Speed: numbers are deduplicated and aggregated in numpy before one sorted upsert pass, and the common
national forms skip libphonenumber (:func:`callshield.numbers.fast_key`).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import sqlite3
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal

import msgspec
import numpy as np

from callshield import db
from callshield.errors import ImportFormatError
from callshield.numbers import Normalizer, NumberKind, fast_key
from callshield.reputation import COLUMNS, DEFAULT_WEIGHT, REPORTS, UPSERT, EvidenceKind, ReputationStore

Format = Literal["ftc", "list"]
_DATE_COLUMNS = ("complaint_date", "violation_date", "created_date", "date")
_NUMBER_COLUMNS = ("company_phone_number", "phone_number", "number", "caller")
_MAX_LINE = 4096
_BATCH = 50_000


@dataclass
class ImportResult:
    """What an import did."""

    source: str
    format: str
    rows: int = 0
    accepted: int = 0
    numbers: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    digest: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "format": self.format,
            "rows": self.rows,
            "accepted": self.accepted,
            "numbers": self.numbers,
            "rejected": dict(self.rejected),
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows / self.seconds) if self.seconds else None,
        }


class _HashingReader(io.RawIOBase):
    """Reads a file while hashing it and reporting progress in bytes."""

    def __init__(self, raw: IO[bytes], progress: Callable[[int], object]) -> None:
        self._raw = raw
        self._progress = progress
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.sha256.update(data)
        self._progress(n)
        return n


class _Aggregate:
    """Accepted (number, date) pairs, kept compact until they are summed per number."""

    def __init__(self) -> None:
        self.keys = array("q")
        self.dates = array("d")

    def add(self, key: int, when: float) -> None:
        self.keys.append(key)
        self.dates.append(when)

    def grouped(self, store: ReputationStore, weight: float) -> tuple[int, Iterator[tuple[float | int, ...]]]:
        """How many distinct numbers, and their upsert rows in key order."""
        if not self.keys:
            return 0, iter(())
        keys = np.frombuffer(self.keys, dtype=np.int64)
        dates = np.frombuffer(self.dates, dtype=np.float64)
        order = np.argsort(keys, kind="stable")
        keys, dates = keys[order], dates[order]
        starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
        scaled = weight * np.exp2((dates - store.epoch) / store.half_life)
        sums = np.add.reduceat(scaled, starts)
        firsts = np.minimum.reduceat(dates, starts)
        lasts = np.maximum.reduceat(dates, starts)
        numbers = keys[starts]

        def rows() -> Iterator[tuple[float | int, ...]]:
            zeros = (0.0,) * (len(COLUMNS) - 1 - REPORTS)
            for low in range(0, int(starts.size), _BATCH):  # converted in slices to bound memory
                part = slice(low, low + _BATCH)
                for number, first, last, total in zip(
                    numbers[part].tolist(),
                    firsts[part].tolist(),
                    lasts[part].tolist(),
                    sums[part].tolist(),
                    strict=True,
                ):
                    yield (number, first, last, 0, total, *zeros)

        return int(starts.size), rows()


def _open_text(reader: _HashingReader) -> io.TextIOWrapper:
    buffered = io.BufferedReader(reader, buffer_size=1 << 20)
    magic = buffered.peek(2)[:2]
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.GzipFile(fileobj=buffered), encoding="utf-8", errors="replace", newline="")
    return io.TextIOWrapper(buffered, encoding="utf-8", errors="replace", newline="")


class _KeyResolver:
    """Caller string to storage key: the fast path, else a cached full normalization."""

    def __init__(self, normalizer: Normalizer, region: str) -> None:
        self._normalizer = normalizer
        self._region = region
        self._slow: dict[str, int | str] = {}

    def key(self, raw: str) -> int | str:
        """The key, or the rejection reason."""
        key = fast_key(raw, self._region)
        if key is not None:
            return key
        found = self._slow.get(raw)
        if found is None:
            info = self._normalizer.normalize(raw, region=self._region)
            if info.key is not None:
                found = info.key
            elif info.kind in (NumberKind.TOO_SHORT, NumberKind.TOO_LONG):
                found = info.kind.value
            elif info.kind is NumberKind.SHORT_CODE:
                found = "short_code"
            else:
                found = "not_a_number"
            if len(self._slow) < 1_000_000:
                self._slow[raw] = found
        return found


def _parse_date(text: str, cache: dict[str, float | None]) -> float | None:
    found = cache.get(text, False)
    if found is not False:
        return found
    value: float | None
    try:
        parsed = datetime.fromisoformat(text.strip())
        value = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    except ValueError:
        value = None
    if len(cache) < 100_000:
        cache[text] = value
    return value


def _read_ftc(
    text: io.TextIOWrapper,
    resolver: _KeyResolver,
    result: ImportResult,
    agg: _Aggregate,
    now: float,
    use_row_dates: bool,
) -> None:
    reader = csv.reader(text)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except (StopIteration, csv.Error) as exc:
        raise ImportFormatError(f"{result.source}: empty file or unreadable header") from exc
    number_col = next((header.index(c) for c in _NUMBER_COLUMNS if c in header), None)
    date_col = next((header.index(c) for c in _DATE_COLUMNS if c in header), None)
    if number_col is None:
        raise ImportFormatError(
            f"{result.source}: no phone number column (expected one of {_NUMBER_COLUMNS}); header is {header[:10]}"
        )
    width = len(header)
    dates: dict[str, float | None] = {}
    rejected = result.rejected
    rows = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error:
            rows += 1
            rejected["malformed_row"] += 1
            continue
        rows += 1
        if len(row) != width:
            rejected["wrong_column_count"] += 1
            continue
        raw = row[number_col]
        if not raw.strip():
            rejected["empty_number"] += 1
            continue
        key = resolver.key(raw)
        if isinstance(key, str):
            rejected[key] += 1
            continue
        when = now
        if use_row_dates and date_col is not None:
            parsed = _parse_date(row[date_col], dates)
            if parsed is None:
                rejected["bad_date"] += 1
                continue
            when = parsed
        agg.add(key, when)
    result.rows = rows


def _read_list(
    text: io.TextIOWrapper, resolver: _KeyResolver, result: ImportResult, agg: _Aggregate, now: float
) -> None:
    rows = 0
    for line in text:
        rows += 1
        if len(line) > _MAX_LINE:
            result.rejected["line_too_long"] += 1
            continue
        entry = line.split("#", 1)[0].split(",", 1)[0].strip()
        if not entry:
            rows -= 1  # blank lines and comments are not rows
            continue
        key = resolver.key(entry)
        if isinstance(key, str):
            result.rejected[key] += 1
            continue
        agg.add(key, now)
    result.rows = rows


def import_file(
    conn: sqlite3.Connection,
    store: ReputationStore,
    path: Path,
    *,
    fmt: Format,
    region: str,
    normalizer: Normalizer,
    now: float,
    dates: Literal["row", "now"] = "row",
    force: bool = False,
    progress: Callable[[int], object] = lambda _n: None,
) -> ImportResult:
    """Import a blocklist file in one transaction (see module docstring)."""
    result = ImportResult(source=str(path), format=fmt)
    started = now
    agg = _Aggregate()
    resolver = _KeyResolver(normalizer, region)
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise ImportFormatError(f"{path}: cannot open: {exc}") from None
    with raw:
        hashing = _HashingReader(raw, progress)
        text = _open_text(hashing)
        try:
            if fmt == "ftc":
                _read_ftc(text, resolver, result, agg, now, dates == "row")
            else:
                _read_list(text, resolver, result, agg, now)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise ImportFormatError(f"{path}: unreadable ({exc}); nothing was imported") from None
    result.digest = hashing.sha256.hexdigest()
    result.accepted = len(agg.keys)
    _refuse_duplicate(conn, result, force)
    weight = DEFAULT_WEIGHT[EvidenceKind.COMPLAINT if fmt == "ftc" else EvidenceKind.LISTED]
    result.numbers, grouped = agg.grouped(store, weight)
    record = (
        "INSERT INTO imports (started, finished, source, digest, format, rows, accepted, numbers, rejected) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                started,
                now,
                str(path),
                result.digest,
                fmt,
                result.rows,
                result.accepted,
                result.numbers,
                msgspec.json.encode(dict(result.rejected)).decode(),
            )
        ],
    )
    db.apply(conn, [(UPSERT, grouped), record, db.BUMP_GENERATION])
    return result


def _refuse_duplicate(conn: sqlite3.Connection, result: ImportResult, force: bool) -> None:
    if force:
        return
    row = conn.execute("SELECT finished, source FROM imports WHERE digest = ?", (result.digest,)).fetchone()
    if row is not None:
        when = datetime.fromtimestamp(row[0], UTC).strftime("%Y-%m-%d %H:%M UTC")
        raise ImportFormatError(
            f"{result.source}: this file was already imported on {when} (as {row[1]}); "
            "use --force to count its evidence again"
        )


def export_rows(
    store: ReputationStore, now: float, *, min_reports: float = 0.0
) -> Iterator[tuple[str, float, float, float, str, str]]:
    """(e164, reports, legit, screen_failed, first_seen, last_seen) for numbers with enough reports."""
    for number, first, last, view in store.iter_decayed(now):
        if view.reports + view.peer_bad < min_reports or (min_reports <= 0 and view.reports <= 0):
            continue
        yield (
            f"+{number}",
            round(view.reports, 4),
            round(view.legit_calls, 4),
            round(view.screen_failed, 4),
            _iso(first),
            _iso(last),
        )


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
