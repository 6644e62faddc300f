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


PRESET_NAMES = {"i": "free flow (i)", "ii": "snow (ii)", "iii": "stop-and-go (iii)"}


def preset_label(name: str) -> str:
    """'test ii' or 'ii' -> 'snow (ii)'; any other name is returned as it is."""
    key = name.split()[-1] if name.split() else name
    return PRESET_NAMES.get(key, name)


def best_epoch_of(history: Sequence[Mapping], monitor: str = "val_average_precision") -> int | None:
    """Index of the row with the best `monitor` (the loop's default: validation AP), None if absent."""
    values = [h.get(monitor) for h in history]
    finite = [(v, k) for k, v in enumerate(values) if v is not None and np.isfinite(v)]
    return max(finite)[1] if finite else None


def plot_history(history: Sequence[Mapping], path: str, title: str = "", best_epoch: int | None = None) -> dict:
    """Loss curves (train and validation) and validation ROC-AUC / AP per epoch, integer epoch ticks, and the
    best epoch (0-based `best_epoch`, the one whose weights were kept; default: the best validation AP) marked.

    Returns what was drawn: {"xticks": the epoch ticks shown, "best_epoch": 1-based or None}.
    """
    from matplotlib.ticker import MaxNLocator

    plt = _figure()
    epochs = [h["epoch"] + 1 for h in history]
    best = best_epoch if best_epoch is not None else best_epoch_of(history)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", ms=3, label="train loss (weighted BCE)")
    ax1.plot(epochs, [h.get("val_log_loss") for h in history], "o-", ms=3, label="validation log-loss")
    ax1.set_xlabel("epoch"), ax1.set_ylabel("loss")
    ax2.plot(epochs, [h.get("val_roc_auc") for h in history], "o-", ms=3, label="validation ROC-AUC")
    ax2.plot(epochs, [h.get("val_average_precision") for h in history], "o-", ms=3, label="validation AP")
    ax2.set_xlabel("epoch")
    for ax in (ax1, ax2):
        if len(epochs) <= 12:  # every epoch a tick (a locator alone gives 0.5-steps on one or two epochs)
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if best is not None and 0 <= best < len(history):
            ax.axvline(best + 1, color="k", linestyle=":", linewidth=1, label=f"best epoch ({best + 1}, kept)")
        ax.legend(fontsize=8, loc="best"), ax.grid(alpha=0.3)
    if best is not None and 0 <= best < len(history) and history[best].get("val_average_precision") is not None:
        ax2.plot([best + 1], [history[best]["val_average_precision"]], "k*", ms=11, zorder=5)
    if len(epochs) == 1:
        for ax in (ax1, ax2):
            ax.set_xlim(0.5, 1.5)
            ax.set_xticks(epochs)
    fig.suptitle(title)
    fig.tight_layout()
    lo, hi = ax1.get_xlim()
    drawn = {"xticks": [float(t) for t in ax1.get_xticks() if lo <= t <= hi],
             "best_epoch": best + 1 if best is not None and 0 <= best < len(history) else None}
    _save(fig, path)
    plt.close(fig)
    return drawn


def _reliability(y: np.ndarray, p: np.ndarray, bins: int = 10, min_count: int = 5) -> tuple[list, list]:
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    xs, ys = [], []
    for b in range(bins):
        sel = which == b
        if sel.sum() >= min_count:
            xs.append(p[sel].mean())
            ys.append(y[sel].mean())
    return xs, ys


def plot_evaluation(curves: Mapping[str, tuple], path: str, title: str = "",
                    calibration: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """ROC, precision-recall and a reliability diagram for several sets of pairs (e.g. one per preset).

    curves : name -> (labels, logits) or (labels, logits, bhattacharyya_costs). Names like "test ii" are
        shown as "snow (ii)". With the Bhattacharyya costs of the same pairs, its ROC and PR curves
        (score = -cost) are drawn dashed in the same colour, the baseline to beat.
    calibration : (labels, logits) of the calibration split. The reliability panel then shows the
        Platt-calibrated probability sigmoid(a z + b), fitted there exactly as the export fits it (what
        ships), as solid lines, and the raw model output as faint dotted lines.

    Returns what was drawn: {"platt": (a, b) or None, "legends": [labels of each panel], "titles": [...]}.
    """
    from sklearn.metrics import precision_recall_curve, roc_curve

    from .metrics import CalibrationFitError, fit_platt

    platt = None
    if calibration is not None:
        try:
            platt = fit_platt(np.asarray(calibration[1]), np.asarray(calibration[0]))
        except CalibrationFitError:
            platt = None
    plt = _figure()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (name, curve) in enumerate(curves.items()):
        y, z = np.asarray(curve[0]), np.asarray(curve[1], dtype=np.float64)
        bhat = np.asarray(curve[2], dtype=np.float64) if len(curve) > 2 and curve[2] is not None else None
        if not 0 < y.sum() < y.size:
            continue
        colour, label = colours[k % len(colours)], preset_label(name)
        fpr, tpr, _ = roc_curve(y, z)
        axes[0].plot(fpr, tpr, color=colour, label=f"model, {label}")
        prec, rec, _ = precision_recall_curve(y, z)
        axes[1].plot(rec, prec, color=colour, label=f"model, {label}")
        if bhat is not None:
            fpr, tpr, _ = roc_curve(y, -bhat)
            axes[0].plot(fpr, tpr, color=colour, linestyle="--", linewidth=1, label=f"Bhattacharyya, {label}")
            prec, rec, _ = precision_recall_curve(y, -bhat)
            axes[1].plot(rec, prec, color=colour, linestyle="--", linewidth=1, label=f"Bhattacharyya, {label}")
        raw = sigmoid(z)
        if platt is not None:
            xs, ys = _reliability(y, sigmoid(platt[0] * z + platt[1]))
            axes[2].plot(xs, ys, "o-", color=colour, label=f"calibrated (ships), {label}")
            xs, ys = _reliability(y, raw)
            axes[2].plot(xs, ys, ".:", color=colour, alpha=0.5, label=f"uncalibrated, {label}")
        else:
            xs, ys = _reliability(y, raw)
            axes[2].plot(xs, ys, "o-", color=colour, label=f"uncalibrated, {label}")
    axes[0].set_xscale("log"), axes[0].set_xlim(1e-4, 1)
    axes[0].set_xlabel("false positive rate (log)"), axes[0].set_ylabel("true positive rate"), axes[0].set_title("ROC")
    axes[1].set_xlabel("recall"), axes[1].set_ylabel("precision"), axes[1].set_title("precision-recall")
    axes[2].plot([0, 1], [0, 1], "k--", lw=0.8)
    axes[2].set_xlabel("predicted probability"), axes[2].set_ylabel("observed frequency")
    axes[2].set_title("reliability: Platt-calibrated (a z + b, as exported) and raw" if platt is not None
                      else "reliability (raw model output; no calibration split given)", fontsize=10)
    # fixed legend places: "best" searches every plotted point (seconds on 10^5-pair curves)
    for ax, where in zip(axes, ("lower right", "lower left", "upper left")):
        ax.grid(alpha=0.3), ax.legend(fontsize=7, loc=where)
    fig.suptitle(title)
    fig.tight_layout()  # the suptitle gets its own row: no collision with the panel titles
    drawn = {"platt": platt, "legends": [[t.get_text() for t in ax.get_legend().get_texts()] for ax in axes],
             "titles": [ax.get_title() for ax in axes]}
    _save(fig, path)
    plt.close(fig)
    return drawn
