"""The model file: plain JSON numbers, validated before anything is built from them.

Rules (a file that breaks any of them is refused with :class:`ModelError`, never half-loaded):
- ``format`` is ``callshield-model`` and ``version`` is 1; unknown fields are refused.
- ``digest`` is the SHA-256 of the canonical JSON of the file without ``digest``: a truncated,
  hand-edited or corrupted file does not load.
- every feature name is one of :data:`callshield.features.FEATURE_NAMES`; array lengths agree;
  every number is finite.
- a tree's children come after their parent (so a walk always ends) and are in range, every node but
  the root has exactly one parent, a leaf has ``left == right == -1``; size and depth are bounded.
- calibration and score maps are monotone.
No field is ever evaluated as code: the loader compiles *numbers* it has checked (see ``_compiled``).
"""

from __future__ import annotations

import hashlib
import itertools
import math
from pathlib import Path
from typing import Literal

import msgspec

from callshield.errors import CallshieldError
from callshield.features import FEATURE_NAMES

FORMAT = "callshield-model"
VERSION = 1
MAX_TREES = 2000
MAX_NODES = 1 << 12
MAX_DEPTH = 40
MAX_FILE_BYTES = 32 << 20


class ModelError(CallshieldError):
    """A model file cannot be trusted or used (the engine falls back to the rules scorer)."""


class LinearModel(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Logistic regression on standardized, optionally log1p-transformed features."""

    log1p: list[bool]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float


class Tree(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One regression tree: ``x[feature] <= threshold`` goes left. ``value`` is the leaf value for a
    leaf and the training-weighted mean leaf value below it for an inner node (for attributions)."""

    feature: list[int]
    threshold: list[float]
    left: list[int]
    right: list[int]
    value: list[float]


class TreeModel(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Gradient-boosted trees: margin = baseline + sum of leaf values."""

    baseline: float
    trees: list[Tree]


class Calibration(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Margin to probability: ``sigmoid`` (Platt: 1 / (1 + exp(a * m + b))) or ``isotonic``
    (piecewise-linear through the points, clipped at the ends)."""

    kind: Literal["sigmoid", "isotonic"]
    a: float = 0.0
    b: float = 0.0
    x: list[float] = []
    y: list[float] = []


class ScoreMap(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Probability to the 0-100 risk score, piecewise-linear and non-decreasing. Chosen at training so
    that the default ``screen_at``/``block_at`` fall at the probabilities the model card names."""

    probability: list[float]
    score: list[float]


class ModelFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The whole file (see the module docstring for the rules)."""

    format: str
    version: int
    name: str
    kind: Literal["linear", "trees"]
    features: list[str]
    calibration: Calibration
    score_map: ScoreMap
    linear: LinearModel | None = None
    trees: TreeModel | None = None
    trained: dict[str, str | int | float] = {}
    """Provenance: scikit-learn version, data, date (informational)."""
    digest: str = ""


def canonical_bytes(model: ModelFile) -> bytes:
    """The bytes the digest covers: the file's JSON without ``digest``, keys sorted."""
    data = msgspec.to_builtins(model)
    data.pop("digest", None)
    return msgspec.json.encode(data, order="sorted")


def with_digest(model: ModelFile) -> ModelFile:
    """``model`` with its digest filled in (the trainer calls this before saving)."""
    return msgspec.structs.replace(model, digest=hashlib.sha256(canonical_bytes(model)).hexdigest())


def dump(model: ModelFile) -> bytes:
    """The file's bytes: pretty enough to diff, canonical enough to hash."""
    return msgspec.json.format(msgspec.json.encode(with_digest(model), order="sorted"), indent=1) + b"\n"


def load(path: Path | str) -> ModelFile:
    """Read and check a model file; raise :class:`ModelError` naming what is wrong."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ModelError(f"{path}: {size} bytes is larger than a model file may be ({MAX_FILE_BYTES})")
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    return parse(raw, source=str(path))


def parse(raw: bytes, *, source: str = "model") -> ModelFile:
    """Decode and check model bytes (see :func:`load`)."""
    try:
        model = msgspec.json.decode(raw, type=ModelFile)
    except msgspec.DecodeError as exc:
        raise ModelError(f"{source}: not a callshield model file: {exc}") from None
    try:
        check(model)
    except ValueError as exc:
        raise ModelError(f"{source}: {exc}") from None
    return model


def check(model: ModelFile) -> None:
    """Raise ValueError for the first broken rule of the module docstring."""
    if model.format != FORMAT or model.version != VERSION:
        raise ValueError(f"format {model.format!r} version {model.version} (this callshield reads {FORMAT} {VERSION})")
    expected = hashlib.sha256(canonical_bytes(model)).hexdigest()
    if model.digest != expected:
        raise ValueError("digest does not match the content (the file was changed or truncated)")
    unknown = [name for name in model.features if name not in FEATURE_NAMES]
    if unknown or not model.features or len(set(model.features)) != len(model.features):
        raise ValueError(f"features must be distinct names from callshield.features (unknown: {unknown})")
    width = len(model.features)
    if model.kind == "linear":
        if model.linear is None:
            raise ValueError("kind 'linear' needs a 'linear' section")
        _check_linear(model.linear, width)
    else:
        if model.trees is None:
            raise ValueError("kind 'trees' needs a 'trees' section")
        _check_trees(model.trees, width)
    _check_calibration(model.calibration)
    _check_score_map(model.score_map)


def _finite(values: list[float], what: str) -> None:
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{what}: every number must be finite")


def _check_linear(linear: LinearModel, width: int) -> None:
    for name in ("log1p", "mean", "scale", "coef"):
        if len(getattr(linear, name)) != width:
            raise ValueError(f"linear.{name} must have one entry per feature ({width})")
    _finite([*linear.mean, *linear.scale, *linear.coef, linear.intercept], "linear")
    if any(s <= 0 for s in linear.scale):
        raise ValueError("linear.scale must be positive")


def _check_trees(model: TreeModel, width: int) -> None:
    if not 1 <= len(model.trees) <= MAX_TREES:
        raise ValueError(f"trees: between 1 and {MAX_TREES} trees")
    _finite([model.baseline], "trees.baseline")
    for number, tree in enumerate(model.trees):
        try:
            _check_tree(tree, width)
        except ValueError as exc:
            raise ValueError(f"trees[{number}]: {exc}") from None


def _check_tree(tree: Tree, width: int) -> None:
    size = len(tree.feature)
    if not 1 <= size <= MAX_NODES:
        raise ValueError(f"between 1 and {MAX_NODES} nodes")
    if not len(tree.threshold) == len(tree.left) == len(tree.right) == len(tree.value) == size:
        raise ValueError("feature, threshold, left, right and value must have the same length")
    _finite([*tree.threshold, *tree.value], "threshold/value")
    depth = [0] * size
    parents = [0] * size
    for node in range(size):
        left, right = tree.left[node], tree.right[node]
        if left == right == -1:
            continue
        if not (node < left < size and node < right < size) or left == right:
            raise ValueError(f"node {node}: children must come after their parent and be in range")
        if not 0 <= tree.feature[node] < width:
            raise ValueError(f"node {node}: feature index out of range")
        for child in (left, right):
            parents[child] += 1
            depth[child] = depth[node] + 1
    if any(count != 1 for count in parents[1:]) or parents[0] or max(depth) > MAX_DEPTH:
        raise ValueError(f"not a tree: every node but the root needs one parent, depth at most {MAX_DEPTH}")


def _check_calibration(cal: Calibration) -> None:
    if cal.kind == "sigmoid":
        _finite([cal.a, cal.b], "calibration")
        if cal.a >= 0:
            raise ValueError("calibration: a sigmoid must rise with the margin (a < 0)")
        return
    if len(cal.x) < 2 or len(cal.x) != len(cal.y):
        raise ValueError("calibration: isotonic needs matching x and y with at least two points")
    _finite([*cal.x, *cal.y], "calibration")
    if any(b < a for a, b in zip(cal.x, cal.x[1:], strict=False)) or any(
        b < a for a, b in zip(cal.y, cal.y[1:], strict=False)
    ):
        raise ValueError("calibration: isotonic points must be non-decreasing")
    if not all(0.0 <= y <= 1.0 for y in cal.y):
        raise ValueError("calibration: probabilities must be within 0-1")


def _check_score_map(score_map: ScoreMap) -> None:
    p, s = score_map.probability, score_map.score
    if len(p) < 2 or len(p) != len(s):
        raise ValueError("score_map: probability and score need matching points (at least two)")
    _finite([*p, *s], "score_map")
    if any(b <= a for a, b in itertools.pairwise(p)) or any(b < a for a, b in itertools.pairwise(s)):
        raise ValueError("score_map: probabilities must increase and scores must not decrease")
    if p[0] != 0.0 or p[-1] != 1.0 or not all(0.0 <= v <= 100.0 for v in s):
        raise ValueError("score_map: must span probability 0 to 1 with scores within 0-100")
