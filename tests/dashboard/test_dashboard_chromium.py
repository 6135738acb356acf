"""The dashboard end to end in a real headless Chromium (Debian's chromium + chromium-driver, Selenium).

A real `callshield serve --http` decides real FastAGI sessions; the test signs in with a token,
reads the recent decisions with their reasons, blocks a caller with one click and a confirmation,
and checks through the API and the next FastAGI session that the block is in force. It saves a
screenshot to artifacts/dashboard.png.

`scripts/chromium install` installs the browser with apt-get when it is missing (root). Where that
is impossible the test skips with the script's message, except in CI (CI=true), where it fails.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_serve import HEADER, agi_session
from tests.integration.test_serve_http import HttpServer, wait_for

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1700",
)
HOSTILE_CALLEE = "<img src=x onerror=alert(1)>"


def chromium_paths() -> tuple[str, str]:
    """Install Chromium and its driver if needed; skip (fail in CI) where that is impossible."""
    script = REPO / "scripts" / "chromium"
    done = subprocess.run([str(script), "install"], capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        message = f"Chromium is not available: {done.stderr.strip() or done.stdout.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    env = dict(line.split("=", 1) for line in subprocess.check_output([str(script), "env"], text=True).split())
    return env["CALLSHIELD_CHROMIUM"], env["CALLSHIELD_CHROMEDRIVER"]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    chromium, chromedriver = chromium_paths()
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for downloads
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[HttpServer]:
    srv = HttpServer(tmp_path)
    yield srv
    if srv.proc.poll() is None:
        srv.proc.kill()
        srv.proc.wait()


def agi_call(port: int, caller: str, callee: str, n: int) -> None:
    """A FastAGI session whose dialed number is ``callee`` (any text: what a SIP peer may send)."""
    header = HEADER.replace("+13125550100", callee).format(caller=caller, n=n).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(header)
        stream = sock.makefile("rwb")
        while stream.readline():
            stream.write(b"200 result=1\n")
            stream.flush()


def test_dashboard_signs_in_shows_decisions_and_blocks_with_one_click(browser: Any, server: HttpServer) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    for n, caller in enumerate(("+12125550111", "+12125550112", "+12125550111", "+17735550123")):
        agi_session(server.agi_port, caller, n)
    agi_call(server.agi_port, "+13125550142", HOSTILE_CALLEE, 9)
    wait_for(
        lambda: len(server.request("GET", "/api/v1/decisions?since=1h")[1]["decisions"]) == 5,
        "decisions not committed",
    )

    wait = WebDriverWait(browser, 15)
    browser.get(server.url + "/")
    token_input = wait.until(ec.visibility_of_element_located((By.ID, "token")))
    token_input.send_keys(server.token)
    browser.find_element(By.ID, "login-submit").click()

    def rows() -> list[Any]:
        return list(browser.find_elements(By.CSS_SELECTOR, "#decisions tbody tr[data-caller]"))

    wait.until(lambda _: len(rows()) == 5)
    by_caller: dict[str, list[str]] = {}
    for row in rows():
        by_caller.setdefault(row.get_attribute("data-caller"), []).append(row.text)
    assert len(by_caller["+12125550111"]) == 2
    assert all("block" in text and "denylist:prefix" in text for text in by_caller["+12125550111"])
    assert "connect" in by_caller["+17735550123"][0] and "number:new" in by_caller["+17735550123"][0]
    # the hostile callee is shown as text, not markup
    hostile = browser.find_element(By.CSS_SELECTOR, "#decisions tbody tr[data-caller='+13125550142']")
    assert HOSTILE_CALLEE in hostile.text
    assert browser.find_elements(By.CSS_SELECTOR, "#decisions img") == []
    wait.until(lambda _: "+12125550111" in browser.find_element(By.ID, "top-blocked").text)
    assert "+1212555*" in browser.find_element(By.ID, "top-ranges").text

    # one click on "Block", then confirm
    target = browser.find_element(By.CSS_SELECTOR, "#decisions tbody tr[data-caller='+17735550123']")
    target.find_element(By.CSS_SELECTOR, "button[data-action='deny']").click()
    dialog = wait.until(ec.visibility_of_element_located((By.ID, "confirm")))
    assert "Block every call from +17735550123" in dialog.text
    browser.find_element(By.ID, "confirm-note").send_keys("<b>robocaller</b>")
    browser.find_element(By.ID, "confirm-ok").click()
    wait.until(lambda _: "Blocked +17735550123" in browser.find_element(By.ID, "toast").text)

    status, lists = server.request("GET", "/api/v1/lists")
    denied = [e for e in lists["entries"] if e["pattern"] == "+17735550123"]
    assert status == 200 and len(denied) == 1
    assert denied[0]["action"] == "deny" and denied[0]["note"] == "<b>robocaller</b>"
    assert agi_session(server.agi_port, "+17735550123", 20)["CALLSHIELD_ACTION"] == "block"
    wait.until(lambda _: "lists.add" in browser.find_element(By.ID, "admin-actions").text)
    wait.until(lambda _: len(rows()) == 6)  # the new block shows up on the next refresh

    chart = browser.find_element(By.ID, "rate-chart")
    wait.until(lambda _: int(chart.get_attribute("data-samples") or 0) >= 2)  # rates need two polls
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == [], severe  # no script error, no Content-Security-Policy violation
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    print(f"dashboard screenshot: {shot}")
