"""Pair-classification metrics shared by every model: accuracy, ROC-AUC, AP, log-loss, ECE, FPR/TPR."""
from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

__all__ = ["sigmoid", "classification_metrics", "expected_calibration_error", "fit_platt", "CalibrationFitError"]


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


# Platt scaling lives here, below export, so training's pictures show the calibrated output that the export
# ships (export.calibration fits it with this same function on the same calibration split).

class CalibrationFitError(ValueError):
    """The calibration split cannot support a calibration (one class only, non-finite logits, ...)."""


def _check_inputs(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(z, dtype=np.float64).ravel()
    y = np.asarray(y).ravel()
    if z.shape != y.shape:
        raise CalibrationFitError(f"{z.size} logits but {y.size} labels")
    if not np.isin(y, (0, 1)).all():
        raise CalibrationFitError("calibration labels must be 0/1 (trainable pairs only)")
    if not np.isfinite(z).all():
        raise CalibrationFitError(f"{int((~np.isfinite(z)).sum())} non-finite logits on the calibration split")
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise CalibrationFitError(f"the calibration split needs both classes (got {n_pos} positives of {y.size})")
    return z, y.astype(np.int64)


def fit_platt(z: np.ndarray, y: np.ndarray, max_iter: int = 100) -> tuple[float, float]:
    """Platt scaling: (a, b) maximising the likelihood of sigmoid(a z + b) on (z, y).

    Uses Platt's smoothed targets (N+ + 1)/(N+ + 2) and 1/(N- + 2), so a perfectly separated calibration
    split still gives a finite slope. Newton's method with step halving (2 parameters, exact Hessian).
    """
    z, y = _check_inputs(z, y)
    n_pos = float(y.sum())
    n_neg = float(y.size - n_pos)
    t = np.where(y == 1, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))

    def loss(a, b):
        u = a * z + b
        return float(np.sum(np.logaddexp(0.0, u) - t * u))

    # start at the prior log-odds with unit slope (Platt 1999, Lin et al. 2007)
    a, b = 1.0, math.log((n_pos + 1.0) / (n_neg + 1.0))
    cur = loss(a, b)
    for _ in range(max_iter):
        u = a * z + b
        p = 0.5 * (1.0 + np.tanh(0.5 * u))
        g = p - t
        w = p * (1.0 - p) + 1e-12
        grad = np.array([np.dot(g, z), g.sum()])
        hess = np.array([[np.dot(w, z * z), np.dot(w, z)], [np.dot(w, z), w.sum()]]) + 1e-12 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        decrease = float(grad @ step)  # > 0: the Hessian is positive definite
        lam = 1.0
        while lam > 1e-10:  # Armijo step halving
            na, nb = a - lam * step[0], b - lam * step[1]
            new = loss(na, nb)
            if new <= cur - 1e-4 * lam * decrease:
                break
            lam *= 0.5
        else:
            break  # no decrease left at machine precision: converged
        converged = cur - new <= 1e-13 * max(1.0, abs(cur))
        a, b, cur = na, nb, new
        if converged:
            break
    if not (math.isfinite(a) and math.isfinite(b)):
        raise CalibrationFitError(f"Platt scaling diverged (a={a}, b={b})")
    if a <= 0:
        raise CalibrationFitError(f"Platt slope a={a:.4g} <= 0: the model's logit does not rank the calibration "
                                  "pairs the right way round")
    return float(a), float(b)
