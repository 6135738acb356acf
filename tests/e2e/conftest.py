"""Fixtures for the end-to-end tests: a real Asterisk 22 (scripts/asterisk-sandbox) and SIPp.

The whole directory is skipped unless ``CALLSHIELD_E2E=1``: it needs root (chroot, apt) and is slow
the first time (the sandbox chroot is built once, ~30 s, then restored from .cache/ in ~3 s).

- ``asterisk_sandbox`` (session): builds and (re)starts the sandbox with the project's
  ``asterisk_conf/``, the dialplan pointing at ``agi_host:agi_port`` (``CALLSHIELD_AGI_PORT`` or a
  free port), and stops it at the end (unless ``CALLSHIELD_E2E_KEEP=1``).
- ``asterisk`` (function): the same sandbox, with the dialplan globals reset after each test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .sipp import CallLike, Outcome, run_calls

E2E_DIR = Path(__file__).resolve().parent
REPO_DIR = E2E_DIR.parents[1]
SANDBOX_SCRIPT = REPO_DIR / "scripts" / "asterisk-sandbox"

SKIP_REASON = (
    "e2e tests run a real Asterisk (chroot, needs root) and SIPp; they are slow: "
    "set CALLSHIELD_E2E=1 to run them (e.g. CALLSHIELD_E2E=1 pytest tests/e2e)"
)

# Dialplan globals of asterisk_conf/extensions.conf and their defaults (CALLSHIELD_AGI is per session).
DEFAULT_GLOBALS = {"CALLSHIELD_VIA": "agi", "CALLSHIELD_DIALPLAN_SCREEN": "no"}


def e2e_enabled() -> bool:
    return os.environ.get("CALLSHIELD_E2E") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if E2E_DIR in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.e2e)
            if not e2e_enabled():
                item.add_marker(skip)


def free_tcp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Sandbox:
    """The running sandbox: where to send SIP, where the dialplan sends FastAGI, and its CLI."""

    sip_host: str
    sip_port: int
    agi_host: str
    agi_port: int
    env: dict[str, str] = field(repr=False)
    http_port: int = 8088
    """Asterisk's HTTP server (ARI): CALLSHIELD_HTTP_PORT, default 8088."""

    def script(self, *args: str, timeout: float = 60.0, check: bool = True) -> str:
        proc = subprocess.run(  # fixed argv
            [str(SANDBOX_SCRIPT), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"asterisk-sandbox {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )
        return proc.stdout

    def cli(self, command: str) -> str:
        """Run one Asterisk CLI command, e.g. ``cli("core show channels")``."""
        return self.script("cli", command)

    def logs(self, lines: int = 200) -> str:
        """Tail of Asterisk's full log (verbose 3: every dialplan step, AGI connects, warnings)."""
        return self.script("logs", str(lines), check=False)

    def set_global(self, name: str, value: str) -> None:
        self.cli(f"dialplan set global {name} {value}")

    def point_agi_at(self, host: str, port: int) -> None:
        """Make the dialplan call FastAGI at host:port from the next call on (no restart)."""
        self.set_global("CALLSHIELD_AGI", f"{host}:{port}")

    def reset_globals(self) -> None:
        self.point_agi_at(self.agi_host, self.agi_port)
        for name, value in DEFAULT_GLOBALS.items():
            self.set_global(name, value)

    def active_channels(self) -> int:
        out = self.cli("core show channels count")
        for line in out.splitlines():
            if "active channel" in line:
                return int(line.split()[0])
        return 0

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no channel is up: hangup handlers (the feedback AGI calls) have then run."""
        deadline = time.monotonic() + timeout
        while self.active_channels():
            if time.monotonic() > deadline:
                raise TimeoutError(f"channels still up after {timeout} s:\n{self.cli('core show channels')}")
            time.sleep(0.05)

    def call(self, calls: Iterable[CallLike], **kwargs: object) -> list[Outcome]:
        """Place calls at the sandbox's SIP trunk (see tests/e2e/sipp.py run_calls)."""
        return run_calls(calls, host=self.sip_host, port=self.sip_port, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def asterisk_sandbox() -> Generator[Sandbox, None, None]:
    if not e2e_enabled():  # pragma: no cover - items are skipped before
        pytest.skip(SKIP_REASON)
    if os.geteuid() != 0:
        pytest.fail("CALLSHIELD_E2E=1 but not root: the Asterisk sandbox needs root (chroot, apt-get)")
    agi_host = os.environ.get("CALLSHIELD_AGI_HOST", "127.0.0.1")
    agi_port = int(os.environ.get("CALLSHIELD_AGI_PORT") or free_tcp_port(agi_host))
    sip_port = int(os.environ.get("CALLSHIELD_SIP_PORT", "5060"))
    http_port = int(os.environ.get("CALLSHIELD_HTTP_PORT", "8088"))
    env = dict(os.environ)
    env.update(
        CALLSHIELD_AGI_HOST=agi_host,
        CALLSHIELD_AGI_PORT=str(agi_port),
        CALLSHIELD_SIP_PORT=str(sip_port),
        CALLSHIELD_HTTP_PORT=str(http_port),
    )
    sandbox = Sandbox(
        sip_host="127.0.0.1", sip_port=sip_port, agi_host=agi_host, agi_port=agi_port, env=env, http_port=http_port
    )
    sandbox.script("build", timeout=900)
    # restart, not start: an already running sandbox would keep an old asterisk_conf/ and AGI port.
    sandbox.script("restart", timeout=120)
    try:
        yield sandbox
    finally:
        if os.environ.get("CALLSHIELD_E2E_KEEP") != "1":
            sandbox.script("stop", check=False)


@pytest.fixture
def asterisk(asterisk_sandbox: Sandbox) -> Generator[Sandbox, None, None]:
    yield asterisk_sandbox
    asterisk_sandbox.reset_globals()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed e2e test's report shows the tail of Asterisk's full log."""
    report = yield
    if report.when == "call" and report.failed and isinstance(item, pytest.Function):
        sandbox = item.funcargs.get("asterisk") or item.funcargs.get("asterisk_sandbox")
        if isinstance(sandbox, Sandbox):
            report.sections.append(("asterisk full log (tail)", sandbox.logs(80)))
    return report
