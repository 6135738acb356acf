"""The CDR writer: Asterisk ``cdr_csv``'s Master.csv layout, 18 columns, no header.

Columns: accountcode, src, dst, dcontext, clid, channel, dstchannel, lastapp, lastdata, start, answer,
end, duration, billsec, disposition, amaflags, uniqueid, userfield. As ``cdr_csv`` writes them: every
text field in double quotes with ``"`` doubled, ``duration`` and ``billsec`` bare integers, times
``YYYY-MM-DD HH:MM:SS`` (here always UTC), ``answer`` empty when the call was not answered.
``clid`` follows ``ast_callerid_merge``: ``"name" <number>``, or the number alone without a name,
or the name alone without a number.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Final, TextIO

from callshield.simulate._call import ANSWERED, FAILED, SimCall
from callshield.simulate._mix import MAX_CALL_SECONDS
from callshield.simulate._world import Did

__all__ = ["CDR_COLUMNS", "write_cdr"]

CDR_COLUMNS: Final = (
    "accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp", "lastdata",
    "start", "answer", "end", "duration", "billsec", "disposition", "amaflags", "uniqueid", "userfield",
)  # fmt: skip
_CONTEXT: Final = "from-trunk"
_DIAL_TIMEOUT: Final = 30


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


_DAY: Final = MAX_CALL_SECONDS
# A call lasts at most MAX_CALL_SECONDS (one day, checked in _mix): the table covers its end.


def _caller_fields(src: str, name: str) -> tuple[str, str]:
    """The quoted src and clid fields (``ast_callerid_merge``'s clid)."""
    return _quote(src), _quote(f'"{name}" <{src}>' if name and src else name or src)


def _two_days(day_start: int, times: list[str]) -> list[str]:
    """'YYYY-MM-DD HH:MM:SS' (UTC) for every second of the day starting at ``day_start`` and the next."""
    stamps: list[str] = []
    for day in (day_start, day_start + _DAY):
        date = datetime.fromtimestamp(day, tz=UTC).strftime("%Y-%m-%d ")
        stamps.extend([date + time for time in times])
    return stamps


def write_cdr(out: TextIO, calls: Iterable[SimCall], dids: Sequence[Did], first_channel: int) -> int:
    """Write ``calls`` (in time order) as Master.csv rows; returns the number of rows.

    Channel names end in Asterisk's one global channel counter, starting at ``first_channel``: the
    inbound channel takes the next value, the dialled leg (unless the call failed) the one after.
    """
    times = [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]
    day_start, stamps = -1, []
    sequence = first_channel  # below 2**31: 8 hex digits for the next two billion channels
    # Per DID: the text after src ('"dst","context",'), the channel's prefix, the dialled leg's prefix
    # and the text after dstchannel ('"Dial","PJSIP/ext,30",').
    middles = [f'"{did.delivered}","{_CONTEXT}",' for did in dids]
    channels = [f'"PJSIP/trunk-{did.trunk.name}-' for did in dids]
    dst_prefixes = [f'"PJSIP/{did.extension}-' for did in dids]
    dials = [f'"Dial","PJSIP/{did.extension},{_DIAL_TIMEOUT}",' for did in dids]
    tails = {
        disposition: f',"{disposition}","DOCUMENTATION","' for disposition in (ANSWERED, "NO ANSWER", "BUSY", FAILED)
    }
    callers: dict[tuple[str, str], tuple[str, str]] = {}
    rows = 0
    write = out.write
    for call in calls:
        index = call.did
        disposition = call.disposition
        channel = sequence
        if disposition == FAILED:
            dstchannel = '""'
            sequence += 1
        else:
            dstchannel = f'{dst_prefixes[index]}{sequence + 1:08x}"'
            sequence += 2
        key = (call.src, call.name)
        caller_fields = callers.get(key)
        if caller_fields is None:
            caller_fields = callers[key] = _caller_fields(*key)
        start, ring, billsec = call.start, call.ring, call.billsec
        duration = ring + billsec
        offset = start - day_start
        if not 0 <= offset < _DAY:
            day_start = start - start % _DAY
            stamps = _two_days(day_start, times)
            offset = start - day_start
        answer = stamps[offset + ring] if disposition == ANSWERED else ""
        write(
            f'"",{caller_fields[0]},{middles[index]}{caller_fields[1]},{channels[index]}{channel:08x}",'
            f'{dstchannel},{dials[index]}"{stamps[offset]}","{answer}","{stamps[offset + duration]}",'
            f'{duration},{billsec}{tails[disposition]}{call.uniqueid}",""\n'
        )
        rows += 1
    return rows
