"""Siamese BiLSTM stitch cost (REFERENCE.md §3.4, with its D9/B4 bugs fixed): a masked bidirectional
LSTM encodes each fragment's junction window; the pair head scores two embeddings plus pair features.

No packed sequences (they do not export to ONNX): the forward direction runs over the window as it
is, and since padding sits after the valid rows it never reaches a valid output; the backward
direction runs over each row with its valid prefix reversed (`valid_reversal_index`), so it starts
at the last valid sample. A fragment's embedding therefore does not depend on how much padding its
window has, exactly as with packing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .sequence import (shared_search_space, pair_model, ChannelNormaliser, SequenceConfig, SequencePairModel,
                       fit_sequence_stats, masked_mean, valid_reversal_index)

__all__ = ["Config", "SiameseEncoder", "build", "fit_stats", "search_space", "DEFAULT_TRAIN"]

DEFAULT_TRAIN = {"epochs": 8, "batch_size": 256, "lr": 2e-3, "weight_decay": 1e-4, "patience": 3}


@dataclass
class Config(SequenceConfig):
    hidden: int = 64          # per direction; the embedding has 2 * hidden values
    layers: int = 2
    dropout: float = 0.1      # between LSTM layers


class SiameseEncoder(nn.Module):
    """(window (B, L, C), mask (B, L)) -> embedding (B, 2 * hidden): normalise, masked BiLSTM,
    masked mean over valid steps, LayerNorm."""

    def __init__(self, config: Config, stats: dict):
        super().__init__()
        self.normaliser = ChannelNormaliser(stats["channel_mean"], stats["channel_std"])
        self.forward_layers = nn.ModuleList()
        self.backward_layers = nn.ModuleList()
        width = config.n_channels
        for _ in range(config.layers):
            self.forward_layers.append(nn.LSTM(width, config.hidden, batch_first=True))
            self.backward_layers.append(nn.LSTM(width, config.hidden, batch_first=True))
            width = 2 * config.hidden
        self.dropout = nn.Dropout(config.dropout)
        self.norm = nn.LayerNorm(width)
        self.embedding_dim = width

    def forward(self, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.normaliser(window, mask)
        reverse = valid_reversal_index(mask).unsqueeze(-1)
        for i, (fwd, bwd) in enumerate(zip(self.forward_layers, self.backward_layers)):
            if i:
                x = self.dropout(x)
            out_f, _ = fwd(x)
            rev = reverse.expand(-1, -1, x.shape[-1])
            out_b, _ = bwd(torch.gather(x, 1, rev))
            out_b = torch.gather(out_b, 1, reverse.expand(-1, -1, out_b.shape[-1]))
            x = torch.cat([out_f, out_b], dim=-1)
        # The reshape only states the static width: ONNX shape inference cannot see it through the
        # LSTM/GatherElements chain, and the exported embedding should not get a symbolic width.
        return self.norm(masked_mean(x, mask).reshape(-1, self.embedding_dim))


def build(config: Config, stats: dict) -> SequencePairModel:
    """The Siamese pair model; `stats` from `fit_stats` on the training split."""
    return pair_model(SiameseEncoder(config, stats), config, stats)


# Channel statistics of the training split's windows and its feature statistics.
fit_stats = fit_sequence_stats


def search_space(trial, warm_start: bool = False) -> dict:
    """Optuna search space: encoder width, dropout, plus the shared head / optimiser
    space (and, with `warm_start`, feature-branch and hard-negative choices; see `shared_search_space`)."""
    space = shared_search_space(trial, warm_start)
    space["model"].update({"hidden": trial.suggest_categorical("hidden", [64, 96, 128]),
                           "dropout": trial.suggest_float("dropout", 0.0, 0.3)})
    space["train"]["lr"] = trial.suggest_float("lr", 3e-4, 5e-3, log=True)
    return space
