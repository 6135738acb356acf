"""The abusive caller pool: FTC file parsing and cache, the synthetic fallback, the real data's facts."""

from __future__ import annotations

import gzip
import logging
import random
from pathlib import Path

import pytest

from callshield.simulate import SimulationOptions, load_pool, simulate, synthetic_pool
from tests.conftest import need_shared

ROWS = """complaint_date,company_phone_number,consumer_area_code
2020-02-14,8883171559,415
2020-02-14,5037602104,503
2020-02-14,15037602104,503
2020-02-14,__________,415
2020-02-14,4152994618,
2020-02-14,0152994618,415
2020-02-15,441234567890,212
2020-02-15,3125550199,312
"""


def fake_ftc(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ftc_dnc_api_complaints_2020-02-14_2020-02-15.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as out:
        out.write(ROWS)
    return folder


def test_ftc_file_is_parsed_and_cached(tmp_path: Path) -> None:
    folder = fake_ftc(tmp_path / "ftc")
    cache = tmp_path / "cache"
    pool = load_pool(folder, cache_dir=cache)
    assert pool.source == "ftc"
    assert list(pool.numbers) == [3125550199, 4152994618, 5037602104, 8883171559]
    assert 5037602104 in pool and 5037602105 not in pool
    assert pool.description["rows"] == 8
    # pairs with an area code: 415<-888, 503<-503 (twice: 10 and 11 digits), 312<-312
    assert pool.same_npa_share() == pytest.approx(3 / 4)
    assert len(list(cache.iterdir())) == 2
    again = load_pool(folder, cache_dir=cache)
    assert list(again.numbers) == list(pool.numbers) and again.pairs == pool.pairs


def test_a_corrupt_cache_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder, cache = fake_ftc(tmp_path / "ftc"), tmp_path / "cache"
    load_pool(folder, cache_dir=cache)
    for path in cache.glob("*.bin"):
        path.write_bytes(b"\x00" * 3)
    with caplog.at_level(logging.WARNING):
        pool = load_pool(folder, cache_dir=cache)
    assert len(pool.numbers) == 4 and "unreadable pool cache" in caplog.text


def test_a_corrupt_ftc_file_falls_back_with_a_warning(tmp_path: Path) -> None:
    folder = fake_ftc(tmp_path / "ftc")
    path = next(folder.iterdir())
    path.write_bytes(path.read_bytes()[:40])  # truncated gzip
    warnings: list[str] = []
    pool = load_pool(folder, cache_dir=tmp_path / "cache", warn=warnings.append)
    assert pool.source == "synthetic" and "cannot read" in warnings[0]


def test_missing_data_falls_back_to_a_synthetic_pool(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        pool = load_pool(tmp_path / "nothing-here", cache_dir=tmp_path / "cache")
    assert pool.source == "synthetic" and "synthetic pool" in caplog.text
    assert list(pool.numbers) == list(synthetic_pool().numbers)  # independent of any seed
    assert 0.4 < pool.same_npa_share() < 0.6
    rng = random.Random(1)
    assert all(pool.draw(rng) in pool for _ in range(100))


def test_real_ftc_pool_reproduces_the_neighbour_spoofing_share() -> None:
    pool = load_pool(need_shared("ftc"))
    assert pool.source == "ftc"
    assert len(pool.numbers) > 2_000_000
    assert 0.40 < pool.same_npa_share() < 0.48  # ~43% of complaints: caller area code = victim's
    assert 312 in pool.pairs  # the node's area codes have real pairs


def test_simulation_on_the_real_pool() -> None:
    pool = load_pool(need_shared("ftc"))
    run = simulate(SimulationOptions(seed=4, hours=6, dids=500), pool)
    robocalls = [call for call in run.calls if call.family == "robocall"]
    assert robocalls and all(call.caller is not None and int(call.caller[2:]) in pool for call in robocalls)
    legit = [call for call in run.calls if not call.abusive and call.caller and call.caller.startswith("+1")]
    assert legit and not any(int(call.caller[2:]) in pool for call in legit if call.caller)
