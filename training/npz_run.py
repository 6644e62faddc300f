"""train-lr on the reference engineered-feature format (`X`, `y`, `feature_names`, schema i24-47-v1)."""
from __future__ import annotations

import json
import os

import numpy as np

from runtime.files import atomic_write_text

from .lr import NPZ_SCENARIO_ROWS, feature_columns, fit_logistic, load_feature_npz
from .metrics import classification_metrics, finite_or_none

__all__ = ["train_lr_npz"]


def train_lr_npz(path: str, run_dir: str, features: list[str] | None = None, holdout_scenario: str | None = None,
                 C: float = 1.0, seed: int = 42, test_size: float = 0.2) -> dict:
    """Fit LR on an .npz feature set with a split made before any scaling; write `run_dir/metrics.json`.

    Parameters
    ----------
    holdout_scenario : test on that scenario's row block (`NPZ_SCENARIO_ROWS`), train on the rest;
        default a stratified random split of `test_size` (seed `seed`), as the reference protocol.
    """
    from sklearn.model_selection import StratifiedKFold, train_test_split
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.model_selection import cross_val_score

    X, y, names_in_file = load_feature_npz(path)
    names = features or names_in_file
    missing = [n for n in names if n not in names_in_file]
    if missing:
        raise ValueError(f"feature(s) {', '.join(missing)} not in {path}")
    feature_columns(names)  # also validates against the 47-feature schema
    cols = [names_in_file.index(n) for n in names]
    Xs = X[:, cols]
    if holdout_scenario:
        lo, hi = NPZ_SCENARIO_ROWS[holdout_scenario]
        if X.shape[0] != 2100:
            raise ValueError(f"--holdout-scenario needs the 2100-row reference layout, {path} has {X.shape[0]} rows")
        test = np.zeros(X.shape[0], dtype=bool)
        test[lo:hi] = True
        train_idx, test_idx = np.flatnonzero(~test), np.flatnonzero(test)
        protocol = f"scenario hold-out: train on the other scenarios, test on {holdout_scenario}"
    else:
        train_idx, test_idx = train_test_split(np.arange(X.shape[0]), test_size=test_size, random_state=seed,
                                               stratify=y)
        protocol = f"stratified random split, test_size {test_size}, seed {seed} (scaler fitted on the training part)"
    # balanced data: no class weights, as the reference recipe
    model = fit_logistic(Xs[train_idx], y[train_idx], names, "i24-47-v1", C=C, class_weight=None)
    logits = model.decision_function(Xs[test_idx])
    test_metrics = classification_metrics(y[test_idx], logits)
    cv = cross_val_score(Pipeline([("s", StandardScaler()), ("lr", LogisticRegression(C=C, max_iter=5000))]),
                         Xs[train_idx], y[train_idx], scoring="roc_auc",
                         cv=StratifiedKFold(5, shuffle=True, random_state=seed))
    os.makedirs(run_dir, exist_ok=True)
    model.save(os.path.join(run_dir, "model.json"))
    atomic_write_text(os.path.join(run_dir, "model_config.json"),
                      json.dumps({"kind": "lr", "C": C, "class_weight": None, "features": names}, indent=2))
    metrics = {
        "model": "lr", "protocol": protocol, "source": os.path.abspath(path), "feature_schema": "i24-47-v1",
        "features": names, "seed": seed,
        **{k: finite_or_none(test_metrics[k]) for k in ("accuracy", "roc_auc", "average_precision", "log_loss", "ece")},
        "n_train": int(train_idx.size), "n_test": int(test_idx.size), "pos_rate_test": float(y[test_idx].mean()),
        "cv5_roc_auc_train_part": float(cv.mean()),
    }
    atomic_write_text(os.path.join(run_dir, "metrics.json"), json.dumps(metrics, indent=2))
    return metrics
