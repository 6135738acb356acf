"""Decision log lines: JSON and text formats, number masking, ordering with other log records."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from callshield.decisionlog import LOGGER_NAME, DecisionLog, mask_number
from callshield.verdict import Action, Mode, Reason, Verdict

VERDICT = Verdict(
    id="01a2214678c4cae79eb9",
    action=Action.CONNECT,
    decided=Action.BLOCK,
    score=92,
    reason="denylist:prefix",
    reasons=(
        Reason(code="denylist:prefix", points=0.0, detail="deny +1212555* (config:rules[0])"),
        Reason(code="number:new", points=5.0, detail="first call"),
    ),
    cause=21,
    mode=Mode.SHADOW,
    caller="+12125550111",
    callee="+13125550100",
    decided_at=1_795_000_000.25,
)


def test_masking_keeps_the_prefix_and_the_last_two_digits() -> None:
    assert mask_number("+14155550123") == "+141555***23"
    assert mask_number("+442079460000") == "+442079****00"
    assert mask_number("anonymous") == "anonymous"
    assert mask_number("911") == "***"
    assert mask_number("5551234") == "555**34"
    assert mask_number("") == ""


def test_a_json_line_has_every_field_and_masked_numbers() -> None:
    out = io.StringIO()
    DecisionLog(fmt="json", stream=out).write(VERDICT, 42.4e-6)
    (line,) = out.getvalue().splitlines()
    assert json.loads(line) == {
        "ts": 1_795_000_000.25,
        "level": "info",
        "logger": LOGGER_NAME,
        "message": "decision",
        "id": "01a2214678c4cae79eb9",
        "action": "connect",
        "decided": "block",
        "mode": "shadow",
        "score": 92,
        "reason": "denylist:prefix",
        "reasons": ["denylist:prefix", "number:new"],
        "decision_us": 42,
        "caller": "+121255***11",
        "callee": "+131255***00",
    }


def test_numbers_full_or_none() -> None:
    full, none = io.StringIO(), io.StringIO()
    DecisionLog(fmt="json", numbers="full", stream=full).write(VERDICT, 1e-5)
    DecisionLog(fmt="json", numbers="none", stream=none).write(VERDICT, 1e-5)
    assert json.loads(full.getvalue())["caller"] == "+12125550111"
    assert "caller" not in json.loads(none.getvalue()) and "0111" not in none.getvalue()
    text = io.StringIO()
    DecisionLog(fmt="text", numbers="none", stream=text).write(VERDICT, 1e-5)
    assert "caller" not in text.getvalue() and "0111" not in text.getvalue()


def test_a_text_line_reads_like_the_node_log() -> None:
    out = io.StringIO()
    DecisionLog(fmt="text", stream=out).write(VERDICT, 57e-6)
    line = out.getvalue()
    assert line.endswith("\n") and line.count("\n") == 1
    assert ",250 INFO callshield.decision: 01a2214678c4cae79eb9 connect (decided block, shadow mode) score 92 " in line
    assert "denylist:prefix [denylist:prefix,number:new] caller +121255***11 callee +131255***00 57µs" in line


async def test_lines_are_buffered_on_the_loop_and_flushed_before_other_records() -> None:
    out = io.StringIO()
    decisions = DecisionLog(fmt="json", stream=out, flush_after=60)
    handler = logging.StreamHandler(out)
    handler.addFilter(decisions.ordering_filter)
    logger = logging.getLogger("test.decisionlog")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        decisions.write(VERDICT, 1e-5)
        decisions.write(VERDICT, 2e-5)
        assert out.getvalue() == ""  # buffered for up to flush_after
        logger.warning("something else happened")
        lines = out.getvalue().splitlines()
        assert [json.loads(x)["decision_us"] for x in lines[:2]] == [10, 20]
        assert lines[2] == "something else happened"
        decisions.write(VERDICT, 3e-5)
        decisions.flush()
        assert json.loads(out.getvalue().splitlines()[3])["decision_us"] == 30
        assert decisions.written == 3
    finally:
        logger.removeHandler(handler)


async def test_the_timer_flushes() -> None:
    out = io.StringIO()
    decisions = DecisionLog(fmt="json", stream=out, flush_after=0.01)
    decisions.write(VERDICT, 1e-5)
    assert out.getvalue() == ""
    await asyncio.sleep(0.05)
    assert json.loads(out.getvalue())["id"] == VERDICT.id


def test_a_broken_stream_does_not_raise() -> None:
    out = io.StringIO()
    out.close()
    DecisionLog(fmt="text", stream=out).write(VERDICT, 1e-5)  # no loop: written at once, and fails quietly
