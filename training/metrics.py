"""Pair-classification metrics shared by every model: accuracy, ROC-AUC, AP, log-loss, ECE, FPR/TPR."""
from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

__all__ = ["sigmoid", "classification_metrics", "expected_calibration_error"]


def sigmoid(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width probability bins, weighted by bin population."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if y.size == 0:
        return float("nan")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            ece += sel.mean() * abs(p[sel].mean() - y[sel].mean())
    return float(ece)


def classification_metrics(y: np.ndarray, logits: np.ndarray) -> dict:
    """Metrics of logits against 0/1 labels at the natural class ratio of `y`.

    Returns accuracy (at p = 0.5), roc_auc, average_precision, log_loss, ece, n, pos_rate.
    ROC-AUC and AP are NaN when `y` holds a single class.
    """
    y = np.asarray(y).astype(np.int64)
    z = np.asarray(logits, dtype=np.float64)
    p = sigmoid(z)
    both = 0 < y.sum() < y.size
    # log-loss from logits: softplus(-z) for positives, softplus(z) for negatives (stable)
    ll = np.where(y == 1, np.logaddexp(0.0, -z), np.logaddexp(0.0, z))
    return {
        "n": int(y.size),
        "pos_rate": float(y.mean()) if y.size else float("nan"),
        "accuracy": float(((z > 0) == (y == 1)).mean()) if y.size else float("nan"),
        "roc_auc": float(roc_auc_score(y, z)) if both else float("nan"),
        "average_precision": float(average_precision_score(y, z)) if both else float("nan"),
        "log_loss": float(ll.mean()) if y.size else float("nan"),
        "ece": expected_calibration_error(y, p),
    }


def finite_or_none(value: float):
    """JSON has no NaN: map non-finite floats to None."""
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None
