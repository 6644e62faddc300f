"""Tuned vs default on the test split: the objective of `tune` (TPR at FPR 0.5%) and AP, per run.

`tune` picks its best trial on the validation split; this scores runs on the test split (never seen by
training, early stopping or the study), so "the tuned model beats its default" is measured, not assumed.
The first run of each model kind in the list is that kind's baseline (its default configuration): every
later run of the kind gets its test-AP difference to it with a 95% interval from a paired bootstrap that
resamples the earlier fragments of the candidate pairs (all pairs of a drawn fragment move together, as
the pairs of one fragment are not independent), so a gain can be told from resampling noise.

    python benchmarks/tuning.py runs/lr runs/tune/lr-tpr/trial_11 runs/mlp runs/tune/mlp-tpr/trial_2

Prints one table and writes `benchmarks/results/tuning.md` and `.json`. The data splits are the ones the
first run was trained on (its dataset.json); every run must share them.
"""
from __future__ import annotations

import json
import os
import sys

import click
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from runtime.files import atomic_write_text  # noqa: E402


def _spec(run_dir: str):
    from training.pairs import DatasetSpec

    with open(os.path.join(run_dir, "dataset.json"), encoding="utf-8") as fh:
        d = json.load(fh)
    if d.get("source") != "simulated":
        raise click.ClickException(f"{run_dir}: only runs on the simulated splits are supported here")
    spec = DatasetSpec(presets=tuple(d["presets"]), train_seeds=tuple(d["train_seeds"]),
                       val_seeds=tuple(d["val_seeds"]), cal_seeds=tuple(d["cal_seeds"]),
                       test_seeds=tuple(d["test_seeds"]), time_win=d["time_win"], duration=d["duration"],
                       schema=d.get("schema", "i24-47-v2"), randomized=tuple(d.get("randomized", ())))
    return spec, d.get("data_dir", "data")


BOOTSTRAP_RESAMPLES = 1000


def weighted_average_precision(order: np.ndarray, scores_sorted: np.ndarray, labels_sorted: np.ndarray,
                               weights: np.ndarray) -> float:
    """AP = sum_k (R_k - R_{k-1}) P_k over distinct score thresholds, pairs counted `weights` times.

    `order` sorts the scores descending; `scores_sorted`/`labels_sorted` are already in that order and
    `weights` is per pair in the original order. Tied scores form one threshold, as in scikit-learn.
    """
    w = weights[order]
    tp = np.cumsum(w * labels_sorted)
    fp = np.cumsum(w * (1.0 - labels_sorted))
    last = np.r_[np.flatnonzero(np.diff(scores_sorted)), scores_sorted.size - 1]
    tp, fp = tp[last], fp[last]
    if tp[-1] <= 0:
        return float("nan")
    precision = tp / np.maximum(tp + fp, 1e-300)
    recall_step = np.diff(np.r_[0.0, tp]) / tp[-1]
    return float(np.sum(recall_step * precision))


def paired_ap_difference(labels: np.ndarray, clusters: np.ndarray, base: np.ndarray, other: np.ndarray,
                         resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict:
    """AP(other) - AP(base) on the same pairs, with a 95% percentile interval from a cluster bootstrap.

    Each resample draws the clusters (here: the pairs' earlier fragment) with replacement; a pair counts
    as often as its cluster was drawn. Both score vectors see the same draw (paired).
    """
    y = np.asarray(labels, dtype=np.float64)
    _, cluster = np.unique(clusters, return_inverse=True)
    n_clusters = int(cluster.max()) + 1
    prepared = []
    for s in (np.asarray(base, dtype=np.float64), np.asarray(other, dtype=np.float64)):
        order = np.argsort(-s, kind="stable")
        prepared.append((order, s[order], y[order]))
    ones = np.ones_like(y)
    point = [weighted_average_precision(*p, ones) for p in prepared]
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)
    for i in range(resamples):
        w = np.bincount(rng.integers(0, n_clusters, n_clusters), minlength=n_clusters)[cluster].astype(np.float64)
        diffs[i] = weighted_average_precision(*prepared[1], w) - weighted_average_precision(*prepared[0], w)
    low, high = np.percentile(diffs, [2.5, 97.5])
    return {"delta_ap": point[1] - point[0], "ci95": [float(low), float(high)],
            "share_positive": float((diffs > 0).mean()), "resamples": resamples}


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--out", "out_dir", default=os.path.join(REPO, "benchmarks", "results"), show_default=True)
@click.option("--baseline", "baseline_run", type=click.Path(file_okay=False, exists=True), default=None,
              help="Compare every run with this one (listed first), whatever its kind, instead of with the "
                   "first run of its own kind.")
def main(runs, out_dir, baseline_run):
    """Score RUNS on the test split: TPR at FPR 0.5% (tune's default objective) and AP."""
    from training.metrics import classification_metrics
    from training.train import load_splits, split_logits
    from training.tune import tpr_at_fpr

    if baseline_run:
        runs = (baseline_run,) + tuple(r for r in runs if os.path.abspath(r) != os.path.abspath(baseline_run))
    spec, data_dir = _spec(runs[0])
    for run in runs[1:]:
        other, _ = _spec(run)
        if other.describe() != spec.describe():
            raise click.ClickException(f"{run} was trained on other splits than {runs[0]}")
    splits = load_splits(spec, data_dir, progress=False)
    rows = []
    inputs = {"val": {}, "test": {}}  # model inputs per split, shared by every run (split_logits)
    baseline: dict[str, np.ndarray] = {}  # test logits of each kind's first run (or of --baseline, as "all")
    test = splits["test"]
    # bootstrap clusters: the earlier fragment of each pair, made unique across the scenario instances
    clusters = test.source.astype(np.int64) * (len(test.docs) + 1) + test.a
    for run in runs:
        with open(os.path.join(run, "model_config.json"), encoding="utf-8") as fh:
            kind = json.load(fh)["kind"]
        row = {"run": os.path.relpath(os.path.abspath(run), REPO), "kind": kind}
        for split in ("val", "test"):
            sp = splits[split]
            logits = split_logits(run, sp, inputs[split])
            row[f"{split}_tpr_at_fpr"] = tpr_at_fpr(sp.label, logits)
            row[f"{split}_ap"] = classification_metrics(sp.label, logits)["average_precision"]
        group = "all" if baseline_run else kind
        if group in baseline:
            row["vs_baseline"] = paired_ap_difference(test.label, clusters, baseline[group], logits)
        else:
            baseline[group] = logits
        rows.append(row)
        delta = row.get("vs_baseline")
        click.echo(f"{row['run']:40s} {kind:12s} val TPR@FPR0.5% {row['val_tpr_at_fpr']:.4f}  "
                   f"test TPR@FPR0.5% {row['test_tpr_at_fpr']:.4f}  test AP {row['test_ap']:.4f}"
                   + (f"  dAP {delta['delta_ap']:+.4f} [{delta['ci95'][0]:+.4f}, {delta['ci95'][1]:+.4f}]"
                      if delta else "  (baseline)"))

    def _delta(r: dict) -> str:
        d = r.get("vs_baseline")
        return (f"{d['delta_ap']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]" if d else "baseline")

    lines = ["| run | model | validation TPR at FPR 0.5% | test TPR at FPR 0.5% | validation AP | test AP "
             "| test AP vs baseline, 95% CI |",
             "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| `{r['run']}` | {r['kind']} | {r['val_tpr_at_fpr']:.4f} | {r['test_tpr_at_fpr']:.4f} | "
              f"{r['val_ap']:.4f} | {r['test_ap']:.4f} | {_delta(r)} |" for r in rows]
    os.makedirs(out_dir, exist_ok=True)
    atomic_write_text(os.path.join(out_dir, "tuning.json"), json.dumps(rows, indent=2))
    atomic_write_text(os.path.join(out_dir, "tuning.md"),
                      "# Tuned vs default, test split\n\nGenerated by `python benchmarks/tuning.py "
                      + " ".join(sys.argv[1:]) + "`. "
                      + ("The first run is every run's baseline" if baseline_run
                         else "The first run of each model kind is its baseline") + "; the last column is "
                      f"the paired difference in test AP with a 95% interval ({BOOTSTRAP_RESAMPLES} bootstrap "
                      "resamples of the pairs' earlier fragments).\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
