"""The one training loop every torch model uses: seeded, early stopping, best/last checkpoints, resume.

A model is any `torch.nn.Module` whose `forward(**inputs)` returns one logit per pair. A model that
needs more than class-weighted BCE (e.g. a contrastive term on embeddings) defines
`pair_loss(inputs, labels, pos_weight) -> (loss, logits)`. Data is any object with `labels`
(np.ndarray of 0/1), `__len__` and `batch(indices) -> dict[str, torch.Tensor]` (see `TensorPairs`).

Determinism and resume: the shuffle order and the torch RNG are re-seeded from `(seed, epoch)` at the
start of every epoch, and `last.pt` (model, optimiser, history, early-stopping state) is written
atomically after every epoch, so a run killed at any point and resumed reaches the same result as an
uninterrupted one.
"""
from __future__ import annotations

import io
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Protocol

import numpy as np
import torch
from torch import nn

from runtime.files import atomic_write_bytes, atomic_write_text
from .metrics import classification_metrics, finite_or_none

__all__ = [
    "TrainConfig",
    "PairData",
    "TensorPairs",
    "train_model",
    "predict_logits",
    "save_state",
    "load_state",
    "TrainingStopped",
]


class PairData(Protocol):
    labels: np.ndarray

    def __len__(self) -> int: ...

    def batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]: ...


class TensorPairs:
    """Pair data held as aligned tensors (one row per pair), optionally gathered through index arrays.

    Parameters
    ----------
    labels : (N,) 0/1 labels.
    tensors : name -> tensor with N rows (per-pair inputs, e.g. "features").
    gathered : name -> (table, index) where `table` holds per-fragment rows (e.g. encoder windows) and
        `index` (N,) picks the row for each pair, so windows are stored once per fragment, not per pair.
    """

    def __init__(self, labels: np.ndarray, tensors: Mapping[str, torch.Tensor] | None = None,
                 gathered: Mapping[str, tuple[torch.Tensor, np.ndarray]] | None = None):
        self.labels = np.asarray(labels).astype(np.int64)
        self.tensors = dict(tensors or {})
        self.gathered = {k: (t, torch.as_tensor(np.asarray(i), dtype=torch.long)) for k, (t, i) in (gathered or {}).items()}
        n = self.labels.shape[0]
        for name, t in self.tensors.items():
            if t.shape[0] != n:
                raise ValueError(f"tensor {name!r} has {t.shape[0]} rows, labels have {n}")
        for name, (_, idx) in self.gathered.items():
            if idx.shape[0] != n:
                raise ValueError(f"index for {name!r} has {idx.shape[0]} rows, labels have {n}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        out = {name: t.index_select(0, idx) for name, t in self.tensors.items()}
        for name, (table, rows) in self.gathered.items():
            out[name] = table.index_select(0, rows.index_select(0, idx))
        return out

    def subset(self, indices: np.ndarray) -> "TensorPairs":
        idx = torch.as_tensor(indices, dtype=torch.long)
        return TensorPairs(
            self.labels[np.asarray(indices)],
            {k: t.index_select(0, idx) for k, t in self.tensors.items()},
            {k: (table, rows.index_select(0, idx).numpy()) for k, (table, rows) in self.gathered.items()},
        )


@dataclass
class TrainConfig:
    """Optimisation settings (JSON-serialisable; saved next to the checkpoints)."""

    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 6
    monitor: str = "average_precision"  # "roc_auc", "average_precision" or "loss"
    grad_clip: float = 1.0
    seed: int = 0
    pos_weight: float | None = None  # None: n_neg / n_pos of the training split (class-weighted BCE)
    min_epochs: int = 3

    def __post_init__(self):
        if self.monitor not in ("roc_auc", "average_precision", "loss"):
            raise ValueError(f"monitor must be roc_auc, average_precision or loss, got {self.monitor!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")


class TrainingStopped(Exception):
    """Raised by an epoch callback to stop training early (e.g. an Optuna pruner)."""


def save_state(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """torch.save into memory, then an atomic write: a crash never leaves a half-written checkpoint."""
    buf = io.BytesIO()
    torch.save(dict(state), buf)
    atomic_write_bytes(path, buf.getvalue())


def load_state(path: str | os.PathLike) -> dict:
    """Load a checkpoint with `weights_only=True` (no arbitrary code execution)."""
    return torch.load(path, map_location="cpu", weights_only=True)


@torch.no_grad()
def predict_logits(model: nn.Module, data: PairData, batch_size: int = 2048) -> np.ndarray:
    """Logits for every pair of `data`, in order, with the model in eval mode.

    Sequence models (an `encoder` and a `head`, windows held per fragment) are scored the way the runtime
    scores them: each fragment window is encoded once, then the head runs per pair. Evaluating 10^5 pairs
    then costs thousands of encoder calls instead of 2 x 10^5.
    """
    was_training = model.training
    model.eval()
    try:
        if _per_fragment(model, data):
            return _predict_per_fragment(model, data, batch_size)
        out = np.empty(len(data), dtype=np.float64)
        for start in range(0, len(data), batch_size):
            idx = np.arange(start, min(start + batch_size, len(data)))
            out[idx] = model(**data.batch(idx)).reshape(-1).double().numpy()
        return out
    finally:
        model.train(was_training)


def _per_fragment(model: nn.Module, data) -> bool:
    return (hasattr(model, "encoder") and hasattr(model, "head") and isinstance(data, TensorPairs)
            and {"tail", "tail_mask", "head", "head_mask"} <= set(data.gathered) and "features" in data.tensors)


def _encode_table(encoder: nn.Module, windows: torch.Tensor, masks: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([encoder(windows[i:i + batch_size], masks[i:i + batch_size])
                      for i in range(0, windows.shape[0], batch_size)])


def _predict_per_fragment(model: nn.Module, data: "TensorPairs", batch_size: int) -> np.ndarray:
    tails, ia = data.gathered["tail"]
    tail_masks, _ = data.gathered["tail_mask"]
    heads, ib = data.gathered["head"]
    head_masks, _ = data.gathered["head_mask"]
    emb_tail = _encode_table(model.encoder, tails, tail_masks, batch_size)
    emb_head = _encode_table(model.encoder, heads, head_masks, batch_size)
    features = data.tensors["features"]
    out = np.empty(len(data), dtype=np.float64)
    for start in range(0, len(data), batch_size):
        sl = slice(start, min(start + batch_size, len(data)))
        out[sl] = model.head(emb_tail[ia[sl]], emb_head[ib[sl]], features[sl]).reshape(-1).double().numpy()
    return out


def _loss(model: nn.Module, inputs: dict, labels: torch.Tensor, pos_weight: torch.Tensor):
    if hasattr(model, "pair_loss"):
        return model.pair_loss(inputs, labels, pos_weight)
    logits = model(**inputs).reshape(-1)
    return nn.functional.binary_cross_entropy_with_logits(logits, labels, pos_weight=pos_weight), logits


def _score(metrics: Mapping[str, float], monitor: str) -> float:
    if monitor == "loss":
        return -metrics["log_loss"]
    value = metrics[monitor]
    return value if math.isfinite(value) else -math.inf


def train_model(model: nn.Module, train: PairData, val: PairData, cfg: TrainConfig, run_dir: str | os.PathLike,
                *, resume: bool = True, progress: bool = True,
                epoch_callback: Callable[[int, dict], None] | None = None, fingerprint: str = "") -> dict:
    """Train `model` with early stopping on the validation metric; leave the best weights loaded.

    Writes into `run_dir`: `last.pt` (resume state), `best.pt` (best model state dict),
    `history.json` (per-epoch train loss and validation loss/accuracy/ROC-AUC/AP/ECE),
    `train_config.json`. Returns `{"history", "best_epoch", "best_score", "epochs_run", "stopped"}`.
    `epoch_callback(epoch, val_metrics)` may raise `TrainingStopped` (pruning).
    A `last.pt` in `run_dir` is resumed only when it was written with the same training config and the
    same `fingerprint` (the caller's description of model and data); otherwise training starts over.
    """
    run_dir = os.fspath(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    atomic_write_text(os.path.join(run_dir, "train_config.json"), json.dumps(asdict(cfg), indent=2))
    labels_np = train.labels
    n_pos = int(labels_np.sum())
    n_neg = int(labels_np.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"training split needs both classes (positives {n_pos}, negatives {n_neg})")
    pw = cfg.pos_weight if cfg.pos_weight is not None else n_neg / n_pos
    pos_weight = torch.tensor(pw, dtype=torch.float32)
    # a model may give its own parameter groups (e.g. a warm-started branch at a smaller learning rate)
    groups = model.param_groups(cfg.lr) if hasattr(model, "param_groups") else model.parameters()
    optimiser = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[dict] = []
    best_score, best_epoch, bad_epochs, start_epoch = -math.inf, -1, 0, 0
    last_path = os.path.join(run_dir, "last.pt")
    best_path = os.path.join(run_dir, "best.pt")
    identity = json.dumps({"train": asdict(cfg), "fingerprint": fingerprint}, sort_keys=True)
    state = load_state(last_path) if resume and os.path.exists(last_path) else None
    if state is not None and state.get("identity") != identity:
        if progress:
            print(f"{last_path} belongs to another configuration: starting over", file=sys.stderr)
        state = None
    if state is not None:
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        history = json.loads(state["history_json"])
        best_score, best_epoch = float(state["best_score"]), int(state["best_epoch"])
        bad_epochs, start_epoch = int(state["bad_epochs"]), int(state["epoch"]) + 1
        if progress:
            print(f"resuming from {last_path} at epoch {start_epoch}", file=sys.stderr)
    stopped = None
    labels_t = torch.as_tensor(labels_np, dtype=torch.float32)
    n = len(train)
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.epochs):
        if stopped is not None:
            break
        if epoch - best_epoch > cfg.patience and epoch >= cfg.min_epochs and best_epoch >= 0:
            stopped = "early_stopping"
            break
        t0 = time.perf_counter()
        torch.manual_seed(cfg.seed * 100_003 + epoch)
        order = np.random.default_rng([cfg.seed, epoch]).permutation(n)
        model.train()
        total, count = 0.0, 0
        batches = range(0, n, cfg.batch_size)
        if progress:  # a bar with ETA over the epoch's batches, cleared when the epoch line is printed
            from tqdm import tqdm

            batches = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False,
                           file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
        for start in batches:
            idx = order[start:start + cfg.batch_size]
            if idx.size < 2:
                continue  # BatchNorm/LayerNorm statistics need at least two rows
            loss, _ = _loss(model, train.batch(idx), labels_t[idx], pos_weight)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimiser.step()
            total += float(loss.detach()) * idx.size
            count += idx.size
        val_logits = predict_logits(model, val)
        metrics = classification_metrics(val.labels, val_logits)
        row = {"epoch": epoch, "train_loss": total / max(count, 1), "seconds": time.perf_counter() - t0,
               **{f"val_{k}": finite_or_none(v) for k, v in metrics.items() if k not in ("n", "pos_rate")}}
        history.append(row)
        score = _score(metrics, cfg.monitor)
        if score > best_score:
            best_score, best_epoch, bad_epochs = score, epoch, 0
            save_state(best_path, model.state_dict())
        else:
            bad_epochs += 1
        save_state(last_path, {
            "model": model.state_dict(), "optimiser": optimiser.state_dict(), "epoch": epoch,
            "best_score": best_score, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
            "history_json": json.dumps(history), "identity": identity,
        })
        atomic_write_text(os.path.join(run_dir, "history.json"), json.dumps(history, indent=1))
        if progress:
            print(f"epoch {epoch + 1:3d}/{cfg.epochs}  train_loss {row['train_loss']:.4f}  "
                  f"val_loss {metrics['log_loss']:.4f}  val_auc {metrics['roc_auc']:.4f}  "
                  f"val_ap {metrics['average_precision']:.4f}  {row['seconds']:.1f}s"
                  + ("  * best so far" if best_epoch == epoch else ""), file=sys.stderr, flush=True)
        if epoch_callback is not None:
            try:
                epoch_callback(epoch, metrics)
            except TrainingStopped:
                stopped = "callback"
        if bad_epochs > cfg.patience and epoch + 1 >= cfg.min_epochs:
            stopped = "early_stopping"
    if os.path.exists(best_path):
        model.load_state_dict(load_state(best_path))
    model.eval()
    return {"history": history, "best_epoch": best_epoch, "best_score": best_score,
            "epochs_run": len(history), "stopped": stopped or "max_epochs"}
