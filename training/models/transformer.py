"""Transformer stitch cost (REFERENCE.md §3.3): self-attention over each fragment's junction window.

The attention block is written out here (post-LayerNorm, as the reference's
`nn.TransformerEncoderLayer`) rather than taken from `nn.TransformerEncoderLayer`, whose inference
fast path changes the computation in eval mode and does not export. It calls
`scaled_dot_product_attention` with an explicit additive float mask (about twice as fast as
matmul-softmax-matmul when training on CPU); both ONNX exporters decompose it into MatMul/Softmax.
Key padding is that mask (0 or -1e9): the junction row is always valid, so no attention row is ever
fully masked, and padded keys get exactly zero weight, so the embedding does not depend on what or
how much padding a window has.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .sequence import (shared_search_space, pair_model, ChannelNormaliser, SequenceConfig, SequencePairModel,
                       fit_sequence_stats, masked_mean, sinusoidal_positions)

__all__ = ["Config", "AttentionBlock", "TransformerEncoder", "build", "fit_stats", "search_space", "DEFAULT_TRAIN"]

DEFAULT_TRAIN = {"epochs": 8, "batch_size": 256, "lr": 1e-3, "weight_decay": 1e-4, "patience": 3}

# Added to the scores of padded keys: exp(-1e9 - max) is exactly 0 in float32, and unlike -inf it
# cannot produce NaN (no inf - inf).
_MASKED_SCORE = -1e9


@dataclass
class Config(SequenceConfig):
    d_model: int = 64
    heads: int = 4
    layers: int = 2
    feedforward: int = 128
    dropout: float = 0.1
    max_positions: int = 512  # rows of the sinusoidal table; windows may be at most this long


class AttentionBlock(nn.Module):
    """Post-LN encoder layer: x = LN(x + MHA(x)); x = LN(x + FF(x)), with an additive key mask."""

    def __init__(self, d_model: int, heads: int, feedforward: int, dropout: float):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not divisible by heads {heads}")
        self.heads = heads
        self.head_dim = d_model // heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, feedforward), nn.ReLU(), nn.Dropout(dropout),
                                nn.Linear(feedforward, d_model))
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        """x (B, L, D); key_bias (B, 1, 1, L): 0 for valid keys, `_MASKED_SCORE` for padding."""
        b, length, d = x.shape
        q, k, v = self.qkv(x).reshape(b, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        mixed = nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=key_bias, dropout_p=self.dropout.p if self.training else 0.0)
        mixed = mixed.transpose(1, 2).reshape(b, length, d)
        x = self.norm1(x + self.dropout(self.out(mixed)))
        return self.norm2(x + self.dropout(self.ff(x)))


class TransformerEncoder(nn.Module):
    """(window (B, L, C), mask (B, L)) -> embedding (B, 2 * d_model): normalise, project, add
    sinusoidal positions (row 0 = the junction), attention blocks, then [junction row, masked mean]
    and LayerNorm. The junction row keeps the reference's emphasis on the endpoint token."""

    def __init__(self, config: Config, stats: dict):
        super().__init__()
        self.normaliser = ChannelNormaliser(stats["channel_mean"], stats["channel_std"])
        self.project = nn.Linear(config.n_channels, config.d_model)
        self.register_buffer("positions", sinusoidal_positions(config.max_positions, config.d_model))
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(AttentionBlock(config.d_model, config.heads, config.feedforward, config.dropout)
                                    for _ in range(config.layers))
        self.embedding_dim = 2 * config.d_model
        self.norm = nn.LayerNorm(self.embedding_dim)

    def forward(self, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        length = window.shape[1]
        h = self.project(self.normaliser(window, mask)) + self.positions[:length]
        h = self.dropout(h)
        key_bias = ((1.0 - mask) * _MASKED_SCORE)[:, None, None, :]
        for block in self.blocks:
            h = block(h, key_bias)
        return self.norm(torch.cat([h[:, 0], masked_mean(h, mask)], dim=-1))


def build(config: Config, stats: dict) -> SequencePairModel:
    """The Transformer pair model; `stats` from `fit_stats` on the training split."""
    return pair_model(TransformerEncoder(config, stats), config, stats)


# Channel statistics of the training split's windows and its feature statistics.
fit_stats = fit_sequence_stats


def search_space(trial, warm_start: bool = False) -> dict:
    """Optuna search space: depth, feed-forward width, dropout, plus the shared head / optimiser
    space (and, with `warm_start`, feature-branch and hard-negative choices; see `shared_search_space`)."""
    space = shared_search_space(trial, warm_start)
    space["model"].update({"layers": trial.suggest_int("layers", 1, 3),
                           "feedforward": trial.suggest_categorical("feedforward", [128, 256]),
                           "dropout": trial.suggest_float("dropout", 0.0, 0.3)})
    space["train"]["lr"] = trial.suggest_float("lr", 2e-4, 3e-3, log=True)
    return space
