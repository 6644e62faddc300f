"""The learned stitch-cost models. Each kind is a module with the same small contract.

A model module defines:
- `Config`: a dataclass of architecture hyperparameters (JSON-serialisable, saved as `model_config.json`);
- `build(config, stats) -> torch.nn.Module` where `stats` holds normalisation statistics fitted on the
  training split only (they become buffers inside the module, so export carries them into the graph);
- `fit_stats(train_pairs) -> dict` computing those statistics from training-split data;
- `search_space(trial) -> dict` (Optuna; model and optimiser hyperparameters for `tune`);
- `DEFAULT_TRAIN`: the default `training.loop.TrainConfig` overrides for this kind.
Every module's `forward(**inputs)` returns one logit per pair; sequence models also expose `encoder`
(window, mask -> embedding) and `head` (embedding_a, embedding_b, features -> logit) for two-graph export.
"""
from __future__ import annotations

import importlib

TORCH_KINDS = ("mlp", "siamese", "tcn", "transformer")
SEQUENCE_KINDS = ("siamese", "tcn", "transformer")


def model_module(kind: str):
    """The module implementing model `kind` (one of TORCH_KINDS)."""
    if kind not in TORCH_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(TORCH_KINDS)}")
    return importlib.import_module(f"training.models.{kind}")
