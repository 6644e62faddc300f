"""What the three sequence models (Siamese BiLSTM, TCN, Transformer) share: the encoder's channel
normalisation and masked pooling, the pair head, the pair model with its loss, and the statistics.

Each model is `SequencePairModel(encoder, head)`. The encoder maps one junction window
(`runtime.windows`: (B, L, C) plus a (B, L) mask, valid rows first) to an embedding and depends on
that one fragment only, so the runtime encodes each fragment once and caches the embedding; the head
maps two embeddings plus the raw `i24-47-v2` pair features to a logit. Both are exported as separate
ONNX graphs, and all normalisation statistics are buffers inside them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from runtime.windows import CHANNELS, WINDOW_LENGTH
from . import mlp as mlp_module
from .mlp import FeatureScaler, feature_stats

__all__ = [
    "SequenceConfig",
    "ChannelNormaliser",
    "masked_mean",
    "masked_max",
    "PairHead",
    "build_head",
    "warm_start_feature_branch",
    "shared_search_space",
    "SequencePairModel",
    "window_stats",
    "fit_sequence_stats",
    "contrastive_loss",
    "sinusoidal_positions",
    "valid_reversal_index",
]

# The lowest float32: the fill for a masked max. A finite value (not -inf) cannot turn into NaN
# downstream (e.g. -inf * 0 in a later product) even if a row were ever fully masked.
_LOWEST = float(torch.finfo(torch.float32).min)


@dataclass
class SequenceConfig:
    """Hyperparameters common to the sequence models (each kind's `Config` extends this).

    `contrastive_weight` scales the optional contrastive term of `pair_loss` (0 disables it);
    `contrastive_margin` is in RMS-distance units of the embeddings (see `contrastive_loss`).
    """

    n_channels: int = len(CHANNELS)
    window_length: int = WINDOW_LENGTH
    n_features: int = 47
    head_hidden: tuple = (128, 64)
    head_dropout: float = 0.2
    contrastive_weight: float = 0.1
    contrastive_margin: float = 2.0
    # Hidden widths of an optional feature branch in the head (an MLP on the pair features alone whose
    # logit is added to the head's); () for none. `warm_start_feature_branch` fills it from a trained
    # MLP run, so the sequence model starts as that MLP and its encoder learns a residual on top.
    feature_branch: tuple = ()
    feature_branch_dropout: float = 0.1
    # Learning rate of a warm-started feature branch relative to the rest of the model: 0 keeps the
    # MLP frozen (the encoder fits a residual on top of it), > 0 fine-tunes it jointly at lr x scale.
    feature_branch_lr_scale: float = 0.0


class ChannelNormaliser(nn.Module):
    """z = (window - mean) / std per channel, padded rows set to exactly 0.

    The statistics come from the training split's valid samples (`window_stats`) and are buffers,
    so they travel inside the exported encoder graph. `torch.where` (not a product with the mask)
    clears padding, so whatever sits under mask 0, even NaN, cannot reach the encoder.
    """

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(np.asarray(std), dtype=torch.float32))

    def forward(self, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        z = (window - self.mean) / self.std
        return torch.where(mask.unsqueeze(-1) > 0, z, torch.zeros_like(z))


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over valid time steps: h (B, L, D), mask (B, L) -> (B, D)."""
    valid = mask.unsqueeze(-1) > 0
    total = torch.where(valid, h, torch.zeros_like(h)).sum(dim=1)
    # A window always has its junction row, so the count is >= 1; the clamp only guards misuse.
    return total / mask.sum(dim=1, keepdim=True).clamp_min(1.0)


def masked_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over valid time steps: h (B, L, D), mask (B, L) -> (B, D); padding filled with the lowest
    finite float32, so a padded step never wins and no -inf ever appears."""
    filled = torch.where(mask.unsqueeze(-1) > 0, h, torch.full_like(h, _LOWEST))
    return filled.amax(dim=1)


class PairHead(nn.Module):
    """[e_a, e_b, |e_a - e_b|, e_a * e_b, standardised features] -> MLP -> one logit per pair.

    Parameters
    ----------
    embedding_dim : size E of each embedding.
    n_features : number of raw pair features (47 for `i24-47-v2`).
    hidden : widths of the hidden layers.
    dropout : dropout after each hidden layer.
    feature_mean, feature_scale : training-split statistics for the `FeatureScaler` inside, so the
        head takes raw feature values and the runtime needs no statistics of its own.
    feature_branch : hidden widths of an optional `MLPCost` on the raw features alone whose logit is
        added to the head's (empty: no branch); `feature_branch_dropout` its dropout.
    """

    def __init__(self, embedding_dim: int, n_features: int, hidden, dropout: float, feature_mean, feature_scale,
                 feature_branch=(), feature_branch_dropout: float = 0.1):
        super().__init__()
        self.scaler = FeatureScaler(feature_mean, feature_scale)
        layers, width = [], 4 * embedding_dim + n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)
        self.feature_branch = None
        if feature_branch:
            branch_config = mlp_module.Config(n_features=n_features, hidden=tuple(feature_branch),
                                              dropout=feature_branch_dropout)
            self.feature_branch = mlp_module.build(branch_config, {"feature_mean": feature_mean,
                                                                   "feature_scale": feature_scale})

    def forward(self, emb_a: torch.Tensor, emb_b: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        x = torch.cat([emb_a, emb_b, (emb_a - emb_b).abs(), emb_a * emb_b, self.scaler(features)], dim=-1)
        logit = self.mlp(x).squeeze(-1)
        if self.feature_branch is not None:
            logit = logit + self.feature_branch(features)
        return logit


def contrastive_loss(emb_a: torch.Tensor, emb_b: torch.Tensor, labels: torch.Tensor, margin: float,
                     pos_weight: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Class-weighted contrastive loss: mean of w * [y d^2 + (1 - y) max(0, margin - d)^2].

    d is the RMS distance sqrt(mean_k (e_a - e_b)_k^2), so the margin means the same for any
    embedding size (the reference used the Euclidean norm of 64- to 256-d embeddings with margin 2).
    Positives are weighted by `pos_weight` as in the class-weighted BCE, so neither term is swamped
    at the natural ~25:1 ratio. The small epsilon keeps the gradient of d finite at d = 0.
    """
    d = torch.sqrt(((emb_a - emb_b) ** 2).mean(dim=-1) + 1e-8)
    per_pair = labels * d ** 2 + (1.0 - labels) * torch.relu(margin - d) ** 2
    weights = 1.0 + (torch.as_tensor(pos_weight, dtype=per_pair.dtype) - 1.0) * labels
    return (weights * per_pair).mean()


class SequencePairModel(nn.Module):
    """The earlier fragment's TAIL window and the later fragment's HEAD window through one shared
    encoder, then the pair head.

    Attributes
    ----------
    encoder : module, `(window (B, L, C), mask (B, L)) -> embedding (B, E)`; exported as encoder.onnx.
    head : `PairHead`, `(emb_a, emb_b, features (B, 47 raw)) -> logit (B,)`; exported as head.onnx.
    """

    def __init__(self, encoder: nn.Module, head: PairHead, config: SequenceConfig):
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.head = head

    def param_groups(self, lr: float) -> list[dict]:
        """AdamW parameter groups: the trainable feature branch at `lr x feature_branch_lr_scale`, the rest
        at `lr`. A frozen branch (scale 0, `requires_grad` off) is left out of the optimiser altogether."""
        branch = self.head.feature_branch
        branch_ids = {id(p) for p in branch.parameters()} if branch is not None else set()
        groups = [{"params": [p for p in self.parameters() if id(p) not in branch_ids and p.requires_grad], "lr": lr}]
        trainable = [p for p in branch.parameters() if p.requires_grad] if branch is not None else []
        if trainable:
            groups.append({"params": trainable, "lr": lr * self.config.feature_branch_lr_scale})
        return groups

    def embed_pair(self, tail: torch.Tensor, tail_mask: torch.Tensor, head: torch.Tensor,
                   head_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (e_a, e_b) of the earlier fragment's tail and the later fragment's head window.

        One encoder call on both halves stacked: the same result as two calls (each window is encoded
        on its own), with half the per-call overhead of a recurrent or attention encoder.
        """
        both = self.encoder(torch.cat([tail, head], dim=0), torch.cat([tail_mask, head_mask], dim=0))
        return both[:tail.shape[0]], both[tail.shape[0]:]

    def forward(self, tail: torch.Tensor, tail_mask: torch.Tensor, head: torch.Tensor, head_mask: torch.Tensor,
                features: torch.Tensor) -> torch.Tensor:
        """One logit per pair (log-odds that the earlier fragment continues into the later one)."""
        emb_a, emb_b = self.embed_pair(tail, tail_mask, head, head_mask)
        return self.head(emb_a, emb_b, features)

    def pair_loss(self, inputs: dict, labels: torch.Tensor, pos_weight: torch.Tensor):
        """Class-weighted BCE plus `contrastive_weight` x `contrastive_loss` on the two embeddings.

        Both classes must come from the same source, RAW candidate pairs as the stitcher queries
        them (REFERENCE.md L3): the contrastive term, like the BCE, would otherwise learn provenance.

        Returns
        -------
        (loss, logits) as `training.loop` expects.
        """
        emb_a, emb_b = self.embed_pair(inputs["tail"], inputs["tail_mask"], inputs["head"], inputs["head_mask"])
        logits = self.head(emb_a, emb_b, inputs["features"])
        loss = nn.functional.binary_cross_entropy_with_logits(logits, labels, pos_weight=pos_weight)
        if self.config.contrastive_weight > 0:
            loss = loss + self.config.contrastive_weight * contrastive_loss(
                emb_a, emb_b, labels, self.config.contrastive_margin, pos_weight)
        return loss, logits


def window_stats(windows: np.ndarray, masks: np.ndarray) -> dict:
    """Per-channel mean and population std over the valid samples of windows (N, L, C).

    A channel that is constant over the training split (e.g. confidence where no fragment carries
    the field) gets std 1, so it normalises to 0 instead of dividing by zero.
    """
    w = np.asarray(windows, dtype=np.float64)
    valid = np.asarray(masks) > 0
    samples = w[valid]
    if samples.shape[0] == 0:
        raise ValueError("no valid window samples to fit channel statistics on")
    mean = samples.mean(axis=0)
    std = samples.std(axis=0)
    std[std < 1e-6] = 1.0
    return {"channel_mean": mean.tolist(), "channel_std": std.tolist()}


def fit_sequence_stats(train_pairs) -> dict:
    """Channel statistics over the windows that the training pairs use, plus the feature statistics.

    Parameters
    ----------
    train_pairs : `training.loop.TensorPairs` of the training split as `training.sequence_data`
        builds it (gathered "tail"/"tail_mask" and "head"/"head_mask", tensor "features").

    Returns
    -------
    dict with channel_mean, channel_std (C each), feature_mean, feature_scale (47 each), as lists.
    Each window counts once however many pairs use it: the statistics describe fragments, not the
    pair sampling. Windows of fragments the split's pairs do not use are left out.
    """
    windows, masks = [], []
    for role in ("tail", "head"):
        table, index = train_pairs.gathered[role]
        mask_table, mask_index = train_pairs.gathered[f"{role}_mask"]
        if not torch.equal(index, mask_index):
            raise ValueError(f"{role!r} and {role + '_mask'!r} are gathered by different indices")
        rows = torch.unique(index)
        windows.append(table.index_select(0, rows).numpy())
        masks.append(mask_table.index_select(0, rows).numpy())
    stats = window_stats(np.concatenate(windows), np.concatenate(masks))
    stats.update(feature_stats(train_pairs.tensors["features"].numpy()))
    return stats


def build_head(config: SequenceConfig, embedding_dim: int, stats: dict) -> PairHead:
    """The pair head for embeddings of size `embedding_dim`, with the training-split feature statistics."""
    return PairHead(embedding_dim, config.n_features, config.head_hidden, config.head_dropout,
                    stats["feature_mean"], stats["feature_scale"], config.feature_branch,
                    config.feature_branch_dropout)


def warm_start_feature_branch(model: "SequencePairModel", mlp_state: dict, freeze: bool | None = None) -> None:
    """Start `model` as a trained MLP: copy its weights (scaler statistics included) into the head's
    feature branch and zero the head's last layer, so that before any training step the pair model's
    logit is exactly the MLP's. A frozen branch stays fixed and training fits only the encoder and the
    head's embedding path: a residual on top of the MLP. Otherwise the branch is fine-tuned with the
    rest, at `feature_branch_lr_scale` x the learning rate (`SequencePairModel.param_groups`).

    Parameters
    ----------
    model : a pair model whose config has `feature_branch` equal to the MLP's hidden widths.
    mlp_state : the MLP run's state dict (`training.loop.load_state` of its best.pt).
    freeze : None (default) follows the config: frozen when `feature_branch_lr_scale` is 0.
    """
    if freeze is None:
        freeze = model.config.feature_branch_lr_scale <= 0
    branch = model.head.feature_branch
    if branch is None:
        raise ValueError("the model has no feature branch: set feature_branch to the MLP's hidden widths")
    try:
        branch.load_state_dict(mlp_state)
    except RuntimeError as exc:
        raise ValueError(f"the MLP weights do not fit the feature branch {tuple(model.config.feature_branch)}: "
                         f"{exc}") from None
    last = model.head.mlp[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    for p in branch.parameters():
        p.requires_grad_(not freeze)


def shared_search_space(trial, warm_start: bool = False) -> dict:
    """The search space every sequence kind shares (each kind's `search_space` adds its encoder's): head
    width and dropout, contrastive weight and the optimiser. With `warm_start` (the trials start from an
    MLP run) also the feature branch's learning-rate scale (0 = frozen) and which training negatives
    count as hard ("pairs": `train_run`'s `hard_negatives`).

    Returns {"model": {...}, "train": {...}[, "pairs": {...}]} without the learning-rate range, which is
    the kind's own.
    """
    width = trial.suggest_categorical("head_width", [64, 128])
    space = {
        "model": {"head_hidden": (width, width // 2),
                  "head_dropout": trial.suggest_float("head_dropout", 0.0, 0.4),
                  "contrastive_weight": trial.suggest_float("contrastive_weight", 0.0, 0.3)},
        "train": {"weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
                  "batch_size": trial.suggest_categorical("batch_size", [128, 256, 512])},
    }
    if warm_start:
        space["model"]["feature_branch_lr_scale"] = trial.suggest_categorical("feature_branch_lr_scale",
                                                                              [0.0, 0.1, 1.0])
        from ..pairs import HARD_NEGATIVES

        space["pairs"] = {"hard_negatives": trial.suggest_categorical("hard_negatives", list(HARD_NEGATIVES))}
    return space


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """(length, dim) sinusoidal position table: PE[p, 2i] = sin(p / 10000^(2i/dim)), PE[p, 2i+1] = cos(...)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div)[:, : dim // 2]
    return table


def valid_reversal_index(mask: torch.Tensor) -> torch.Tensor:
    """(B, L) time index that reverses each row's valid prefix and leaves its padding in place.

    For a row with n valid steps: k -> n-1-k for k < n, k -> k otherwise. Applying it twice is the
    identity. Lets a backward recurrent pass start at the last *valid* step without packed sequences
    (which do not export), so padding never reaches a valid output. Built from cumsum, not arange,
    so the graph has no shape-dependent constants.
    """
    k = torch.cumsum(torch.ones_like(mask), dim=1) - 1.0
    n = mask.sum(dim=1, keepdim=True)
    return torch.where(k < n, n - 1.0 - k, k).long()


def pair_model(encoder: nn.Module, config: SequenceConfig, stats: dict) -> "SequencePairModel":
    """The pair model of any sequence kind: its `encoder` plus the shared pair head sized for it."""
    return SequencePairModel(encoder, build_head(config, encoder.embedding_dim, stats), config)
