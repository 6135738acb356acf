"""Blocklist import: formats, counted rejections, one transaction, duplicates, export."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from callshield import db
from callshield.errors import ImportFormatError
from callshield.importer import export_rows, import_file
from callshield.numbers import Normalizer
from callshield.reputation import ReputationStore
from tests.conftest import need_shared

NOW = 1_795_000_000.0
NORMALIZER = Normalizer(default_region="US")


def store_at(path: Path, half_life: float = 30 * 86400) -> tuple[ReputationStore, object]:
    conn = db.connect(path)
    return ReputationStore(conn, half_life=half_life, now=NOW), conn


def run(path: Path, file: Path, fmt: str = "ftc", **kw: object) -> object:
    store, conn = store_at(path)
    return import_file(conn, store, file, fmt=fmt, region="US", normalizer=NORMALIZER, now=NOW, **kw)  # type: ignore[arg-type]


JUNK_FTC = (
    "complaint_date,company_phone_number,consumer_area_code\n"
    "2026-11-01,8883171559,415\n"
    "2026-11-02,8883171559,415\n"  # same number again: one number, two complaints
    "2026-11-02,(503) 760-2104,971\n"
    "2026-11-03,__________,415\n"  # junk
    "2026-11-03,,415\n"  # empty
    "2026-11-03,5551234,415\n"  # 7 digits
    "not-a-date,8042444957,804\n"  # bad date
    "2026-11-03,8042444957\n"  # wrong column count
    '2026-11-03,"804\x00244",804\n'  # NUL inside
    "2026-11-03,+442079460958,\n"  # foreign E.164, empty area code is fine
    "2026-11-04,'; DROP TABLE reputation;--,1\n"
)


def test_ftc_rows_are_counted_by_reason(tmp_path: Path) -> None:
    file = tmp_path / "ftc.csv"
    file.write_text(JUNK_FTC)
    result = run(tmp_path / "db", file)
    assert result.rows == 11  # type: ignore[attr-defined]
    assert result.accepted == 4  # type: ignore[attr-defined]
    assert result.numbers == 3  # type: ignore[attr-defined]
    rejected = dict(result.rejected)  # type: ignore[attr-defined]
    assert sum(rejected.values()) == 7
    assert rejected["bad_date"] == 1 and rejected["wrong_column_count"] == 1 and rejected["empty_number"] == 1
    store, _ = store_at(tmp_path / "db")
    assert store.count() == 3
    expected = 2 * 2 ** (-(NOW - 1_793_577_600 - 43_200) / (30 * 86400))  # roughly: two complaints ~16 days old
    assert store.view(18883171559, NOW).reports == pytest.approx(expected, rel=0.2)


def test_gzip_and_invalid_utf8(tmp_path: Path) -> None:
    file = tmp_path / "ftc.csv.gz"
    file.write_bytes(
        gzip.compress(
            b"complaint_date,company_phone_number,consumer_area_code\n"
            b"2026-11-01,8883171559,415\n2026-11-01,88\xff\xfe31,415\n"
        )
    )
    result = run(tmp_path / "db", file)
    assert (result.rows, result.accepted) == (2, 1)  # type: ignore[attr-defined]


def test_list_format(tmp_path: Path) -> None:
    file = tmp_path / "list.txt"
    file.write_text(
        "# my blocklist\n+14155550123\n\n(212) 555-0199, robocaller\njunk\n4155550123 # dup\n" + "9" * 5000 + "\n"
    )
    result = run(tmp_path / "db", file, fmt="list")
    assert (result.rows, result.accepted, result.numbers) == (5, 3, 2)  # type: ignore[attr-defined]
    assert dict(result.rejected) == {"not_a_number": 1, "line_too_long": 1}  # type: ignore[attr-defined]
    store, _ = store_at(tmp_path / "db")
    assert store.view(14155550123, NOW).reports == pytest.approx(4.0)  # two listings of weight 2


def test_same_file_twice_is_refused_unless_forced(tmp_path: Path) -> None:
    file = tmp_path / "list.txt"
    file.write_text("+14155550123\n")
    run(tmp_path / "db", file, fmt="list")
    with pytest.raises(ImportFormatError, match="already imported"):
        run(tmp_path / "db", file, fmt="list")
    run(tmp_path / "db", file, fmt="list", force=True)
    store, _ = store_at(tmp_path / "db")
    assert store.view(14155550123, NOW).reports == pytest.approx(4.0)


def test_unusable_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ImportFormatError, match="empty file"):
        run(tmp_path / "db", empty)
    no_number = tmp_path / "other.csv"
    no_number.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ImportFormatError, match="no phone number column"):
        run(tmp_path / "db", no_number)
    broken_gz = tmp_path / "broken.csv.gz"
    lines = "".join(f"2026-11-01,{4155550000 + i * 7919 % 10000}\n" for i in range(5000))
    whole = gzip.compress(("complaint_date,company_phone_number\n" + lines).encode())
    broken_gz.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ImportFormatError, match="nothing was imported"):
        run(tmp_path / "db", broken_gz)
    store, _ = store_at(tmp_path / "db")
    assert store.count() == 0


def test_real_ftc_sample_with_row_dates(tmp_path: Path) -> None:
    sample = need_shared("ftc", "ftc_dnc_api_full_records_sample_2021-02.csv")
    result = run(tmp_path / "db", sample)
    assert result.rows == 1100  # type: ignore[attr-defined]
    assert result.accepted >= 1000  # type: ignore[attr-defined]
    assert result.accepted + sum(result.rejected.values()) == result.rows  # type: ignore[attr-defined]
    store, _ = store_at(tmp_path / "db")
    rows = list(export_rows(store, NOW, min_reports=0))
    assert len(rows) == result.numbers  # type: ignore[attr-defined]
    assert all("2018" <= row[4] <= row[5] < "2021-04" for row in rows)  # dated by the complaints, not now


def test_export_round_trip(tmp_path: Path) -> None:
    file = tmp_path / "list.txt"
    file.write_text("+14155550123\n+12125550199\n")
    run(tmp_path / "a", file, fmt="list")
    store, _ = store_at(tmp_path / "a")
    out = tmp_path / "out.txt"
    out.write_text("".join(f"{row[0]}\n" for row in export_rows(store, NOW, min_reports=1)))
    result = run(tmp_path / "b", out, fmt="list")
    assert result.numbers == 2  # type: ignore[attr-defined]
