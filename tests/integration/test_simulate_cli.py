"""`callshield simulate` as users run it: a real process, real files, exit codes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path


def cs(tmp_path: Path, *args: str, hash_seed: str = "0") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONHASHSEED": hash_seed}
    env.pop("CALLSHIELD_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "callshield", "simulate", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )


def test_simulate_writes_the_three_files(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = cs(tmp_path, "--out", str(out), "--seed", "5", "--hours", "3", "--dids", "200", "--synthetic-pool")
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "rows/s" in result.stdout
    with (out / "Master.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    with (out / "labels.csv").open(newline="") as handle:
        labels = list(csv.DictReader(handle))
    assert rows and len(rows) == len(labels) and {len(row) for row in rows} == {18}
    meta = json.loads((out / "simulation.json").read_text())
    assert meta["seed"] == 5 and meta["parameters"]["hours"] == 3 and meta["rows"] == len(rows)
    assert meta["pool"]["source"] == "synthetic"


def test_same_seed_same_bytes_across_processes(tmp_path: Path) -> None:
    """String hashing differs between processes: nothing may depend on set or hash order."""
    args = ("--seed", "9", "--hours", "4", "--dids", "300", "--synthetic-pool")
    assert cs(tmp_path, "--out", str(tmp_path / "a"), *args, hash_seed="1").returncode == 0
    assert cs(tmp_path, "--out", str(tmp_path / "b"), *args, hash_seed="2").returncode == 0
    for name in ("Master.csv", "labels.csv", "simulation.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_simulate_with_a_mix_file_and_start(tmp_path: Path) -> None:
    mix = tmp_path / "mix.toml"
    mix.write_text('base = "quiet"\n[families.wangiri]\nenabled = false\n')
    out = tmp_path / "run"
    result = cs(
        tmp_path, "--out", str(out), "--hours", "2", "--dids", "100", "--mix", str(mix),
        "--start", "2026-12-05T12:00:00Z", "--synthetic-pool",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "simulation.json").read_text())
    assert meta["mix"]["name"] == "mix" and meta["counts"]["wangiri"]["rows"] == 0
    assert meta["parameters"]["start"] == "2026-12-05T12:00:00Z"
    first = (out / "Master.csv").read_text().splitlines()[0]
    assert '"2026-12-05 1' in first


def test_bad_mix_file_is_a_configuration_error(tmp_path: Path) -> None:
    mix = tmp_path / "bad.toml"
    mix.write_text("[families.robocall]\ncampains = 3\n")
    result = cs(tmp_path, "--out", str(tmp_path / "run"), "--mix", str(mix))
    assert result.returncode == 3
    assert "families.robocall.campains: unknown parameter" in result.stderr
    assert not (tmp_path / "run").exists()
    unknown = cs(tmp_path, "--out", str(tmp_path / "run"), "--mix", "loud")
    assert unknown.returncode == 3 and "unknown mix 'loud'" in unknown.stderr


def test_bad_options_are_usage_errors(tmp_path: Path) -> None:
    for args in (["--start", "yesterday"], ["--hours", "0"], ["--timezone", "Mars/Olympus"], ["--scale", "-1"]):
        result = cs(tmp_path, "--out", str(tmp_path / "run"), *args)
        assert result.returncode == 2, (args, result.stderr)
    assert "ISO 8601" in cs(tmp_path, "--out", str(tmp_path / "x"), "--start", "yesterday").stderr


def test_missing_ftc_data_warns_and_uses_the_synthetic_pool(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = cs(tmp_path, "--out", str(out), "--hours", "1", "--dids", "100", "--ftc", str(tmp_path / "none"))
    assert result.returncode == 0, result.stderr
    assert "synthetic" in result.stderr
    assert json.loads((out / "simulation.json").read_text())["pool"]["source"] == "synthetic"


def test_an_unwritable_output_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = cs(tmp_path, "--out", str(blocker / "run"), "--hours", "1", "--dids", "100", "--synthetic-pool")
    assert result.returncode == 1 and "cannot write the simulation" in result.stderr
    assert "Traceback" not in result.stderr
