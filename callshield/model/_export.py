"""From fitted scikit-learn estimators to the plain model file (training side only: imports sklearn).

The exported numbers reproduce the estimators exactly (tests compare ``ModelScorer.margin`` with
``decision_function`` on thousands of rows): a linear model's standardization and coefficients,
and a HistGradientBoostingClassifier's trees with their split thresholds and leaf values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from callshield.model._format import Calibration, LinearModel, Tree, TreeModel


def linear_from_sklearn(scaler: Any, logistic: Any, log1p: list[bool]) -> LinearModel:
    """A fitted ``StandardScaler`` + binary ``LogisticRegression`` (on log1p where flagged)."""
    return LinearModel(
        log1p=list(log1p),
        mean=[float(v) for v in scaler.mean_],
        scale=[float(v) for v in scaler.scale_],
        coef=[float(v) for v in logistic.coef_[0]],
        intercept=float(logistic.intercept_[0]),
    )


def trees_from_sklearn(model: Any) -> TreeModel:
    """A fitted binary ``HistGradientBoostingClassifier`` (numeric features, no missing values)."""
    baseline = float(np.asarray(model._baseline_prediction).ravel()[0])
    trees = [_tree(predictors[0].nodes) for predictors in model._predictors]
    return TreeModel(baseline=baseline, trees=trees)


def _tree(nodes: Any) -> Tree:
    if np.any(nodes["is_categorical"]):
        raise ValueError("categorical splits are not supported")
    size = len(nodes)
    left = [int(v) for v in nodes["left"]]
    right = [int(v) for v in nodes["right"]]
    leaf = [bool(v) for v in nodes["is_leaf"]]
    value = [float(v) for v in nodes["value"]]
    count = [float(v) for v in nodes["count"]]
    # Inner nodes get the count-weighted mean of the leaves below them (children follow parents,
    # so one pass from the end sums each subtree).
    total = [value[i] * count[i] if leaf[i] else 0.0 for i in range(size)]
    weight = [count[i] if leaf[i] else 0.0 for i in range(size)]
    for i in range(size - 1, -1, -1):
        if not leaf[i]:
            total[i] = total[left[i]] + total[right[i]]
            weight[i] = weight[left[i]] + weight[right[i]]
    means = [total[i] / weight[i] if weight[i] else 0.0 for i in range(size)]
    return Tree(
        feature=[int(nodes["feature_idx"][i]) if not leaf[i] else 0 for i in range(size)],
        threshold=[float(nodes["num_threshold"][i]) if not leaf[i] else 0.0 for i in range(size)],
        left=[left[i] if not leaf[i] else -1 for i in range(size)],
        right=[right[i] if not leaf[i] else -1 for i in range(size)],
        value=[value[i] if leaf[i] else means[i] for i in range(size)],
    )


def sigmoid_calibration(margins: NDArray[np.float64], labels: NDArray[np.int_]) -> Calibration:
    """Platt scaling fitted on held-out margins: p = 1 / (1 + exp(a * margin + b))."""
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression(C=1e6, max_iter=1000).fit(margins.reshape(-1, 1), labels)
    a = -float(fit.coef_[0][0])
    if a >= 0:  # a model whose margin does not rank at all: keep a flat, valid map
        a = -1e-6
    return Calibration(kind="sigmoid", a=a, b=-float(fit.intercept_[0]))


def isotonic_calibration(margins: NDArray[np.float64], labels: NDArray[np.int_]) -> Calibration:
    """Isotonic regression fitted on held-out margins, as its interpolation points."""
    from sklearn.isotonic import IsotonicRegression

    fit = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(margins, labels)
    return Calibration(
        kind="isotonic",
        x=[float(v) for v in fit.X_thresholds_],
        y=[float(v) for v in fit.y_thresholds_],
    )
