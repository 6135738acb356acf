"""MQTT topic names of the mesh (DESIGN contract 2): built, validated and parsed in one place.

Rules:

- ``callshield/v1/{cluster}/verdicts/{node}``  signed verdict messages (QoS 1, not retained);
  subscribers use ``callshield/v1/{cluster}/verdicts/+``.
- ``callshield/v1/{cluster}/nodes/{node}/status``  ``online``/``offline`` (retained, last will).
- ``callshield/v1/{cluster}/sync/{node}``  a catch-up request from ``node`` (QoS 1, not retained, no
  payload that matters): peers answer by sharing their verdicts still in force again on their own
  verdict topics (see callshield/meshlink.py).
- A cluster or node name is one topic level: 1-64 characters, none of ``/`` (level separator),
  ``+`` and ``#`` (wildcards), no control characters (C0, DEL, C1) and nothing UTF-8 cannot
  encode (lone surrogates). Names come from the configuration, never from call data, and no other
  value goes into a topic: a phone number can only reach a topic if an admin names a node after it.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "MAX_NAME_LENGTH",
    "TOPIC_ROOT",
    "check_name",
    "is_valid_name",
    "parse_sync_topic",
    "parse_verdict_topic",
    "status_filter",
    "status_topic",
    "sync_filter",
    "sync_topic",
    "verdict_topic",
    "verdicts_filter",
]

TOPIC_ROOT: Final = "callshield/v1"
"""The protocol root: every mesh topic starts with it (``v1`` is the topic scheme's version)."""
MAX_NAME_LENGTH: Final = 64
"""Longest cluster or node name, in characters."""

_FORBIDDEN: Final = re.compile(r"[/+#\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_VERDICTS: Final = "verdicts"
_NODES: Final = "nodes"
_SYNC: Final = "sync"


def is_valid_name(name: str) -> bool:
    """Whether ``name`` can be a cluster or node name (one safe topic level)."""
    return 0 < len(name) <= MAX_NAME_LENGTH and _FORBIDDEN.search(name) is None


def check_name(name: str, *, what: str = "name") -> str:
    """Return ``name`` if it is a valid cluster or node name, else raise ValueError saying why."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a non-empty string")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"{what} is {len(name)} characters long, the limit is {MAX_NAME_LENGTH}")
    bad = _FORBIDDEN.search(name)
    if bad is not None:
        raise ValueError(
            f"{what} {name[:MAX_NAME_LENGTH]!r} contains {bad.group()!r}: '/', '+', '#' and control "
            "characters cannot be in an MQTT topic level"
        )
    return name


def verdict_topic(cluster: str, node: str) -> str:
    """``callshield/v1/{cluster}/verdicts/{node}``; ValueError for an invalid name."""
    return f"{TOPIC_ROOT}/{check_name(cluster, what='cluster')}/{_VERDICTS}/{check_name(node, what='node')}"


def status_topic(cluster: str, node: str) -> str:
    """``callshield/v1/{cluster}/nodes/{node}/status``; ValueError for an invalid name."""
    return f"{TOPIC_ROOT}/{check_name(cluster, what='cluster')}/{_NODES}/{check_name(node, what='node')}/status"


def verdicts_filter(cluster: str) -> str:
    """The subscription filter for every node's verdicts in ``cluster``: ``callshield/v1/{cluster}/verdicts/+``."""
    return f"{TOPIC_ROOT}/{check_name(cluster, what='cluster')}/{_VERDICTS}/+"


def status_filter(cluster: str) -> str:
    """The subscription filter for every node's status in ``cluster``: ``callshield/v1/{cluster}/nodes/+/status``."""
    return f"{TOPIC_ROOT}/{check_name(cluster, what='cluster')}/{_NODES}/+/status"


def parse_verdict_topic(topic: str) -> tuple[str, str] | None:
    """``(cluster, node)`` of a verdict topic, or None if ``topic`` is not one (never raises)."""
    if not isinstance(topic, str) or len(topic) > 2 * MAX_NAME_LENGTH + len(TOPIC_ROOT) + len(_VERDICTS) + 3:
        return None
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != TOPIC_ROOT or parts[3] != _VERDICTS:
        return None
    cluster, node = parts[2], parts[4]
    if not (is_valid_name(cluster) and is_valid_name(node)):
        return None
    return cluster, node


def sync_topic(cluster: str, node: str) -> str:
    """``callshield/v1/{cluster}/sync/{node}``: where ``node`` asks its peers to catch it up."""
    return f"{TOPIC_ROOT}/{check_name(cluster, what='cluster')}/{_SYNC}/{check_name(node, what='node')}"


def sync_filter(cluster: str) -> str:
    """The subscription filter for every catch-up request in ``cluster``."""
    return f"{TOPIC_ROOT}/{check_name(cluster, what='cluster')}/{_SYNC}/+"


def parse_sync_topic(topic: str) -> tuple[str, str] | None:
    """``(cluster, node)`` of a catch-up request topic, or None (never raises)."""
    if not isinstance(topic, str) or len(topic) > 2 * MAX_NAME_LENGTH + len(TOPIC_ROOT) + len(_SYNC) + 3:
        return None
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != TOPIC_ROOT or parts[3] != _SYNC:
        return None
    cluster, node = parts[2], parts[4]
    if not (is_valid_name(cluster) and is_valid_name(node)):
        return None
    return cluster, node
