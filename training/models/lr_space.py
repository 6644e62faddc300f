"""Optuna search space of the logistic regression (LR has no torch module, so its space lives here).

Same contract as the torch kinds' `search_space(trial)`: `{"model": {...}, "train": {...}}`. For LR the
model part holds `C`, `class_weight`, `features` (the feature subset `train_run` fits on) and the input
steps of `training.lr` (`transform`, `bhattacharyya_input`); there are no optimiser settings, so "train"
is empty.
"""
from __future__ import annotations

__all__ = ["search_space", "FEATURE_SUBSETS"]

# Subsets worth comparing: every engineered feature, or the reference's production consensus ten.
FEATURE_SUBSETS = ("all-47", "consensus-10")


def _feature_subset(name: str) -> list[str]:
    from runtime.features import FEATURE_NAMES

    from ..lr import CONSENSUS_10

    return list(FEATURE_NAMES) if name == "all-47" else list(CONSENSUS_10)


def search_space(trial) -> dict:
    """Sample C (log-uniform 1e-3..1e2), class weighting, the feature subset and the input steps."""
    subset = trial.suggest_categorical("features", list(FEATURE_SUBSETS))
    return {
        "model": {"C": trial.suggest_float("C", 1e-3, 1e2, log=True),
                  "class_weight": trial.suggest_categorical("class_weight", ["balanced", None]),
                  "features": _feature_subset(subset),
                  "transform": trial.suggest_categorical("transform", ["slog", "none"]),
                  "bhattacharyya_input": trial.suggest_categorical("bhattacharyya_input", [True, False])},
        "train": {},
    }
