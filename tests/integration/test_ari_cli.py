"""``callshield ari`` as a process: usage errors, and a clean SIGTERM while Asterisk is unreachable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _argv(tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "callshield", "--db", str(tmp_path / "cs.sqlite3"), "ari", *args]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("CALLSHIELD_CONFIG", "CALLSHIELD_ARI_PASSWORD")}


def test_missing_password_and_bad_url_are_usage_errors(tmp_path: Path) -> None:
    proc = subprocess.run(_argv(tmp_path, "--no-agi"), capture_output=True, text=True, env=_env(), timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert "no ARI password" in proc.stderr
    proc = subprocess.run(
        _argv(tmp_path, "--url", "ftp://pbx", "--password", "x"), capture_output=True, text=True, env=_env(), timeout=30
    )
    assert proc.returncode == 2, proc.stderr
    assert "url must be" in proc.stderr


def test_sigterm_stops_a_node_waiting_for_asterisk(tmp_path: Path) -> None:
    env = _env() | {"CALLSHIELD_ARI_PASSWORD": "secret"}
    proc = subprocess.Popen(  # nothing listens on port 9: the runner keeps backing off
        _argv(tmp_path, "--no-agi", "--url", "http://127.0.0.1:9"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    try:
        time.sleep(2.0)
        assert proc.poll() is None
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=10)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert took < 5.0, output
    assert "cannot reach ARI at http://127.0.0.1:9" in output
    assert "secret" not in output  # the password never reaches the log
    assert output.rstrip().endswith("stopped"), output
