"""Reading an Asterisk ``Master.csv`` (cdr_csv): tolerant, fast, time-ordered.

Layouts accepted (cdr_csv writes no header; one line that looks like a header is skipped):

- 18 columns: accountcode, src, dst, dcontext, clid, channel, dstchannel, lastapp, lastdata, start,
  answer, end, duration, billsec, disposition, amaflags, uniqueid, userfield (``loguniqueid`` and
  ``loguserfield`` on, the default);
- 21 columns: the same plus peeraccount, linkedid, sequence (``newcdrcolumns = yes``).

A row that cannot be used is counted by reason in :attr:`CdrRead.rejected` and skipped, never raised:
``columns`` (another column count, e.g. a CEL file), ``empty_uniqueid``, ``bad_time`` (start, answer
or end not ``YYYY-MM-DD HH:MM:SS[.ffffff]``), ``end_before_start``, ``bad_number`` (duration or
billsec not a non-negative integer), ``duplicate_uniqueid`` (the first usable row is kept),
``bad_csv`` (quoting the CSV parser refuses, such as a last row cut off inside a quoted field).
Only a file that cannot be read at all raises :class:`CdrError`.
"""

from __future__ import annotations

import calendar
import csv
import gzip
import io
import re
import sys
import zlib
from collections import Counter
from collections.abc import Collection, Iterator
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from callshield.errors import ImportFormatError

SHORT_LAYOUT: Final = 18
LONG_LAYOUT: Final = 21
_LAYOUTS: Final = frozenset({SHORT_LAYOUT, LONG_LAYOUT})
_MINUTE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", re.ASCII)
_MINUTE_CACHE = 100_000
"""Distinct minutes remembered by the time parser (69 days of calls); the cache is dropped when full."""
_GZIP_MAGIC = b"\x1f\x8b"


class CdrError(ImportFormatError):
    """The CDR file as a whole cannot be read (missing, unreadable, not text, broken gzip)."""


class CdrCall(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One usable CDR row. Times are seconds since the Unix epoch."""

    uniqueid: str
    src: str
    clid: str
    dst: str
    dcontext: str
    channel: str
    dstchannel: str
    start: float
    answer: float | None
    end: float
    duration: int
    billsec: int
    disposition: str
    accountcode: str = ""
    line: int = 0
    """Row number in the file (the first row is 1; a quoted field may span lines)."""


class CdrRead(msgspec.Struct, kw_only=True):
    """What :func:`read_cdr` found: the usable calls by start time, and the rejected rows by reason."""

    calls: list[CdrCall]
    rejected: Counter[str]
    rows: int
    """Rows read (usable, rejected, other contexts and a skipped header line)."""
    other_context: int = 0
    """Well-formed rows left out because their ``dcontext`` is not one of the ``contexts`` asked for."""


def zone(name: str) -> tzinfo:
    """The time zone named ``name`` (``UTC``, ``Europe/Paris``, ...); ``ValueError`` if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


class TimeParser:
    """Parses CDR times (``YYYY-MM-DD HH:MM:SS``, local to ``tz``) with a per-minute cache.

    A replay parses two or three times per row; a CDR has few distinct minutes, so the epoch of
    each minute is computed once (validated, DST-aware) and the seconds are added to it.
    Ambiguous local times (the repeated hour when DST ends) resolve to the first occurrence.
    """

    __slots__ = ("_minutes", "_tz", "_utc")

    def __init__(self, tz: tzinfo) -> None:
        self._tz = tz
        self._utc = getattr(tz, "key", None) in {"UTC", "Etc/UTC", "Etc/GMT", "GMT", "Zulu", "Etc/Zulu"}
        self._minutes: dict[str, float] = {}

    def parse(self, text: str) -> float | None:
        """Seconds since the epoch, or ``None`` when ``text`` is not a valid time."""
        if len(text) == 19 and text[16] == ":":
            base = self._minutes.get(text[:16])
            if base is None:
                base = self._minute(text[:16])
                if base is None:
                    return self._slow(text)
            seconds = text[17:]
            if seconds.isascii() and seconds.isdigit() and seconds < "60":
                return base + int(seconds)
            return None
        return self._slow(text)

    def _minute(self, prefix: str) -> float | None:
        if not _MINUTE.fullmatch(prefix):
            return None
        try:
            if self._utc:
                year, month, day = int(prefix[:4]), int(prefix[5:7]), int(prefix[8:10])
                when = datetime(year, month, day, int(prefix[11:13]), int(prefix[14:]))
                epoch = float(calendar.timegm(when.timetuple()))
            else:
                epoch = datetime.fromisoformat(prefix).replace(tzinfo=self._tz).timestamp()
        except ValueError:
            return None
        if len(self._minutes) >= _MINUTE_CACHE:
            self._minutes.clear()
        self._minutes[prefix] = epoch
        return epoch

    def _slow(self, text: str) -> float | None:
        """Other spellings datetime accepts (fractional seconds, ``T``, an explicit offset)."""
        text = text.strip()
        if len(text) < 19 or not _MINUTE.fullmatch(text[:16].replace("T", " ")):
            return None
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=self._tz)
        return when.timestamp()


def _open_text(path: Path) -> io.TextIOBase:
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise CdrError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        magic = raw.peek(2)[:2] if isinstance(raw, io.BufferedReader) else b""
        if magic == _GZIP_MAGIC:
            return io.TextIOWrapper(gzip.GzipFile(fileobj=raw), encoding="utf-8", errors="replace", newline="")
        return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
    except OSError as exc:
        raw.close()
        raise CdrError(f"cannot read {path}: {exc}") from None


def _rows(text: io.TextIOBase, path: Path) -> Iterator[list[str] | None]:
    """The file's rows; ``None`` for a row the CSV parser refuses (bad quoting, a truncated last row)."""
    csv.field_size_limit(min(sys.maxsize, 1 << 20))
    reader = csv.reader(text, strict=True)
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error:
            yield None  # the parser drops the line and goes on with the next one
        except (OSError, EOFError, zlib.error) as exc:
            raise CdrError(f"{path}: cannot read: {exc}") from None


def read_cdr(path: Path | str, *, timezone: str = "UTC", contexts: Collection[str] | None = None) -> CdrRead:
    """Read a cdr_csv file (plain or gzip) whose times are local to ``timezone``.

    With ``contexts``, only rows whose ``dcontext`` is one of them are read (a PBX's CDR also has its
    outbound and internal calls; the inbound context is e.g. ``from-trunk`` or ``from-pstn``).
    Returns the usable calls sorted by start time (file order among equal starts) and the rejected
    rows counted by reason. Raises :class:`CdrError` if the file cannot be read at all and
    ``ValueError`` for an unknown time zone.
    """
    source = Path(path)
    wanted = frozenset(contexts) if contexts is not None else None
    other_context = 0
    parse = TimeParser(zone(timezone)).parse
    calls: list[CdrCall] = []
    rejected: Counter[str] = Counter()
    seen: set[str] = set()
    line = 0
    with _open_text(source) as text:
        for row in _rows(text, source):
            line += 1
            if row is None:
                rejected["bad_csv"] += 1
                continue
            width = len(row)
            if width not in _LAYOUTS:
                rejected["blank_line" if width == 0 else "columns"] += 1
                continue
            start_text, answer_text, end_text = row[9], row[10], row[11]
            uniqueid = row[16].strip()
            if line == 1 and start_text == "start" and uniqueid == "uniqueid":
                continue  # a header some exporters add
            if wanted is not None and row[3] not in wanted:
                other_context += 1
                continue
            if not uniqueid:
                rejected["empty_uniqueid"] += 1
                continue
            start, end = parse(start_text), parse(end_text)
            answer = parse(answer_text) if answer_text else None
            if start is None or end is None or (answer is None and answer_text):
                rejected["bad_time"] += 1
                continue
            if end < start:
                rejected["end_before_start"] += 1
                continue
            duration_text, billsec_text = row[12].strip(), row[13].strip()
            if not (
                duration_text.isascii()
                and duration_text.isdigit()
                and billsec_text.isascii()
                and billsec_text.isdigit()
            ):
                rejected["bad_number"] += 1
                continue
            if uniqueid in seen:
                rejected["duplicate_uniqueid"] += 1
                continue
            seen.add(uniqueid)
            calls.append(
                CdrCall(
                    uniqueid=uniqueid,
                    src=row[1].strip(),
                    clid=row[4],
                    dst=row[2].strip(),
                    dcontext=row[3],
                    channel=row[5],
                    dstchannel=row[6],
                    start=start,
                    answer=answer,
                    end=end,
                    duration=int(duration_text),
                    billsec=int(billsec_text),
                    disposition=row[14].strip(),
                    accountcode=row[0],
                    line=line,
                )
            )
    calls.sort(key=_start)
    return CdrRead(calls=calls, rejected=rejected, rows=line, other_context=other_context)


def _start(call: CdrCall) -> float:
    return call.start
