"""PNG figures people would rather look at than read: training curves, ROC, PR, reliability diagrams."""
from __future__ import annotations

import io
import os
from typing import Mapping, Sequence

import numpy as np

from runtime.files import atomic_write_bytes

from .metrics import sigmoid

__all__ = ["plot_history", "plot_evaluation"]


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def plot_history(history: Sequence[Mapping], path: str, title: str = "") -> None:
    """Loss curves (train and validation) and validation ROC-AUC / AP per epoch."""
    plt = _figure()
    epochs = [h["epoch"] + 1 for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(epochs, [h["train_loss"] for h in history], label="train loss (weighted BCE)")
    ax1.plot(epochs, [h.get("val_log_loss") for h in history], label="validation log-loss")
    ax1.set_xlabel("epoch"), ax1.set_ylabel("loss"), ax1.legend(), ax1.grid(alpha=0.3)
    ax2.plot(epochs, [h.get("val_roc_auc") for h in history], label="validation ROC-AUC")
    ax2.plot(epochs, [h.get("val_average_precision") for h in history], label="validation AP")
    ax2.set_xlabel("epoch"), ax2.legend(), ax2.grid(alpha=0.3)
    fig.suptitle(title)
    _save(fig, path)
    plt.close(fig)


def plot_evaluation(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str, title: str = "") -> None:
    """ROC, precision-recall and reliability diagram for several (labels, logits) sets."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    plt = _figure()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, (y, z) in curves.items():
        y = np.asarray(y)
        if not 0 < y.sum() < y.size:
            continue
        fpr, tpr, _ = roc_curve(y, z)
        axes[0].plot(fpr, tpr, label=name)
        prec, rec, _ = precision_recall_curve(y, z)
        axes[1].plot(rec, prec, label=name)
        p = sigmoid(z)
        edges = np.linspace(0, 1, 11)
        which = np.clip(np.digitize(p, edges[1:-1]), 0, 9)
        xs, ys = [], []
        for b in range(10):
            sel = which == b
            if sel.sum() >= 5:
                xs.append(p[sel].mean())
                ys.append(y[sel].mean())
        axes[2].plot(xs, ys, "o-", label=name)
    axes[0].set_xscale("log"), axes[0].set_xlim(1e-4, 1)
    axes[0].set_xlabel("false positive rate (log)"), axes[0].set_ylabel("true positive rate"), axes[0].set_title("ROC")
    axes[1].set_xlabel("recall"), axes[1].set_ylabel("precision"), axes[1].set_title("precision-recall")
    axes[2].plot([0, 1], [0, 1], "k--", lw=0.8)
    axes[2].set_xlabel("predicted probability"), axes[2].set_ylabel("observed frequency")
    axes[2].set_title("reliability (uncalibrated model output)")
    for ax in axes:
        ax.grid(alpha=0.3), ax.legend(fontsize=7)
    fig.suptitle(title)
    _save(fig, path)
    plt.close(fig)
