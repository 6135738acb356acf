"""Mesh topic names: built, validated and parsed back (DESIGN contract 2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callshield.mesh import (
    check_name,
    is_valid_name,
    parse_verdict_topic,
    status_filter,
    status_topic,
    verdict_topic,
    verdicts_filter,
)


def test_topic_shapes() -> None:
    assert verdict_topic("acme", "pbx-1") == "callshield/v1/acme/verdicts/pbx-1"
    assert status_topic("acme", "pbx-1") == "callshield/v1/acme/nodes/pbx-1/status"
    assert verdicts_filter("acme") == "callshield/v1/acme/verdicts/+"
    assert status_filter("acme") == "callshield/v1/acme/nodes/+/status"


@pytest.mark.parametrize(
    "name", ["", "a/b", "a+", "#", "x\x00", "tab\there", "del\x7f", "c1\x85", "a" * 65, "sur\ud800"]
)
def test_invalid_names_are_refused(name: str) -> None:
    assert not is_valid_name(name)
    with pytest.raises(ValueError, match="node"):
        check_name(name, what="node")
    with pytest.raises(ValueError):
        verdict_topic("acme", name)
    with pytest.raises(ValueError):
        status_topic(name, "pbx-1")


@pytest.mark.parametrize("name", ["pbx-1", "a", "a" * 64, "Zürich.ost_2", "node with spaces"])
def test_valid_names(name: str) -> None:
    assert check_name(name) == name
    assert parse_verdict_topic(verdict_topic("acme", name)) == ("acme", name)


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "callshield/v1/acme/verdicts",
        "callshield/v1/acme/verdicts/",
        "callshield/v1/acme/verdicts/pbx/extra",
        "callshield/v2/acme/verdicts/pbx",
        "callshield/v1/acme/nodes/pbx",
        "callshield/v1/acme/nodes/pbx/status",
        "callshield/v1//verdicts/pbx",
        "callshield/v1/acme/verdicts/+",
        "callshield/v1/acme/verdicts/#",
        "other/v1/acme/verdicts/pbx",
        "callshield/v1/acme/verdicts/" + "a" * 65,
    ],
)
def test_parse_refuses_other_topics(topic: str) -> None:
    assert parse_verdict_topic(topic) is None


@given(st.text(max_size=200))
def test_parse_never_raises(topic: str) -> None:
    parsed = parse_verdict_topic(topic)
    if parsed is not None:
        assert verdict_topic(*parsed) == topic
