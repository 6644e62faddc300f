"""MLP on the standardised engineered pair features (schema i24-47-v2); standardisation lives in the module."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

DEFAULT_TRAIN = {"epochs": 30, "batch_size": 512, "lr": 2e-3, "weight_decay": 1e-4, "patience": 6}


@dataclass
class Config:
    n_features: int = 47
    hidden: tuple = (128, 64, 32)
    dropout: float = 0.1


class FeatureScaler(nn.Module):
    """z = (f - mean) / scale, with statistics from the training split (a zero-variance column gets scale 1).

    Raw feature values go in, so the runtime never has to know the statistics: they are in the graph.
    """

    def __init__(self, mean: np.ndarray, scale: np.ndarray):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(np.asarray(scale), dtype=torch.float32))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.scale


def feature_stats(features: np.ndarray) -> dict:
    """Mean and population std per column (std 0 -> 1), as StandardScaler computes them."""
    f = np.asarray(features, dtype=np.float64)
    mean = f.mean(axis=0)
    scale = f.std(axis=0)
    scale[scale < 1e-12] = 1.0
    return {"feature_mean": mean.tolist(), "feature_scale": scale.tolist()}


class MLPCost(nn.Module):
    def __init__(self, config: Config, stats: dict):
        super().__init__()
        self.config = config
        self.scaler = FeatureScaler(stats["feature_mean"], stats["feature_scale"])
        layers, width = [], config.n_features
        for h in config.hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(config.dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(self.scaler(features)).squeeze(-1)


def fit_stats(train_pairs) -> dict:
    return feature_stats(train_pairs.tensors["features"].numpy())


def build(config: Config, stats: dict) -> MLPCost:
    return MLPCost(config, stats)


def search_space(trial) -> dict:
    depth = trial.suggest_int("depth", 1, 3)
    width = trial.suggest_categorical("width", [32, 64, 128, 256])
    return {
        "model": {"hidden": tuple(max(8, width // (2 ** i)) for i in range(depth)),
                  "dropout": trial.suggest_float("dropout", 0.0, 0.4)},
        "train": {"lr": trial.suggest_float("lr", 2e-4, 1e-2, log=True),
                  "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
                  "batch_size": trial.suggest_categorical("batch_size", [128, 256, 512])},
    }
