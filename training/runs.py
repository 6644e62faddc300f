"""Run folders as a table: list them, compare them (metrics, hyperparameters, training curves), pick the best.

    runs list --runs-dir runs --sort ap
    runs compare runs/mlp runs/tune/mlp-ap/trial_3 --plot curves.png
    runs best --model mlp --metric ap        # prints the run folder, e.g. for `promote $(runs best ...)`

A run folder is any folder with `metrics.json` (written by `train_run`), found recursively, so tuning
trials (`runs/tune/<study>/trial_<n>`) are runs like any other. Epoch numbers are shown 1-based, as
in the training progress lines and the curve plots.
"""
from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import click

from runtime.version import __version__

__all__ = ["Run", "CurveReport", "load_run", "find_runs", "analyse_curves", "metric_value", "best_run",
           "compare_table", "plot_curves", "METRICS", "main"]

# name -> (column title, higher is better)
METRICS = {
    "roc_auc": ("ROC-AUC", True),
    "average_precision": ("AP", True),
    "accuracy": ("accuracy", True),
    "log_loss": ("log-loss", False),
    "ece": ("ECE", False),
}
ALIASES = {"auc": "roc_auc", "ap": "average_precision", "acc": "accuracy", "loss": "log_loss"}
SORT_KEYS = ("name", "model", "epochs", "seconds", *METRICS, *ALIASES)


@dataclass
class Run:
    """One run folder: its metrics, per-epoch history and configurations (empty where a file is absent)."""

    name: str
    path: str
    metrics: dict
    history: list = field(default_factory=list)
    model_config: dict = field(default_factory=dict)
    train_config: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.metrics.get("model") or self.model_config.get("kind") or "?"

    @property
    def training(self) -> dict:
        return self.metrics.get("training") or {}

    @property
    def epochs_run(self) -> int | None:
        return self.training.get("epochs_run", len(self.history) or None)

    @property
    def seconds(self) -> float | None:
        return self.metrics.get("seconds")


def _read_json(path: str, default):
    if not os.path.exists(path):
        return default
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from None


def load_run(path: str, name: str | None = None) -> Run:
    """Read a run folder; a run still training (history.json, no metrics.json yet) loads with empty metrics."""
    if not os.path.isdir(path):
        raise ValueError(f"{path}: no such run folder")
    metrics = _read_json(os.path.join(path, "metrics.json"), None)
    history = _read_json(os.path.join(path, "history.json"), [])
    if metrics is None and not history:
        raise ValueError(f"{path}: not a run folder (no metrics.json or history.json)")
    model_config = _read_json(os.path.join(path, "model_config.json"), {})
    train_config = (metrics or {}).get("train_config") or _read_json(os.path.join(path, "train_config.json"), {})
    return Run(name or path, path, metrics or {}, history, model_config, train_config)


def find_runs(runs_dir: str) -> list[Run]:
    """Every finished run (a folder with metrics.json) under `runs_dir`, named by its relative path."""
    if not os.path.isdir(runs_dir):
        raise ValueError(f"{runs_dir}: no such folder")
    runs = []
    for folder, dirs, files in os.walk(runs_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if "metrics.json" in files:
            rel = os.path.relpath(folder, runs_dir)
            try:
                runs.append(load_run(folder, rel if rel != "." else os.path.basename(os.path.abspath(folder))))
            except ValueError as exc:
                print(f"skipping {exc}", file=sys.stderr)
    return runs


def _metric_name(metric: str) -> str:
    name = ALIASES.get(metric, metric)
    if name not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join([*METRICS, *ALIASES])}")
    return name


def metric_value(run: Run, metric: str, split: str = "test") -> float | None:
    """`metric` (a METRICS name or alias) of `run` on `split`; None when absent or undefined."""
    name = _metric_name(metric)
    source = run.metrics.get("splits", {}).get(split, {})
    value = source.get(name)
    if value is None and split == "test":
        value = run.metrics.get(name)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def best_run(runs: Sequence[Run], kind: str, metric: str = "average_precision", split: str = "val") -> Run:
    """The run of model `kind` with the best `metric` on `split` (validation by default: choosing on the
    test split would make its figures optimistic)."""
    name = _metric_name(metric)
    higher = METRICS[name][1]
    scored = [(metric_value(r, name, split), r) for r in runs if r.kind == kind]
    scored = [(v, r) for v, r in scored if v is not None]
    if not scored:
        raise ValueError(f"no finished {kind} run with a {split} {name}")
    return (max if higher else min)(scored, key=lambda vr: vr[0])[1]


# ---------------------------------------------------------------------------------------------- curves
@dataclass
class CurveReport:
    """What the training curves say about one run (epochs 1-based)."""

    epochs_run: int
    max_epochs: int | None
    stopped: str | None
    best_epoch: int | None
    early_stopping_epoch: int | None = None
    overfitting_from: int | None = None
    not_converged: list = field(default_factory=list)

    @property
    def flags(self) -> list[str]:
        out = []
        if self.overfitting_from is not None:
            out.append(f"overfitting: validation loss rising while training loss falls from epoch "
                       f"{self.overfitting_from}")
        out += [f"not converged: {reason}" for reason in self.not_converged]
        return out

    def stop_line(self) -> str:
        best = f", best epoch {self.best_epoch}" if self.best_epoch else ""
        if self.stopped == "early_stopping":
            return f"early stopping at epoch {self.early_stopping_epoch}{best}"
        if self.stopped == "callback":
            return f"stopped by its callback (pruned) at epoch {self.epochs_run}{best}"
        if self.stopped == "max_epochs":
            return f"ran all {self.epochs_run} epochs{best}"
        return f"{self.epochs_run} epochs{best}"


def _series(history: Sequence[Mapping], key: str) -> list[float | None]:
    return [h.get(key) if isinstance(h.get(key), (int, float)) and math.isfinite(h.get(key)) else None
            for h in history]


def analyse_curves(history: Sequence[Mapping], *, k: int = 3, max_epochs: int | None = None,
                   stopped: str | None = None, best_epoch: int | None = None, min_delta: float = 1e-3) -> CurveReport:
    """Flag overfitting and non-convergence in one run's per-epoch history.

    Parameters
    ----------
    history : `history.json` rows (epoch, train_loss, val_log_loss, val_average_precision, val_roc_auc, ...).
    k : overfitting needs k consecutive epochs in which validation loss rises while training loss falls;
        "still improving" looks at the last k epochs.
    max_epochs, stopped, best_epoch : from the run's training config and result (best_epoch 0-based, as
        `train_model` returns it); `stopped` None is read as max_epochs when all max_epochs ran.
    min_delta : an improvement of validation AP/AUC smaller than this does not count.
    """
    n = len(history)
    epochs = [int(h.get("epoch", i)) + 1 for i, h in enumerate(history)]
    if stopped is None and max_epochs is not None and n >= max_epochs:
        stopped = "max_epochs"
    if best_epoch is None and n:
        ap = _series(history, "val_average_precision")
        scored = [(v, i) for i, v in enumerate(ap) if v is not None]
        best_epoch = epochs[max(scored)[1]] - 1 if scored else None
    report = CurveReport(n, max_epochs, stopped, best_epoch + 1 if best_epoch is not None and best_epoch >= 0 else None)
    if stopped == "early_stopping" and n:
        report.early_stopping_epoch = epochs[-1]
    train, val = _series(history, "train_loss"), _series(history, "val_log_loss")
    streak = 0
    for i in range(1, n):
        rising = None not in (val[i], val[i - 1], train[i], train[i - 1]) and val[i] > val[i - 1] \
            and train[i] < train[i - 1]
        streak = streak + 1 if rising else 0
        if streak == k:
            report.overfitting_from = epochs[i - k]
            break
    if n >= 2:
        at_max = stopped == "max_epochs" or (max_epochs is not None and n >= max_epochs)
        if at_max:
            split = n - k if n > k else 1  # short runs: the first epoch against the rest
            for key, label in (("val_average_precision", "validation AP"), ("val_roc_auc", "validation ROC-AUC")):
                series = _series(history, key)
                before = [v for v in series[:split] if v is not None]
                last = [v for v in series[split:] if v is not None]
                if before and last and max(last) > max(before) + min_delta:
                    report.not_converged.append(f"{label} still improving in the last {n - split} epochs at max "
                                                f"epochs ({max(before):.4f} -> {max(last):.4f})")
        losses = [v for v in train if v is not None]
        if len(losses) >= 2 and min(losses[-k:]) >= losses[0] - min_delta * max(abs(losses[0]), 1e-12):
            report.not_converged.append(f"training loss not decreasing ({losses[0]:.4f} -> {losses[-1]:.4f})")
    return report


def curve_report(run: Run, k: int = 3) -> CurveReport | None:
    """`analyse_curves` for a run folder; None for runs without epochs (LR)."""
    if not run.history:
        return None
    return analyse_curves(run.history, k=k, max_epochs=run.train_config.get("epochs"),
                          stopped=run.training.get("stopped"), best_epoch=run.training.get("best_epoch"))


# ---------------------------------------------------------------------------------------------- tables
def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3g}"
        return f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) < 10 else f"{value:.1f}"
    if isinstance(value, (list, tuple)):
        if len(value) > 6:
            return f"[{len(value)} items]"
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for j, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def list_table(runs: Sequence[Run], sort: str = "name") -> str:
    """run, model, test ROC-AUC / AP / accuracy, epochs, seconds; sorted by `sort` (best first for metrics)."""
    if sort not in SORT_KEYS:
        raise ValueError(f"unknown sort key {sort!r}; known: {', '.join(SORT_KEYS)}")
    if sort in ("name", "model"):
        ordered = sorted(runs, key=lambda r: (r.kind, r.name) if sort == "model" else r.name)
    elif sort in ("epochs", "seconds"):
        ordered = sorted(runs, key=lambda r: (getattr(r, "epochs_run" if sort == "epochs" else "seconds") is None,
                                              getattr(r, "epochs_run" if sort == "epochs" else "seconds") or 0))
    else:
        name = _metric_name(sort)
        sign = -1 if METRICS[name][1] else 1
        ordered = sorted(runs, key=lambda r: (metric_value(r, name) is None, sign * (metric_value(r, name) or 0)))
    rows = [(r.name, r.kind, metric_value(r, "roc_auc"), metric_value(r, "average_precision"),
             metric_value(r, "accuracy"), r.epochs_run, r.seconds) for r in ordered]
    return _table(("run", "model", "test AUC", "AP", "accuracy", "epochs", "seconds"), rows)


def _hyperparameters(run: Run) -> dict[str, Any]:
    out = {f"model.{k}": v for k, v in run.model_config.items() if k != "kind"}
    if isinstance(out.get("model.features"), list):
        out["model.features"] = f"{len(out['model.features'])} features"
    out.update({f"train.{k}": v for k, v in run.train_config.items()})
    if run.metrics.get("max_neg_per_pos") is not None:
        out["data.max_neg_per_pos"] = run.metrics["max_neg_per_pos"]
        out["data.hard_negatives"] = run.metrics.get("hard_negatives", "bhattacharyya")  # older runs: the only kind
    warm = run.metrics.get("warm_start") or {}
    start = warm.get("feature_branch_from") or warm.get("fine_tuned_from")  # sequence branch / MLP fine-tune
    if start:
        parts = os.path.normpath(start).split(os.sep)
        out["data.warm_start"] = "/".join(parts[-2:])  # e.g. mlp-tpr/trial_2
    return out


def compare_table(runs: Sequence[Run], k: int = 3) -> str:
    """Metrics, hyperparameters (rows that differ marked '*') and the curve analysis of several runs."""
    metric_rows = [("model", [r.kind for r in runs])]
    for split in ("test", "val"):
        for name in ("roc_auc", "average_precision", "accuracy", "log_loss"):
            metric_rows.append((f"{split} {METRICS[name][0]}", [metric_value(r, name, split) for r in runs]))
    reports = [curve_report(r, k) for r in runs]
    metric_rows += [
        ("epochs run", [r.epochs_run for r in runs]),
        ("best epoch", [rep.best_epoch if rep else None for rep in reports]),
        ("stopped", [r.training.get("stopped") for r in runs]),
        ("seconds", [r.seconds for r in runs]),
    ]
    hyper = [_hyperparameters(r) for r in runs]
    keys = sorted(set().union(*hyper))
    hyper_rows = []
    for key in keys:
        values = [h.get(key) for h in hyper]
        differs = any(json.dumps(v, default=str) != json.dumps(values[0], default=str) for v in values[1:])
        hyper_rows.append((("* " if differs else "  ") + key, values))
    headers = ["", *[r.name for r in runs]]
    text = [_table(headers, [(label, *values) for label, values in metric_rows]), "",
            "hyperparameters ('*' = differs)", _table(headers, [(label, *values) for label, values in hyper_rows]),
            "", f"training curves (k = {k})"]
    for run, rep in zip(runs, reports):
        if rep is None:
            text.append(f"  {run.name}: no per-epoch history (trained in one step)")
            continue
        text.append(f"  {run.name}: {rep.stop_line()}")
        text += [f"    ! {flag}" for flag in rep.flags] or ["    no overfitting or convergence flags"]
    return "\n".join(text)


def plot_curves(runs: Sequence[Run], path: str, k: int = 3) -> None:
    """One PNG overlaying the runs' curves: training loss, validation log-loss, validation AP and ROC-AUC.

    A run's colour is the same in every panel; a star marks its best epoch, a cross where overfitting starts.
    """
    from .plots import _figure, _save

    plt = _figure()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    panels = (("train_loss", "training loss (weighted BCE)"), ("val_log_loss", "validation log-loss"),
              ("val_average_precision", "validation AP"), ("val_roc_auc", "validation ROC-AUC"))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, run in enumerate(runs):
        if not run.history:
            continue
        colour = colours[j % len(colours)]
        epochs = [int(h.get("epoch", i)) + 1 for i, h in enumerate(run.history)]
        rep = curve_report(run, k)
        for ax, (key, title) in zip(axes.flat, panels):
            series = _series(run.history, key)
            ax.plot(epochs, series, "-", color=colour, label=run.name, lw=1.4)
            for epoch, marker in ((rep.best_epoch, "*"), (rep.overfitting_from, "x")):
                if epoch in epochs and series[epochs.index(epoch)] is not None:
                    ax.plot([epoch], [series[epochs.index(epoch)]], marker, color=colour, ms=10)
            ax.set_title(title)
    from matplotlib.ticker import MaxNLocator

    for ax in axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("training curves (* best epoch, x overfitting starts)")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- CLI
@click.group("runs", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", message="%(prog)s, version %(version)s")
def main():
    """List, compare and pick run folders (any folder with metrics.json written by train-* or tune)."""


@main.command("list")
@click.option("--runs-dir", default="runs", show_default=True, help="Folder searched recursively for runs.")
@click.option("--sort", type=click.Choice(SORT_KEYS), default="name", show_default=True,
              help="Order rows by run name, model, epochs, seconds, or a test metric (best first; "
                   "ap = average_precision, auc = roc_auc, acc = accuracy).")
def list_command(runs_dir, sort):
    """A table of every finished run: model, test ROC-AUC, AP, accuracy, epochs, seconds."""
    try:
        runs = find_runs(runs_dir)
        if not runs:
            raise ValueError(f"no run folders (with metrics.json) under {runs_dir}")
        click.echo(list_table(runs, sort))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@main.command("compare")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Write one PNG overlaying the runs' training curves here.")
@click.option("--k", "k", type=click.IntRange(min=1), default=3, show_default=True,
              help="Consecutive epochs of rising validation loss with falling training loss that flag "
                   "overfitting; also the number of final epochs checked for still-improving validation metrics.")
def compare_command(run_dirs, plot_path, k):
    """Metrics, hyperparameters and training-curve diagnostics of RUN_DIRS side by side."""
    try:
        runs = [load_run(path) for path in run_dirs]
        click.echo(compare_table(runs, k))
        if plot_path:
            if not any(r.history for r in runs):
                raise ValueError("none of these runs has a per-epoch history to plot")
            plot_curves(runs, plot_path, k)
            click.echo(f"curves -> {plot_path}")
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@main.command("best")
@click.option("--model", "kind", required=True, help="Model kind (lr, mlp, siamese, tcn, transformer).")
@click.option("--metric", default="average_precision", show_default=True,
              help=f"Metric to rank by: {', '.join(METRICS)} (or ap, auc, acc); log-loss and ECE rank lowest first.")
@click.option("--split", type=click.Choice(["val", "test"]), default="val", show_default=True,
              help="Split the metric is read from; validation, so the test figures stay unbiased.")
@click.option("--runs-dir", default="runs", show_default=True, help="Folder searched recursively for runs.")
def best_command(kind, metric, split, runs_dir):
    """Print the folder of the best run of a model (stdout: the path only, details on stderr)."""
    try:
        run = best_run(find_runs(runs_dir), kind, metric, split)
        name = _metric_name(metric)
        click.echo(f"best {kind} by {split} {name}: {metric_value(run, name, split):.4f} "
                   f"(test AP {_fmt(metric_value(run, 'average_precision'))})", err=True)
        click.echo(run.path)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
