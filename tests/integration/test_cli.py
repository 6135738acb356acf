"""The command line as users and scripts run it: real processes, a real database file, exit codes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import need_shared

REPO = Path(__file__).resolve().parents[2]


def cs(
    tmp_path: Path, *args: str, input_text: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), **(env or {})}
    full_env.pop("CALLSHIELD_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "callshield", *args],
        capture_output=True,
        text=True,
        env=full_env,
        input=input_text,
        timeout=120,
        cwd=tmp_path,
    )


def test_check_json_contract(tmp_path: Path) -> None:
    result = cs(tmp_path, "check", "4155550123", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["number"] == "+14155550123"
    assert data["action"] == "connect" and isinstance(data["score"], int) and isinstance(data["reasons"], list)


def test_lists_change_verdicts_and_explain_shows_why(tmp_path: Path) -> None:
    assert cs(tmp_path, "deny", "+1415555*", "--note", "robocall range").returncode == 0
    assert cs(tmp_path, "allow", "(415) 555-0123", "--ttl", "1h").returncode == 0
    blocked = json.loads(cs(tmp_path, "check", "+14155550199", "--json").stdout)
    allowed = json.loads(cs(tmp_path, "check", "+14155550123", "--json").stdout)
    assert (blocked["action"], blocked["reason"]) == ("block", "denylist:prefix")
    assert (allowed["action"], allowed["reason"]) == ("connect", "allowlist:exact")
    explained = cs(tmp_path, "explain", "+14155550199")
    assert "denylist:prefix" in explained.stdout and "robocall range" in explained.stdout
    assert cs(tmp_path, "unlist", "+1415555*").returncode == 0
    assert json.loads(cs(tmp_path, "check", "+14155550199", "--json").stdout)["action"] == "connect"
    missing = cs(tmp_path, "unlist", "+1415555*")
    assert missing.returncode == 2 and "no list entry" in missing.stderr


def test_reports_history_and_stats(tmp_path: Path) -> None:
    for _ in range(3):
        assert cs(tmp_path, "report", "+17185550123", "--note", "IRS scam").returncode == 0
    data = json.loads(cs(tmp_path, "explain", "+17185550123", "--json").stdout)
    assert data["now"]["action"] == "block"
    assert [e["kind"] for e in data["evidence"]] == ["report"] * 3
    assert data["evidence"][0]["note"] == "IRS scam"
    stats = json.loads(cs(tmp_path, "stats", "--json").stdout)
    assert stats["numbers"] == 1


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("check",), 2, "Missing argument"),
        (("deny", "+1415*555"), 2, "only digits"),
        (("deny", "abc"), 2, "is not a phone number"),
        (("allow", "+14155550123", "--ttl", "forever"), 2, "expected a duration"),
        (("report", "anonymous"), 2, "not a phone number"),
        (("report", "'; DROP TABLE reputation; --"), 2, "not a phone number"),
        (("import", "/nonexistent"), 2, "does not exist"),
        (("stats", "--since", "soon"), 2, "expected a duration"),
        (("frobnicate",), 2, "No such command"),
    ],
)
def test_user_mistakes_get_a_message_and_exit_code_not_a_traceback(
    tmp_path: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    result = cs(tmp_path, *args)
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_broken_config_is_exit_3_with_key_and_line(tmp_path: Path) -> None:
    config = tmp_path / "cs.toml"
    config.write_text("[policy]\nscreen_at = 'high'\n")
    result = cs(tmp_path, "--config", str(config), "check", "+14155550123")
    assert result.returncode == 3
    assert f"{config}:2: policy.screen_at" in result.stderr
    check = cs(tmp_path, "config", "check", str(config))
    assert check.returncode == 3
    good = cs(tmp_path, "config", "check", str(REPO / "callshield.example.toml"))
    assert good.returncode == 0 and "OK" in good.stdout


def test_not_a_database_is_exit_4(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.sqlite3"
    bogus.write_bytes(b"not a database at all" * 100)
    result = cs(tmp_path, "--db", str(bogus), "check", "+14155550123")
    assert result.returncode == 4 and "cannot open the database" in result.stderr
    assert bogus.read_bytes() == b"not a database at all" * 100  # untouched


def test_import_list_then_export(tmp_path: Path) -> None:
    blocklist = tmp_path / "block.txt"
    blocklist.write_text("# spam\n+14155550123\n2125550199\njunk\n")
    result = cs(tmp_path, "import", str(blocklist), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["accepted"], summary["rejected"]) == (2, {"not_a_number": 1})
    again = cs(tmp_path, "import", str(blocklist))
    assert again.returncode == 5 and "already imported" in again.stderr
    exported = cs(tmp_path, "export", "--format", "list")
    assert exported.stdout.split() == ["+12125550199", "+14155550123"]


def test_try_reports_mismatches(tmp_path: Path) -> None:
    sample = tmp_path / "s.jsonl"
    sample.write_text('{"at": 0, "call": {"caller": "+14155550123"}, "expect": {"action": "block"}}\n')
    result = cs(tmp_path, "try", str(sample))
    assert result.returncode == 1 and "MISMATCH" in result.stdout and "0 passed, 1 failed" in result.stdout
    golden = cs(tmp_path, "try", "-q", *map(str, sorted((REPO / "tests" / "samples").glob("*.jsonl"))))
    assert golden.returncode == 0, golden.stdout


def test_import_killed_halfway_leaves_the_database_as_before(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    with big.open("w") as out:
        for i in range(1_500_000):
            out.write(f"+1{2_000_000_000 + i * 3_697 % 7_999_999_999}\n")
    database = tmp_path / "data" / "callshield" / "callshield.sqlite3"
    assert cs(tmp_path, "report", "+17185550123").returncode == 0  # something stored before
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "callshield", "import", str(big)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wal = database.with_name(database.name + "-wal")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if wal.exists() and wal.stat().st_size > 2_000_000:  # the import transaction is being written
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the import finished before it could be killed: make the file bigger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    conn = sqlite3.connect(database)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT count(*) FROM reputation").fetchone() == (1,)
    assert conn.execute("SELECT count(*) FROM imports").fetchone() == (0,)
    conn.close()
    finished = cs(tmp_path, "import", str(big), "--json")
    assert finished.returncode == 0
    assert json.loads(finished.stdout)["accepted"] == 1_500_000


def test_full_ftc_file_imports(tmp_path: Path) -> None:
    ftc = need_shared("ftc", "ftc_dnc_api_complaints_2020-02-14_2021-04-21.csv.gz")
    result = cs(tmp_path, "import", str(ftc), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["rows"] == 3_196_641
    assert summary["accepted"] + sum(summary["rejected"].values()) == summary["rows"]
    assert summary["numbers"] > 2_000_000
    assert set(summary["rejected"]) <= {
        "not_a_number",
        "too_short",
        "too_long",
        "short_code",
        "empty_number",
        "bad_date",
        "wrong_column_count",
        "malformed_row",
    }


MESH_CONFIG = """
[node]
name = "pbx-1"
[mesh]
enabled = true
cluster = "acme"
keys = [{ id = "k1", secret = "2222222222222222222222222222222222222222222222222222222222222222" }]
"""


def test_reports_and_unlists_are_queued_for_the_mesh(tmp_path: Path) -> None:
    config = tmp_path / "mesh.toml"
    config.write_text(MESH_CONFIG)
    base = ("--config", str(config))
    assert "queued for the mesh (report, seq 1)" in cs(tmp_path, *base, "report", "+14155550123").stdout
    cs(tmp_path, *base, "deny", "+14155550124")
    assert "queued for the mesh (revoke, seq 2)" in cs(tmp_path, *base, "unlist", "+14155550124").stdout
    status = json.loads(cs(tmp_path, *base, "mesh", "status", "--json").stdout)
    assert (status["outbox"], status["server_running"], status["enabled"]) == (2, False, True)
    text = cs(tmp_path, *base, "mesh", "status").stdout
    assert "acme/pbx-1, not connected" in text and "outbox   2 waiting" in text
    assert "queued" not in cs(tmp_path, "report", "+14155550125").stdout  # mesh disabled: nothing queued
    # The outbox has its own file next to the node database; a node without the mesh gets none.
    data = tmp_path / "data" / "callshield"
    assert (data / "callshield-mesh.sqlite3").exists()
    other = tmp_path / "other.sqlite3"
    assert "mesh     disabled" in cs(tmp_path, "--db", str(other), "mesh", "status").stdout
    assert not (tmp_path / "other-mesh.sqlite3").exists()
