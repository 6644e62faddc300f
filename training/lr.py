"""Logistic regression on engineered features: scikit-learn Pipeline(StandardScaler, LogisticRegression).

The fitted model is persisted as JSON (scaler statistics, coefficients, feature names and schema), never
as a pickle; `to_sklearn()` rebuilds the exact Pipeline for skl2onnx export.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from runtime.features import FEATURE_NAMES
from runtime.files import atomic_write_text

__all__ = ["LogisticModel", "fit_logistic", "load_feature_npz", "CONSENSUS_10", "NPZ_SCENARIO_ROWS",
           "feature_columns"]

# The reference's production "consensus_top10" features, in its order (REFERENCE.md §3.5).
CONSENSUS_10 = ("y_diff", "time_gap", "projection_error_x_max", "length_diff", "width_diff",
                "projection_error_y_max", "bhattacharyya_coeff", "projection_error_x_mean", "curvature_diff",
                "projection_error_x_std")

# Row blocks of training_dataset_advanced.npz per scenario (shared/data/README.md; REFERENCE.md §1.6).
NPZ_SCENARIO_ROWS = {"i": (0, 356), "ii": (356, 796), "iii": (796, 2100)}


def feature_columns(names) -> list[int]:
    """Column indices of `names` in the 47-feature order; unknown names raise with the valid list."""
    unknown = [n for n in names if n not in FEATURE_NAMES]
    if unknown:
        raise ValueError(f"unknown feature name(s) {', '.join(unknown)}; valid names: {', '.join(FEATURE_NAMES)}")
    return [FEATURE_NAMES.index(n) for n in names]


@dataclass
class LogisticModel:
    feature_names: list
    schema: str
    scaler_mean: list
    scaler_scale: list
    coef: list
    intercept: float
    C: float = 1.0
    class_weight: str | None = "balanced"
    n_train: int = 0
    kind: str = "lr"
    version: int = 1

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Logits for raw (unscaled) feature rows in `feature_names` order."""
        z = (np.asarray(X, dtype=np.float64) - np.asarray(self.scaler_mean)) / np.asarray(self.scaler_scale)
        return z @ np.asarray(self.coef) + self.intercept

    def to_sklearn(self):
        """The equivalent fitted sklearn Pipeline (for skl2onnx)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        n = len(self.feature_names)
        scaler = StandardScaler()
        scaler.mean_ = np.asarray(self.scaler_mean, dtype=np.float64)
        scaler.scale_ = np.asarray(self.scaler_scale, dtype=np.float64)
        scaler.var_ = scaler.scale_ ** 2
        scaler.n_features_in_ = n
        scaler.n_samples_seen_ = self.n_train
        clf = LogisticRegression(C=self.C)
        clf.coef_ = np.asarray(self.coef, dtype=np.float64).reshape(1, n)
        clf.intercept_ = np.asarray([self.intercept], dtype=np.float64)
        clf.classes_ = np.array([0, 1])
        clf.n_features_in_ = n
        return Pipeline([("scaler", scaler), ("lr", clf)])

    def save(self, path: str) -> None:
        atomic_write_text(path, json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: str) -> "LogisticModel":
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        if data.get("kind") != "lr":
            raise ValueError(f"{path}: not a logistic-regression model (kind={data.get('kind')!r})")
        return cls(**data)


def fit_logistic(X: np.ndarray, y: np.ndarray, feature_names, schema: str, C: float = 1.0,
                 class_weight: str | None = "balanced", max_iter: int = 5000) -> LogisticModel:
    """Fit Pipeline(StandardScaler, LogisticRegression) on the training rows only (split before scale)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = Pipeline([("scaler", StandardScaler()),
                     ("lr", LogisticRegression(C=C, class_weight=class_weight, max_iter=max_iter))])
    pipe.fit(np.asarray(X, dtype=np.float64), np.asarray(y).astype(int))
    scaler, clf = pipe.named_steps["scaler"], pipe.named_steps["lr"]
    return LogisticModel(list(feature_names), schema, scaler.mean_.tolist(), scaler.scale_.tolist(),
                         clf.coef_.ravel().tolist(), float(clf.intercept_[0]), C, class_weight, int(len(y)))


def load_feature_npz(path: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read the reference feature format (`X`, `y`, `feature_names`; schema i24-47-v1) without pickle."""
    with np.load(path, allow_pickle=False) as z:
        missing = {"X", "y", "feature_names"} - set(z.files)
        if missing:
            raise ValueError(f"{path}: missing key(s) {sorted(missing)}; expected X, y, feature_names")
        X, y, names = z["X"].astype(np.float64), z["y"].astype(np.int64), [str(n) for n in z["feature_names"]]
    if X.ndim != 2 or X.shape[0] != y.shape[0] or X.shape[1] != len(names):
        raise ValueError(f"{path}: inconsistent shapes X {X.shape}, y {y.shape}, {len(names)} names")
    if not np.isfinite(X).all():
        raise ValueError(f"{path}: X holds non-finite values")
    return X, y, names
