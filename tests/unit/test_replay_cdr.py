"""The CDR reader: both layouts, time parsing, ordering, and counted rejections (own and real fixtures)."""

from __future__ import annotations

import calendar
import gzip
import shutil
import time
from pathlib import Path

import pytest

from callshield.replay import CdrError, TimeParser, read_cdr
from callshield.replay._cdr import zone
from tests.conftest import need_shared

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "replay"


def utc(text: str) -> float:
    return float(calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S")))


def test_malformed_rows_are_counted_by_reason_and_skipped() -> None:
    read = read_cdr(FIXTURES / "malformed.csv")
    assert read.rows == 14
    assert dict(read.rejected) == {
        "columns": 1,  # 17 columns
        "blank_line": 1,
        "bad_time": 2,  # a start without seconds, an answer time "soon"
        "end_before_start": 1,
        "empty_uniqueid": 1,
        "bad_number": 2,  # duration "abc", billsec -3
        "duplicate_uniqueid": 1,
        "bad_csv": 2,  # a quote inside a field, a last row cut off inside a quoted field
    }
    assert [c.uniqueid for c in read.calls] == ["1795049990.11", "1795050010.1", "1795050020.2"]


def test_fields_of_both_layouts() -> None:
    first, second, third = read_cdr(FIXTURES / "malformed.csv").calls
    assert first.start == utc("2026-11-18 08:59:50") and first.answer == utc("2026-11-18 08:59:55")
    assert (first.end, first.duration, first.billsec, first.disposition) == (
        utc("2026-11-18 09:03:00"),
        190,
        185,
        "ANSWERED",
    )
    assert first.channel == "SIP/other-0000abcd" and first.dst == "+13125550102"
    assert second.src == "+14155550101" and second.line == 1
    # The 21-column layout (peeraccount, linkedid, sequence), with an empty src and no answer time.
    assert (third.src, third.clid, third.answer, third.disposition) == (
        "",
        '"Bob Smith" <4155550102>',
        None,
        "NO ANSWER",
    )


def test_calls_come_out_in_start_order_whatever_the_file_order(tmp_path: Path) -> None:
    # cdr_csv appends a row when a call ends: the long call that started first is written last.
    read = read_cdr(FIXTURES / "malformed.csv")
    assert [c.line for c in read.calls] == [13, 1, 2]
    starts = [c.start for c in read.calls]
    assert starts == sorted(starts)


def test_gzip_reads_like_plain(tmp_path: Path) -> None:
    packed = tmp_path / "Master.csv.gz"
    with (FIXTURES / "malformed.csv").open("rb") as src, gzip.open(packed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    plain, zipped = read_cdr(FIXTURES / "malformed.csv"), read_cdr(packed)
    assert zipped.calls == plain.calls and zipped.rejected == plain.rejected


def test_a_header_line_is_skipped(tmp_path: Path) -> None:
    header = (
        "accountcode,src,dst,dcontext,clid,channel,dstchannel,lastapp,lastdata,start,answer,end,duration,billsec,"
        "disposition,amaflags,uniqueid,userfield\n"
    )
    path = tmp_path / "with-header.csv"
    path.write_text(header + (FIXTURES / "malformed.csv").read_text().splitlines()[0] + "\n")
    read = read_cdr(path)
    assert len(read.calls) == 1 and not read.rejected


def test_time_zone_of_the_cdr() -> None:
    paris = read_cdr(FIXTURES / "malformed.csv", timezone="Europe/Paris").calls[0]
    assert paris.start == utc("2026-11-18 08:59:50") - 3600  # CET is UTC+1 in November
    with pytest.raises(ValueError, match="unknown time zone"):
        read_cdr(FIXTURES / "malformed.csv", timezone="Mars/Olympus")


def test_time_parser_validates_and_handles_dst() -> None:
    parse = TimeParser(zone("UTC")).parse
    assert parse("2026-11-18 09:00:10") == utc("2026-11-18 09:00:10")
    assert parse("2026-11-18 09:00:10.250000") == utc("2026-11-18 09:00:10") + 0.25
    assert parse("2026-11-18T09:00:10") == parse("2026-11-18 09:00:10+00:00") == utc("2026-11-18 09:00:10")
    for bad in (
        "2026-02-30 10:00:00",
        "2026-11-18 10:00:60",
        "2026-11-18 10:00:6x",
        "2026-11-18T25:00:00",
        "",
        "x" * 19,
    ):
        assert parse(bad) is None, bad
    new_york = TimeParser(zone("America/New_York")).parse
    assert new_york("2026-07-01 12:00:00") == utc("2026-07-01 16:00:00")  # EDT
    assert new_york("2026-12-01 12:00:00") == utc("2026-12-01 17:00:00")  # EST
    # The same minute cached for one zone is not reused by another parser.
    assert TimeParser(zone("UTC")).parse("2026-07-01 12:00:00") == utc("2026-07-01 12:00:00")


def test_unreadable_files_raise_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CdrError, match="cannot read"):
        read_cdr(tmp_path / "missing.csv")
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(gzip.compress(b'"a","b"\n' * 1000)[:40])
    with pytest.raises(CdrError):
        read_cdr(broken)


def test_real_fixtures() -> None:
    good = read_cdr(need_shared("cdr", "cdrlib__good.csv"))
    assert len(good.calls) == 1 and dict(good.rejected) == {"duplicate_uniqueid": 4}  # five rows, one uniqueid
    buggy = read_cdr(need_shared("cdr", "cdrlib__buggy.csv"))
    assert not buggy.calls and dict(buggy.rejected) == {"bad_csv": 1}  # cut off inside the last quoted field
    master = read_cdr(need_shared("cdr", "self_test__Master.csv"))
    assert len(master.calls) == 2 and not master.rejected
    # Asterisk's uniqueid starts with the channel's creation time: these times were written in UTC.
    assert all(call.start == float(call.uniqueid) for call in master.calls)
    cel = read_cdr(need_shared("cdr", "self_test__CELMaster1.csv"))
    assert not cel.calls and dict(cel.rejected) == {"columns": 16}  # a CEL file is not a CDR


def test_only_the_inbound_context(tmp_path: Path) -> None:
    lines = (FIXTURES / "malformed.csv").read_text().splitlines()
    outbound = lines[0].replace('"from-trunk"', '"from-internal"').replace("1795050010.1", "out.1")
    path = tmp_path / "mixed.csv"
    path.write_text("\n".join([lines[0], outbound, lines[12]]) + "\n")
    everything = read_cdr(path)
    inbound = read_cdr(path, contexts=["from-trunk"])
    assert len(everything.calls) == 3 and everything.other_context == 0
    assert [c.uniqueid for c in inbound.calls] == ["1795049990.11", "1795050010.1"]
    assert inbound.other_context == 1 and not inbound.rejected
