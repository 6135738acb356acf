"""Fixtures for the mesh tests: a real Mosquitto (scripts/mosquitto) and per-test topic namespaces.

- ``mosquitto`` (session): starts the project's test broker (installing the Debian package on demand when
  root), yields a ``Broker`` (tests/mesh/broker.py: host, ports, CA, users/passwords, ``client()``), and
  stops it at the end, unless ``CALLSHIELD_KEEP_BROKER=1`` or it was already running when the session
  began. Not root and no mosquitto installed: the tests are skipped. A broker that fails to start is a
  test error carrying the broker log tail.
- ``cluster`` / ``topic_prefix`` (function): a cluster name unique to the test and its topic root
  ``callshield/v1/{cluster}``: tests never see each other's messages, and topics below the prefix are the
  contract's (``{prefix}/verdicts/{node}``, ``{prefix}/nodes/{node}/status``), so the ACL applies to them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator

import pytest

from .broker import Broker, BrokerError, can_run, run_script


@pytest.fixture(scope="session")
def mosquitto() -> Generator[Broker, None, None]:
    reason = can_run()
    if reason:
        pytest.skip(reason)
    keep = os.environ.get("CALLSHIELD_KEEP_BROKER") == "1"
    was_running = keep or Broker.from_script().is_running()
    error = ""
    try:
        # Idempotent: an already running broker with the same config is kept. A broker started here starts
        # empty (no retained messages or sessions of earlier runs); Broker.stop()/start() keep the state.
        run_script("start", env={**os.environ, "CALLSHIELD_MQTT_FRESH": "1"})
        broker = Broker.from_script()
    except BrokerError as exc:
        error = str(exc)
    if error:
        pytest.fail(error, pytrace=False)  # a setup error: the script's output carries the broker log tail
    try:
        yield broker
    finally:
        if not was_running:
            run_script("stop")


@pytest.fixture
def cluster() -> str:
    return f"t{uuid.uuid4().hex[:16]}"


@pytest.fixture
def topic_prefix(cluster: str) -> str:
    return f"callshield/v1/{cluster}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed mesh test's report shows the tail of the broker log (connections, ACL denials)."""
    report = yield
    if report.when == "call" and report.failed and isinstance(item, pytest.Function):
        broker = item.funcargs.get("mosquitto")
        if isinstance(broker, Broker):
            report.sections.append(("mosquitto log (tail)", broker.log_tail(60)))
    return report
