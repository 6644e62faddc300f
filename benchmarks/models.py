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


def shipped_runs(runs_dir: str, artifacts_dir: str | None) -> dict[str, str]:
    """The run folder behind each model kind: the one its artifact was exported from (manifest
    `training.run`) when that folder is here, else `<runs_dir>/<kind>`."""
    out = {}
    for kind in KINDS:
        run = os.path.join(runs_dir, kind)
        manifest = os.path.join(artifacts_dir, kind, "manifest.json") if artifacts_dir else None
        if manifest and os.path.exists(manifest):
            with open(manifest, encoding="utf-8") as fh:
                exported = json.load(fh).get("training", {}).get("run")
            if exported and os.path.exists(os.path.join(exported, "metrics.json")):
                run = exported
        out[kind] = run
    return out


def classification_table(runs: dict[str, str]) -> str:
    """One row per model and preset: test ROC-AUC, AP, accuracy and the Bhattacharyya AP on the same pairs.

    `runs` lists (model kind, run folder) pairs (`shipped_runs`, then any extra runs); the run column
    names the folder relative to the repository, and a warm-started sequence model the MLP run it started from.
    """
    rows = ["| model | run | preset | test pairs | positives % | ROC-AUC | AP | Bhattacharyya AP | epochs | train s |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, run in runs:
        path = os.path.join(run, "metrics.json")
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as fh:
            m = json.load(fh)
        test = m["splits"]["test"]
        epochs = m.get("training", {}).get("epochs_run", "-")
        label = _relative(run)
        warm = (m.get("warm_start") or {}).get("feature_branch_from")
        if warm:
            label += f" (from {_relative(warm)})"
        for preset, pm in [("all", test)] + sorted(test["by_preset"].items()):
            first = preset == "all"
            rows.append(f"| {NAMES[kind] if first else ''} | {label if first else ''} | {preset} | {pm['n']} | "
                        f"{100 * pm['pos_rate']:.2f} | {_fmt(pm['roc_auc'])} | "
                        f"{_fmt(pm['average_precision'])} | {_fmt(pm['bhattacharyya']['average_precision'])} | "
                        f"{epochs if first else ''} | {round(m.get('seconds', 0)) if first else ''} |")
    return "\n".join(rows)


def _relative(path: str) -> str:
    path = os.path.abspath(path)
    return os.path.relpath(path, REPO) if path.startswith(REPO + os.sep) else path


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
              help="folder with one training run per model kind (runs/<kind>/metrics.json), used where an "
                   "artifact's manifest does not name a run folder present here")
@click.option("--artifacts", "artifacts_dir", default=os.path.join(REPO, "artifacts"), show_default=True,
              help="folder with one exported artifact per model kind")
@click.option("--also", "extra_runs", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="another run folder to add to the classification table (repeatable), e.g. a tuning trial")
@click.option("--out", "out_path", default=os.path.join(REPO, "benchmarks", "results", "models.md"), show_default=True,
              help="markdown file to write")
def main(runs_dir, artifacts_dir, extra_runs, out_path):
    """Print the model-quality tables and write them to a markdown file."""
    runs = list(shipped_runs(runs_dir, artifacts_dir).items())
    for run in extra_runs:
        with open(os.path.join(run, "metrics.json"), encoding="utf-8") as fh:
            runs.append((json.load(fh)["model"], run))
    text = ("## Pair classification (test split)\n\n" + classification_table(runs) +
            "\n\n## Calibration at the stitcher thresholds\n\n" + calibration_table(artifacts_dir) + "\n")
    click.echo(text)
    atomic_write_text(out_path, text)


if __name__ == "__main__":
    main()
