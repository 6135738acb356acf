"""Golden sample files: sample calls with the verdict expected beside each, run on a scratch database.

This is callshield's dry-run tool (``callshield try FILE.jsonl``), in the spirit of fail2ban-regex:
admins check a configuration against sample traffic before they enforce it, and the test suite runs
the samples in ``tests/samples/``. One JSON object per line; ``at`` is seconds since the sample's start
(the clock only moves forward). Lines:

    {"at": 0, "call": {"caller": "+14155550199", "callee": "+13125550100"},
     "expect": {"action": "block", "reason": "denylist:prefix"}}
    {"at": 5, "report": "+17185550123", "weight": 2}
    {"at": 9, "outcome": {"dialstatus": "ANSWER", "billsec": 120}}     # for the previous call
    {"at": 9, "screen": "passed"}                                       # for the previous call

``expect`` may hold ``action``, ``decided``, ``reason``, ``caller``, ``score_min``, ``score_max`` and
``reasons_include`` (codes that must all be among the reasons). Blank lines and ``//`` comments are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callshield import db
from callshield.clock import ManualClock
from callshield.config import Config
from callshield.engine import Firewall
from callshield.verdict import Call, CallOutcome, ScreenResult, Verdict

SAMPLE_START = 1_795_000_000.0  # Wednesday 2026-11-18 08:26:40 UTC
_CALL_FIELDS = {"caller", "callee", "caller_name", "presentation", "trunk", "tenant", "channel"}


@dataclass
class SampleResult:
    line: int
    text: str
    verdict: Verdict | None = None
    problems: list[str] = field(default_factory=list)


class SampleError(ValueError):
    """A sample line is not understood (the message names the line)."""


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = raw.strip()
        if not text or text.startswith("//"):
            continue
        try:
            item = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SampleError(f"{path}:{number}: not JSON: {exc}") from None
        if not isinstance(item, dict):
            raise SampleError(f"{path}:{number}: expected a JSON object")
        yield number, item


def _check(verdict: Verdict, expect: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("action", "decided", "reason", "caller"):
        if key in expect and str(getattr(verdict, key)) != expect[key]:
            problems.append(f"{key} is {getattr(verdict, key)!s}, expected {expect[key]}")
    if "score_min" in expect and verdict.score < expect["score_min"]:
        problems.append(f"score {verdict.score} < {expect['score_min']}")
    if "score_max" in expect and verdict.score > expect["score_max"]:
        problems.append(f"score {verdict.score} > {expect['score_max']}")
    codes = {r.code for r in verdict.reasons}
    missing = [c for c in expect.get("reasons_include", []) if c not in codes]
    if missing:
        problems.append(f"reasons lack {missing} (have {sorted(codes)})")
    return problems


def run_samples(path: Path, config: Config) -> list[SampleResult]:
    """Run a sample file on a fresh in-memory database; one result per call line."""
    clock = ManualClock(SAMPLE_START)
    firewall = Firewall(config=config, conn=db.connect(":memory:"), clock=clock)
    results: list[SampleResult] = []
    last: Verdict | None = None
    for number, item in _lines(path):
        clock.set(SAMPLE_START + float(item.get("at", clock.now() - SAMPLE_START)))
        if "call" in item:
            fields = item["call"]
            unknown = set(fields) - _CALL_FIELDS
            if unknown:
                raise SampleError(f"{path}:{number}: unknown call field(s) {sorted(unknown)}")
            last = firewall.decide(Call(**fields))
            result = SampleResult(line=number, text=json.dumps(fields), verdict=last)
            result.problems = _check(last, item.get("expect", {}))
            results.append(result)
        elif "report" in item:
            firewall.report(item["report"], weight=item.get("weight"))
        elif "outcome" in item or "screen" in item:
            if last is None:
                raise SampleError(f"{path}:{number}: an outcome or screen line needs a call before it")
            if "outcome" in item:
                firewall.feedback(CallOutcome(decision_id=last.id, **item["outcome"]))
            if "screen" in item:
                firewall.screened(last.id, ScreenResult(item["screen"]))
        else:
            raise SampleError(f"{path}:{number}: expected one of call, report, outcome, screen")
    firewall.close()
    return results


def config_for(path: Path) -> Path | None:
    """The sample's own config: ``NAME.toml`` beside ``NAME.jsonl``, if there is one."""
    candidate = path.with_suffix(".toml")
    return candidate if candidate.exists() else None
