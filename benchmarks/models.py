"""Model-quality tables: pair classification per preset (from run folders) and calibration (from manifests).

    python benchmarks/models.py [--runs runs] [--artifacts artifacts]

Prints two markdown tables (the README's "Pair classification" and "Calibration") and writes them to
benchmarks/results/models.md.
"""
from __future__ import annotations

import json
import os
import sys

import click

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from runtime.files import atomic_write_text  # noqa: E402

KINDS = ("lr", "mlp", "siamese", "tcn", "transformer")
NAMES = {"lr": "LR", "mlp": "MLP", "siamese": "Siamese BiLSTM", "tcn": "TCN", "transformer": "Transformer"}


def _fmt(value, digits=4):
    return "n/a" if value is None else f"{value:.{digits}f}"


def classification_table(runs_dir: str) -> str:
    """One row per model and preset: test ROC-AUC, AP, accuracy and the Bhattacharyya AP on the same pairs."""
    rows = ["| model | preset | test pairs | positives % | ROC-AUC | AP | Bhattacharyya AP | epochs | train s |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for kind in KINDS:
        path = os.path.join(runs_dir, kind, "metrics.json")
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as fh:
            m = json.load(fh)
        test = m["splits"]["test"]
        epochs = m.get("training", {}).get("epochs_run", "-")
        for preset, pm in [("all", test)] + sorted(test["by_preset"].items()):
            rows.append(f"| {NAMES[kind]} | {preset} | {pm['n']} | {100 * pm['pos_rate']:.2f} | {_fmt(pm['roc_auc'])} | "
                        f"{_fmt(pm['average_precision'])} | {_fmt(pm['bhattacharyya']['average_precision'])} | "
                        f"{epochs if preset == 'all' else ''} | {round(m.get('seconds', 0)) if preset == 'all' else ''} |")
    return "\n".join(rows)


def calibration_table(artifacts_dir: str) -> str:
    """One row per artifact and split: TPR, FPR, precision and expected false edges at cost 3 and 4."""
    rows = ["| model | a | b | z* | s | split | TPR@3 | FPR@3 | false edges@3 | TPR@4 | FPR@4 | ECE | parity max abs |",
            "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for kind in KINDS:
        path = os.path.join(artifacts_dir, kind, "manifest.json")
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as fh:
            m = json.load(fh)
        cal = m["calibration"]
        parity = m.get("parity", {})
        parity_err = parity.get("max_abs_cost_diff", parity.get("max_abs_diff"))
        for split in ("calibration", "test"):
            c = m["metrics"]["cost"][split]
            at3, at4 = c["at"]["3"], c["at"]["4"]
            head = (f"| {NAMES[kind]} | {cal['a']:.3f} | {cal['b']:.3f} | {cal['z_star']:.3f} | {cal['s']:.3f} "
                    if split == "calibration" else "| | | | | ")
            rows.append(head + f"| {split} | {at3['tpr']:.4f} | {at3['fpr']:.4f} | {at3['expected_false_edges']} | "
                        f"{at4['tpr']:.4f} | {at4['fpr']:.4f} | {c['ece']:.4f} | "
                        f"{'' if split == 'test' or parity_err is None else f'{parity_err:.1e}'} |")
    return "\n".join(rows)


@click.command()
@click.option("--runs", "runs_dir", default=os.path.join(REPO, "runs"), show_default=True,
              help="folder with one training run per model kind (runs/<kind>/metrics.json)")
@click.option("--artifacts", "artifacts_dir", default=os.path.join(REPO, "artifacts"), show_default=True,
              help="folder with one exported artifact per model kind")
@click.option("--out", "out_path", default=os.path.join(REPO, "benchmarks", "results", "models.md"), show_default=True,
              help="markdown file to write")
def main(runs_dir, artifacts_dir, out_path):
    """Print the model-quality tables and write them to a markdown file."""
    text = ("## Pair classification (test split)\n\n" + classification_table(runs_dir) +
            "\n\n## Calibration at the stitcher thresholds\n\n" + calibration_table(artifacts_dir) + "\n")
    click.echo(text)
    atomic_write_text(out_path, text)


if __name__ == "__main__":
    main()
