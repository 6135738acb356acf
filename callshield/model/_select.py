"""Choosing the scorer a configuration asks for, with a safe fallback to the rules."""

from __future__ import annotations

import logging
from pathlib import Path

from callshield.config import Config
from callshield.model._compiled import ModelScorer
from callshield.model._format import ModelError
from callshield.policy import ExpertScorer, Scorer

log = logging.getLogger(__name__)
SHIPPED_MODEL = Path(__file__).resolve().parent / "shipped" / "callshield-model.json"
"""The model trained and evaluated for the release (card: models/MODEL.md)."""

_compiled: dict[tuple[str, int, int], ModelScorer] = {}


def model_path(config: Config) -> Path:
    """The model file ``[model]`` names (the shipped one when ``path`` is empty)."""
    return Path(config.model.path).expanduser() if config.model.path else SHIPPED_MODEL


def scorer_for(config: Config) -> Scorer:
    """The rules scorer, or the model with the rules' evidence points. A model file that cannot be
    read or trusted is logged as a warning and the rules decide instead (never a dead node)."""
    rules = ExpertScorer(config.scoring, config.patterns, config.reputation)
    if config.model.scorer == "rules":
        return rules
    path = model_path(config)
    try:
        return _load(path, rules)
    except ModelError as exc:
        log.warning("model scorer unavailable, scoring with the rules instead: %s", exc)
        return rules


def _load(path: Path, evidence: Scorer) -> ModelScorer:
    try:
        stat = path.stat()
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    compiled = _compiled.get(key)
    if compiled is None:
        _compiled.clear()  # only the file in use stays compiled (a reload after a retrain replaces it)
        compiled = _compiled[key] = ModelScorer.load(path)
    # The compiled functions are shared; the evidence scorer follows the current [scoring].
    return compiled.with_evidence(evidence)
