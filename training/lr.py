"""Logistic regression on engineered features: scikit-learn Pipeline(StandardScaler, LogisticRegression).

Two optional steps come before the scaler, both computed inside the exported graph as well:

- `transform="slog"`: every engineered feature x becomes sign(x) log(1 + |x|). The raw features are
  heavy-tailed (projection errors of hundreds of feet on unrelated pairs, a few feet on true links), so a
  linear model on them spends its slope on the tail and cannot tell two close candidates apart.
- `inputs`: model inputs beyond the 47 features. The one there is, "bhattacharyya_cost", is the
  Bhattacharyya stitch cost of the pair (REFERENCE.md §2) at fixed cone parameters, fed as log(cost + eps):
  the LR then learns a correction of the baseline from the engineered features, and keeps its ranking of
  close candidates where the baseline's is good (free flow).

The fitted model is persisted as JSON (scaler statistics, coefficients, feature names, schema, inputs and
transform), never as a pickle; `to_sklearn()` rebuilds the exact Pipeline of the scaled inputs for
skl2onnx export, and `apply_transform` is what the graph computes before it.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import numpy as np

from runtime.features import FEATURE_NAMES
from runtime.files import atomic_write_text

__all__ = ["LogisticModel", "fit_logistic", "load_feature_npz", "CONSENSUS_10", "NPZ_SCENARIO_ROWS",
           "feature_columns", "TRANSFORMS", "BHATTACHARYYA_INPUT", "bhattacharyya_input", "apply_transform",
           "input_matrix"]

# The reference's production "consensus_top10" features, in its order (REFERENCE.md §3.5).
CONSENSUS_10 = ("y_diff", "time_gap", "projection_error_x_max", "length_diff", "width_diff",
                "projection_error_y_max", "bhattacharyya_coeff", "projection_error_x_mean", "curvature_diff",
                "projection_error_x_std")

# Row blocks of training_dataset_advanced.npz per scenario (shared/data/README.md; REFERENCE.md §1.6).
NPZ_SCENARIO_ROWS = {"i": (0, 356), "ii": (356, 796), "iii": (796, 2100)}


TRANSFORMS = ("none", "slog")
BHATTACHARYYA_INPUT = "bhattacharyya_cost"
BHATTACHARYYA_EPS = 1e-3   # log(cost + eps): a perfect continuation (cost ~0) stays finite


def bhattacharyya_input(cone: Mapping[str, float]) -> dict:
    """The description of the Bhattacharyya-cost input at cone parameters `cone` (cx, mx, cy, my), as a
    model and a manifest record it."""
    return {"name": BHATTACHARYYA_INPUT, "cone": {k: float(cone[k]) for k in ("cx", "mx", "cy", "my")},
            "transform": "log", "eps": BHATTACHARYYA_EPS}


def apply_transform(X: np.ndarray, n_features: int, transform: str, inputs: Sequence[Mapping]) -> np.ndarray:
    """What the model computes before its scaler: columns [0, n_features) are engineered features
    (`transform`), the rest are `inputs` in order (each with its own transform)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != n_features + len(inputs):
        raise ValueError(f"expected {n_features} feature column(s) and {len(inputs)} input column(s), "
                         f"got shape {X.shape}")
    if transform not in TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r}; choose from {', '.join(TRANSFORMS)}")
    if transform == "none" and not inputs:
        return X
    out = X.copy()
    if transform == "slog":
        f = out[:, :n_features]
        np.copysign(np.log1p(np.abs(f)), f, out=f)
    for j, spec in enumerate(inputs, start=n_features):
        if spec.get("transform") != "log":
            raise ValueError(f"input {spec.get('name')!r}: unknown transform {spec.get('transform')!r}")
        out[:, j] = np.log(out[:, j] + float(spec["eps"]))
    return out


def input_matrix(features: np.ndarray, bhat: np.ndarray | None, cols: Sequence[int],
                 inputs: Sequence[Mapping]) -> np.ndarray:
    """Raw model inputs of a pair set: the engineered feature columns `cols`, then each extra input.

    `bhat` is the pair set's Bhattacharyya cost (`ScenarioPairs.bhat`, computed at
    `training.pairs.BHAT_PARAM`); an input asking for other cone parameters is refused rather than fed
    costs computed with different ones (that would be train/serve drift).
    """
    X = np.asarray(features, dtype=np.float64)[:, list(cols)]
    if not inputs:
        return X
    from .pairs import BHAT_PARAM

    extra = []
    for spec in inputs:
        if spec.get("name") != BHATTACHARYYA_INPUT:
            raise ValueError(f"unknown model input {spec.get('name')!r}; known: {BHATTACHARYYA_INPUT}")
        if {k: float(v) for k, v in spec["cone"].items()} != {k: float(v) for k, v in BHAT_PARAM.items()}:
            raise ValueError(f"input {BHATTACHARYYA_INPUT} asks for cone {spec['cone']}, the mined pairs hold "
                             f"costs at {BHAT_PARAM}")
        if bhat is None:
            raise ValueError(f"input {BHATTACHARYYA_INPUT} needs the pairs' Bhattacharyya costs")
        extra.append(np.asarray(bhat, dtype=np.float64).reshape(-1, 1))
    return np.hstack([X] + extra)


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
    transform: str = "none"                       # of the engineered features, before the scaler
    inputs: list = field(default_factory=list)    # extra inputs after the features (`bhattacharyya_input`)

    @property
    def n_inputs(self) -> int:
        """Columns of a raw input row: the engineered features, then the extra inputs."""
        return len(self.feature_names) + len(self.inputs)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Logits for raw input rows: `feature_names` in order, then each of `inputs` (untransformed)."""
        z = apply_transform(X, len(self.feature_names), self.transform, self.inputs)
        z = (z - np.asarray(self.scaler_mean)) / np.asarray(self.scaler_scale)
        return z @ np.asarray(self.coef) + self.intercept

    def pair_inputs(self, pairs) -> np.ndarray:
        """Raw input rows of a `ScenarioPairs` (its 47 features and Bhattacharyya costs)."""
        return input_matrix(pairs.features, pairs.bhat, feature_columns(self.feature_names), self.inputs)

    def to_sklearn(self):
        """The equivalent fitted sklearn Pipeline of the transformed inputs (for skl2onnx)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        n = self.n_inputs
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
        model = cls(**data)
        if model.transform not in TRANSFORMS:
            raise ValueError(f"{path}: transform {model.transform!r} unknown (known: {', '.join(TRANSFORMS)})")
        unknown = [i.get("name") for i in model.inputs if i.get("name") != BHATTACHARYYA_INPUT]
        if unknown:
            raise ValueError(f"{path}: model input(s) {unknown} unknown (known: {BHATTACHARYYA_INPUT})")
        if len(model.coef) != model.n_inputs:
            raise ValueError(f"{path}: {len(model.coef)} coefficients for {model.n_inputs} inputs")
        return model


def fit_logistic(X: np.ndarray, y: np.ndarray, feature_names, schema: str, C: float = 1.0,
                 class_weight: str | None = "balanced", max_iter: int = 5000, transform: str = "none",
                 inputs: Sequence[Mapping] = ()) -> LogisticModel:
    """Fit Pipeline(StandardScaler, LogisticRegression) on the training rows only (split before scale).

    `X` holds raw input rows (`input_matrix`): the features, then the extra `inputs`; `transform` and the
    inputs' own transforms are applied before the scaler, the way `decision_function` and the graph do.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    inputs = [dict(i) for i in inputs]
    Z = apply_transform(X, len(feature_names), transform, inputs)
    pipe = Pipeline([("scaler", StandardScaler()),
                     ("lr", LogisticRegression(C=C, class_weight=class_weight, max_iter=max_iter))])
    pipe.fit(Z, np.asarray(y).astype(int))
    scaler, clf = pipe.named_steps["scaler"], pipe.named_steps["lr"]
    return LogisticModel(list(feature_names), schema, scaler.mean_.tolist(), scaler.scale_.tolist(),
                         clf.coef_.ravel().tolist(), float(clf.intercept_[0]), C, class_weight, int(len(y)),
                         transform=transform, inputs=inputs)


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
