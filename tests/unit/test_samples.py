"""Golden sample files: every call line in tests/samples/*.jsonl gets its expected verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

from callshield.config import Config, load_config
from callshield.samples import SampleError, config_for, run_samples

SAMPLES = sorted((Path(__file__).resolve().parents[1] / "samples").glob("*.jsonl"))


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_golden_samples(path: Path) -> None:
    beside = config_for(path)
    results = run_samples(path, load_config(beside) if beside else Config())
    assert results, f"{path} has no call lines"
    problems = [f"line {r.line} {r.text}: {'; '.join(r.problems)}" for r in results if r.problems]
    assert not problems, "\n".join(problems)


def test_sample_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"at": 0, "call": {"caller": "+1"}}\n{"at": 1, "nothing": 1}\n')
    with pytest.raises(SampleError, match=r"bad.jsonl:2: expected one of"):
        run_samples(bad, Config())
    bad.write_text("not json\n")
    with pytest.raises(SampleError, match=r"bad.jsonl:1: not JSON"):
        run_samples(bad, Config())


def test_a_wrong_expectation_is_reported(tmp_path: Path) -> None:
    sample = tmp_path / "s.jsonl"
    sample.write_text('{"at": 0, "call": {"caller": "+14155550123"}, "expect": {"action": "block"}}\n')
    (result,) = run_samples(sample, Config())
    assert result.problems == ["action is connect, expected block"]
