"""TCN stitch cost (REFERENCE.md §3.2, with B2 fixed: the padding is masked and the pair features are
standardised inside the graph): dilated causal convolutions encode each fragment's junction window.

Causal here means along the window's row order, from the junction outwards (`runtime.windows`):
the output at row k sees rows k, k-d, k-2d, ... only. Padding sits after the valid rows, so no valid
output ever sees it, and masked pooling leaves the padded outputs out; the embedding does not
depend on how much padding a window has. No BatchNorm (the reference's): its batch statistics
would mix padding and pairs into an encoder that must depend on one fragment only.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .sequence import (shared_search_space, pair_model, ChannelNormaliser, SequenceConfig, SequencePairModel,
                       fit_sequence_stats, masked_max, masked_mean)

__all__ = ["Config", "CausalConv1d", "TemporalBlock", "TCNEncoder", "build", "fit_stats", "search_space", "DEFAULT_TRAIN"]

DEFAULT_TRAIN = {"epochs": 8, "batch_size": 256, "lr": 2e-3, "weight_decay": 1e-4, "patience": 3}


@dataclass
class Config(SequenceConfig):
    channels: tuple = (32, 64, 64)   # block i has dilation 2**i
    kernel_size: int = 3
    dropout: float = 0.1


class CausalConv1d(nn.Module):
    """Dilated causal convolution on (B, L, C) windows: out[k] = sum_j W_j x[k - j * dilation] + bias.

    Computed as one matmul over the stacked shifted copies of x (im2col by hand) rather than with
    `nn.Conv1d`: the same function, but several times faster for these small windows on CPU
    (torch's dilated Conv1d takes ~250 us for one 64-step window here), and it keeps the
    (B, L, C) layout, so the encoder needs no transposes. Exports as Pad/Slice/Concat/MatMul.
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.dilation = dilation
        # Column block j of `taps` multiplies x[k - j * dilation].
        self.taps = nn.Linear(kernel_size * c_in, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reach = (self.kernel_size - 1) * self.dilation
        length = x.shape[1]
        # Zero padding on the junction side only: row k never sees a row after it.
        padded = nn.functional.pad(x, (0, 0, reach, 0))
        shifted = [padded[:, reach - j * self.dilation: reach - j * self.dilation + length]
                   for j in range(self.kernel_size)]
        return self.taps(torch.cat(shifted, dim=-1))


class TemporalBlock(nn.Module):
    """Two causal dilated convolutions with ReLU and dropout, plus a residual (a linear map when the
    width changes): x (B, L, C_in) -> (B, L, C_out)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.conv1 = CausalConv1d(c_in, c_out, kernel_size, dilation)
        self.conv2 = CausalConv1d(c_out, c_out, kernel_size, dilation)
        self.dropout = nn.Dropout(dropout)
        self.residual = nn.Linear(c_in, c_out) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(torch.relu(self.conv1(x)))
        out = self.dropout(torch.relu(self.conv2(out)))
        return torch.relu(out + self.residual(x))


class TCNEncoder(nn.Module):
    """(window (B, L, C), mask (B, L)) -> embedding (B, 2 * channels[-1]): normalise, causal TCN,
    [masked mean, masked max] over valid steps, LayerNorm."""

    def __init__(self, config: Config, stats: dict):
        super().__init__()
        self.normaliser = ChannelNormaliser(stats["channel_mean"], stats["channel_std"])
        blocks, width = [], config.n_channels
        for i, c in enumerate(config.channels):
            blocks.append(TemporalBlock(width, c, config.kernel_size, 2 ** i, config.dropout))
            width = c
        self.blocks = nn.Sequential(*blocks)
        self.embedding_dim = 2 * width
        self.norm = nn.LayerNorm(self.embedding_dim)

    def forward(self, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.normaliser(window, mask))
        return self.norm(torch.cat([masked_mean(h, mask), masked_max(h, mask)], dim=-1))


def build(config: Config, stats: dict) -> SequencePairModel:
    """The TCN pair model; `stats` from `fit_stats` on the training split."""
    return pair_model(TCNEncoder(config, stats), config, stats)


# Channel statistics of the training split's windows and its feature statistics.
fit_stats = fit_sequence_stats


def search_space(trial, warm_start: bool = False) -> dict:
    """Optuna search space: block widths, kernel, dropout, plus the shared head / optimiser
    space (and, with `warm_start`, feature-branch and hard-negative choices; see `shared_search_space`)."""
    c = trial.suggest_categorical("width", [32, 64])
    space = shared_search_space(trial, warm_start)
    space["model"].update({"channels": (c // 2, c, c),
                           "kernel_size": trial.suggest_categorical("kernel_size", [3, 5]),
                           "dropout": trial.suggest_float("dropout", 0.0, 0.3)})
    space["train"]["lr"] = trial.suggest_float("lr", 3e-4, 5e-3, log=True)
    return space
