"""A real `callshield serve`: its /metrics after real FastAGI sessions, its decision log lines, its
sd_notify messages to a real unix datagram socket, `callshield health`."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_serve import agi_session, free_port

CONFIG = """
[metrics]
listen = "127.0.0.1:{metrics}"
[logging]
format = "{fmt}"
numbers = "{numbers}"
[[rules]]
action = "deny"
pattern = "+1212555*"
"""
BLOCKED = ["+12125550111", "+12125550112", "+12125550113"]
CONNECTED = ["+17735550123", "+14155550124", "+13105550125", "anonymous"]


class Node:
    def __init__(self, tmp: Path, *, fmt: str = "json", numbers: str = "masked", metrics: int | None = None) -> None:
        self.tmp = tmp
        self.port, self.metrics = free_port(), metrics or free_port()
        self.config = tmp / "cs.toml"
        self.config.write_text(CONFIG.format(metrics=self.metrics, fmt=fmt, numbers=numbers))
        # A short path: unix socket names are limited to 108 bytes.
        self.notify_dir = tempfile.mkdtemp(prefix="cs-notify-", dir="/tmp")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(f"{self.notify_dir}/s")
        self.notify.settimeout(20)
        self.env = {**os.environ, "XDG_DATA_HOME": str(tmp / "data"), "NOTIFY_SOCKET": f"{self.notify_dir}/s"}
        self.log = tmp / "serve.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "callshield", "--config", str(self.config), "serve", "--port", str(self.port)],
            env=self.env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )

    def message(self) -> dict[str, str]:
        data = self.notify.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.split("\n"))

    def scrape(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=5) as response:
            assert response.headers["Content-Type"].startswith("text/plain")
            return str(response.read().decode())

    def health(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "callshield", "--config", str(self.config), "health"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.notify.close()
        Path(f"{self.notify_dir}/s").unlink(missing_ok=True)
        os.rmdir(self.notify_dir)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    started = Node(tmp_path)
    yield started
    started.close()


def values(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def total(samples: list[tuple[dict[str, str], float]], **labels: str) -> float:
    return sum(v for lab, v in samples if all(lab.get(k) == want for k, want in labels.items()))


def test_metrics_logs_and_notifications_of_a_running_node(node: Node) -> None:
    ready = node.message()  # READY=1 comes once both listeners listen: no polling needed
    assert ready["READY"] == "1"
    assert f"FastAGI on 127.0.0.1:{node.port}" in ready["STATUS"] and f":{node.metrics}/metrics" in ready["STATUS"]
    before = values(node.scrape())
    assert total(before["callshield_decision_seconds_count"]) == 0

    ids = {}
    for caller in BLOCKED + CONNECTED:
        variables = agi_session(node.port, caller)
        ids[variables["CALLSHIELD_ID"]] = (caller, variables["CALLSHIELD_ACTION"])
    assert sorted(action for _, action in ids.values()) == ["block"] * 3 + ["connect"] * 4

    after = values(node.scrape())
    decisions = after["callshield_decisions_total"]
    assert total(decisions, action="block") == 3 and total(decisions, action="connect") == 4
    assert total(decisions, action="block", reason="denylist:prefix") == 3
    assert total(after["callshield_decision_seconds_count"]) == 7 == total(after["callshield_agi_decisions_total"])
    assert total(after["callshield_decision_seconds_bucket"], le="+Inf") == 7
    assert total(after["callshield_agi_sessions_total"]) == 7
    assert total(after["callshield_agi_sessions_active"]) == 0
    assert total(after["callshield_rules"]) == 1
    assert total(after["process_cpu_seconds_total"]) > 0
    for samples in after.values():
        for labels, _ in samples:
            for name, value in labels.items():
                assert name == "le" or not re.search(r"\d", value), f"label {name}={value} carries a digit"

    health = node.health()
    assert health.returncode == 0 and "200 ok" in health.stdout

    node.proc.send_signal(signal.SIGHUP)
    reloading = node.message()
    assert reloading["RELOADING"] == "1"
    assert abs(int(reloading["MONOTONIC_USEC"]) - time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000) < 10_000_000
    assert node.message()["READY"] == "1"

    node.proc.send_signal(signal.SIGTERM)
    assert node.message() == {"STOPPING": "1"}
    assert node.proc.wait(timeout=20) == 0
    assert node.health().returncode == 1

    text = node.log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    decided = [line for line in lines if line["logger"] == "callshield.decision"]
    assert {line["id"]: line["action"] for line in decided} == {i: action for i, (_, action) in ids.items()}
    for line in decided:
        caller = ids[line["id"]][0]
        assert line["caller"] == (caller if caller == "anonymous" else caller[:7] + "***" + caller[-2:])
        assert line["reasons"][0] == line["reason"] and line["decision_us"] > 0
        assert line["level"] == "info" and isinstance(line["ts"], float) and line["score"] >= 0
    for caller in BLOCKED + CONNECTED[:3]:
        assert caller not in text  # numbers = "masked": no full number in the log
    assert lines[-1]["message"] == "stopped"


def test_a_busy_metrics_port_does_not_stop_calls(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        node = Node(tmp_path, fmt="text", numbers="none", metrics=taken.getsockname()[1])
        try:
            assert node.message()["READY"] == "1"
            assert agi_session(node.port, BLOCKED[0])["CALLSHIELD_ACTION"] == "block"
            node.proc.send_signal(signal.SIGTERM)
            assert node.proc.wait(timeout=20) == 0
        finally:
            node.close()
    text = node.log.read_text()
    assert "metrics: cannot listen on 127.0.0.1:" in text and "serving calls without metrics" in text
    (line,) = [x for x in text.splitlines() if "callshield.decision:" in x]
    assert " block score 100 denylist:prefix [denylist:prefix,number:new] " in line and "caller" not in line
    assert re.search(r"INFO callshield\.decision: \w+ block .* \d+µs$", line)
