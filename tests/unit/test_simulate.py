"""The traffic generator's output contract: files, determinism, formats, labels (synthetic pool)."""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from callshield.numbers import Normalizer, NumberKind
from callshield.simulate import (
    CDR_COLUMNS,
    CDR_FILE,
    FAMILIES,
    LABELS_FILE,
    METADATA_FILE,
    Simulation,
    SimulationOptions,
    load_mix,
    simulate,
    synthetic_pool,
    write_simulation,
)

NUMBER_FORMS = {"e164", "nanp11", "national10", "intl011"}
TIME = "%Y-%m-%d %H:%M:%S"


@pytest.fixture(scope="module")
def default_run() -> Simulation:
    """The default mix at its default size (2,000 DIDs, 24 h) on the synthetic pool."""
    return simulate(SimulationOptions(seed=7), synthetic_pool())


@pytest.fixture(scope="module")
def written(default_run: Simulation, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    write_simulation(out, default_run)
    return out


def small(seed: int, dids: int = 300, **changes: object) -> Simulation:
    options = SimulationOptions(seed=seed, hours=6, dids=dids, **changes)  # type: ignore[arg-type]
    return simulate(options, synthetic_pool())


def read_cdr(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    write_simulation(tmp_path / "a", small(11))
    write_simulation(tmp_path / "b", small(11))
    for name in (CDR_FILE, LABELS_FILE, METADATA_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_different_seeds_differ(tmp_path: Path) -> None:
    write_simulation(tmp_path / "a", small(11))
    write_simulation(tmp_path / "b", small(12))
    assert (tmp_path / "a" / CDR_FILE).read_bytes() != (tmp_path / "b" / CDR_FILE).read_bytes()


def test_default_mix_has_every_family_and_a_realistic_volume(default_run: Simulation) -> None:
    counts = default_run.counts()
    assert {family for family, count in counts.items() if count["rows"] > 0} == set(FAMILIES)
    assert 50_000 <= len(default_run.calls) <= 150_000
    abusive = sum(call.abusive for call in default_run.calls) / len(default_run.calls)
    assert 0.1 < abusive < 0.4


def test_cdr_has_the_cdr_csv_layout(written: Path, default_run: Simulation) -> None:
    rows = read_cdr(written / CDR_FILE)
    assert len(rows) == len(default_run.calls)
    assert {len(row) for row in rows} == {len(CDR_COLUMNS)} == {18}
    column = {name: index for index, name in enumerate(CDR_COLUMNS)}
    for row in rows[::5]:
        start = datetime.strptime(row[column["start"]], TIME).replace(tzinfo=UTC)
        end = datetime.strptime(row[column["end"]], TIME).replace(tzinfo=UTC)
        duration, billsec = int(row[column["duration"]]), int(row[column["billsec"]])
        assert (end - start).total_seconds() == duration
        disposition = row[column["disposition"]]
        assert disposition in {"ANSWERED", "NO ANSWER", "BUSY", "FAILED"}
        if disposition == "ANSWERED":
            answer = datetime.strptime(row[column["answer"]], TIME).replace(tzinfo=UTC)
            assert (end - answer).total_seconds() == billsec and billsec >= 1
        else:
            assert row[column["answer"]] == "" and billsec == 0
        assert row[column["channel"]].startswith("PJSIP/trunk-carrier")
        assert re.fullmatch(r"\d+\.\d+", row[column["uniqueid"]])
        assert row[column["uniqueid"]].split(".")[0] == str(int(start.timestamp()))


def test_cdr_quoting_matches_cdr_csv(written: Path) -> None:
    """Every text field quoted, duration and billsec bare, quotes in clid doubled."""
    line = (written / CDR_FILE).read_text(encoding="utf-8").splitlines()[0]
    assert re.fullmatch(r'("[^"]*(""[^"]*)*",){12}\d+,\d+,("[^"]*",){3}"[^"]*"', line), line
    sample = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cdr" / "cdrlib__good.csv"
    if sample.exists():  # the same shape as Asterisk's own test fixture
        reference = sample.read_text().splitlines()[0]
        shape = re.compile(r'("[^"]*(""[^"]*)*",){12}\d+,\d+,("[^"]*",){3}"[^"]*"')
        assert shape.fullmatch(reference)


def test_rows_are_in_time_order_and_uniqueids_unique(default_run: Simulation) -> None:
    starts = [call.start for call in default_run.calls]
    assert starts == sorted(starts)
    ids = [call.uniqueid for call in default_run.calls]
    assert len(set(ids)) == len(ids)


def test_labels_cover_every_row_exactly_once(written: Path) -> None:
    uniqueids = [row[16] for row in read_cdr(written / CDR_FILE)]
    with (written / LABELS_FILE).open(encoding="utf-8", newline="") as handle:
        labels = list(csv.DictReader(handle))
    assert list(labels[0]) == ["uniqueid", "label", "family", "campaign"]
    assert [row["uniqueid"] for row in labels] == uniqueids
    assert {row["label"] for row in labels} == {"legit", "abusive"}
    assert {row["family"] for row in labels} == set(FAMILIES)
    assert all(row["campaign"] for row in labels)


def test_simulation_json_describes_the_run(written: Path, default_run: Simulation) -> None:
    meta = json.loads((written / METADATA_FILE).read_text(encoding="utf-8"))
    assert meta["seed"] == 7 and meta["generator"].startswith("callshield-simulate/")
    assert meta["parameters"]["dids"] == 2000 and meta["parameters"]["cdr_times"] == "UTC"
    assert meta["mix"]["name"] == "default" and set(meta["mix"]["families"]) == set(FAMILIES)
    assert meta["rows"] == len(default_run.calls)
    assert sum(family["rows"] for family in meta["counts"].values()) == meta["rows"]
    assert meta["pool"]["source"] == "synthetic"
    assert sum(block["size"] for block in meta["did_blocks"]) == 2000


def test_src_and_clid_normalize_to_the_intended_number(default_run: Simulation) -> None:
    normalizer = Normalizer(default_region="US")
    forms: set[str] = set()
    for call in default_run.calls[::7]:
        forms.add(call.form)
        info = normalizer.normalize(call.src)
        if call.form in NUMBER_FORMS:
            assert info.e164 == call.caller, call
            clid = f'"{call.name}" <{call.src}>' if call.name else call.src
            assert normalizer.normalize(clid).e164 == call.caller
        elif call.form == "intl00":
            # '00' is not the US international prefix: callshield reads it as too long (documented).
            assert info.kind is NumberKind.TOO_LONG
        else:  # deliberate: withheld, empty, junk
            assert info.kind is not NumberKind.NUMBER, call
    assert {"e164", "nanp11", "national10", "intl011", "anonymous", "restricted", "empty"} <= forms


def test_each_trunk_keeps_one_dst_style(default_run: Simulation) -> None:
    styles: dict[str, set[int]] = {}
    for did in default_run.dids:
        styles.setdefault(did.trunk.name, set()).add(len(did.delivered))
        assert Normalizer().normalize(did.delivered).e164 == did.e164
    assert styles == {"carrierA": {12}, "carrierB": {11}, "carrierC": {10}}


def test_dids_are_blocks_of_consecutive_numbers(default_run: Simulation) -> None:
    nationals = [did.national for did in default_run.dids]
    assert len(set(nationals)) == 2000 and nationals == sorted(nationals)
    blocks = {national // 100 for national in nationals}
    assert len(blocks) == 20  # 2,000 DIDs: 20 full blocks of 100


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="hours"):
        SimulationOptions(hours=0)
    with pytest.raises(ValueError, match="dids"):
        SimulationOptions(dids=0)
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        SimulationOptions(timezone="Mars/Olympus")


def test_scale_multiplies_volume() -> None:
    base = len(small(3).calls)
    doubled = len(small(3, scale=2.0).calls)
    assert 1.6 < doubled / base < 2.4


def test_presets_change_the_mix() -> None:
    default = small(5, 1000).counts()
    spoof = small(5, 1000, mix=load_mix("spoof-heavy")).counts()
    quiet = small(5, 1000, mix=load_mix("quiet")).counts()
    assert spoof["neighbour-spoof"]["rows"] > 1.5 * default["neighbour-spoof"]["rows"]
    snowshoe = small(5, 1000, mix=load_mix("snowshoe-heavy")).counts()
    assert snowshoe["snowshoe"]["caller_numbers"] > 2 * default["snowshoe"]["caller_numbers"]

    def abusive(counts: dict[str, dict[str, int]]) -> int:
        return sum(counts[family]["rows"] for family in ("robocall", "snowshoe", "slow", "telemarketer"))

    assert abusive(quiet) < abusive(default)


def test_channel_names_share_one_increasing_counter(written: Path) -> None:
    sequences = []
    for row in read_cdr(written / CDR_FILE):
        sequences.append(int(row[5].rsplit("-", 1)[1], 16))
        if row[14] == "FAILED":
            assert row[6] == ""
        else:
            assert row[6] == f"PJSIP/{row[8].split('/')[1].split(',')[0]}-{sequences[-1] + 1:08x}"
            sequences.append(sequences[-1] + 1)
    assert sequences == sorted(set(sequences))
