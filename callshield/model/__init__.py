"""The learned scorer: a model file checked and compiled for the decision path, and its training.

Training (``callshield train``) needs scikit-learn and lives in ``callshield.model.train``; loading
and scoring need only the standard library.
"""

from callshield.model._compiled import (
    EVIDENCE_FEATURES,
    FEATURE_DESCRIPTIONS,
    MODEL_FEATURES,
    ModelScorer,
    reason_code,
    score_map_from_thresholds,
)
from callshield.model._format import ModelError, ModelFile, dump, load, parse
from callshield.model._select import SHIPPED_MODEL, model_path, scorer_for

__all__ = [
    "EVIDENCE_FEATURES",
    "FEATURE_DESCRIPTIONS",
    "MODEL_FEATURES",
    "SHIPPED_MODEL",
    "ModelError",
    "ModelFile",
    "ModelScorer",
    "dump",
    "load",
    "model_path",
    "parse",
    "reason_code",
    "score_map_from_thresholds",
    "scorer_for",
]
