"""The one export path for every model kind: trained run -> logit graph(s) -> calibration folded in ->
validated artifact folder (graphs, manifest.json with checksums, calibration.png) -> installed.

Everything is written into a temporary folder beside `out_dir` and renamed into place only after every
check passed, so a failed export leaves nothing at `out_dir` and the previous artifact untouched.
"""
from __future__ import annotations

import datetime as _dt
import errno
import glob
import json
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import fields
from typing import Any, Callable

import numpy as np

from runtime.files import atomic_write_text, sha256_bytes
from runtime.onnx_cost import ARTIFACT_FORMAT, MANIFEST

from .calibration import (DEFAULT_MAX_FPR, DEFAULT_MIN_PRECISION, MASTER_THRESH, REFERENCE_THRESH, Calibration,
                          fit_calibration, fold_calibration)
from .fold import fold_input_scaling
from .specs import COST, LOGIT, OPSET, export_spec
from .validate import MIN_PARITY_PAIRS, Candidate, run_checks

__all__ = ["ExportError", "export_artifact", "dataset_spec_of_run", "ARTIFACT_VERSION", "install_artifact"]

ARTIFACT_VERSION = 1
PLOT = "calibration.png"


class ExportError(Exception):
    """The export cannot run: a bad run folder, a model kind mismatch, missing data, an unusable --out."""


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise ExportError(f"{path} not found") from None
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path}: not valid JSON ({exc})") from None


def dataset_spec_of_run(run_dir: str, data_dir: str | None = None, schema: str | None = None):
    """The `DatasetSpec` a run was trained on (its dataset.json) and the folder to load it from.

    `data_dir` overrides the run's recorded pair cache folder; for runs on real RAW files it is the
    folder holding RAW_{s}.json. A run trained on a feature file (train-lr on the reference .npz) has
    no dataset.json and no candidate pairs to calibrate on: it needs `data_dir`, either a folder of
    RAW_{s}.json files (split by vehicle) or a simulated-pair cache (the default seeds), mined with the
    run's feature `schema`.

    Returns
    -------
    (spec, folder, description) : the DatasetSpec, where its pairs load from, and what the manifest records.
    """
    from training.pairs import DatasetSpec

    path = os.path.join(run_dir, "dataset.json")
    if not os.path.exists(path):
        if data_dir is None:
            raise ExportError(f"{run_dir} has no dataset.json (trained on a feature file?); pass --data: a folder "
                              "of RAW_{s}.json files or a simulated pair cache to calibrate and validate on")
        kwargs = {"schema": schema} if schema else {}
        raw = sorted(os.path.basename(p)[4:-5] for p in glob.glob(os.path.join(data_dir, "RAW_*.json")))
        if raw:
            kwargs.update(real_data_dir=data_dir, presets=tuple(raw))
        spec = DatasetSpec(**kwargs)
        return spec, data_dir, {**spec.describe(), "data_dir": os.path.abspath(data_dir),
                                "note": "calibration data chosen at export (the run was trained on a feature file)"}
    described = _read_json(path)
    known = {f.name for f in fields(DatasetSpec)}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in described.items() if k in known}
    kwargs.setdefault("randomized", ())  # runs from before domain randomisation: every split nominal
    folder = data_dir or described.get("data_dir") or "data"
    if described.get("source") == "files":
        kwargs["real_data_dir"] = data_dir or kwargs.get("real_data_dir") or folder
    return DatasetSpec(**kwargs), folder, described


def _versions() -> dict:
    """Versions of everything that produced or serves the artifact (from package metadata: no imports)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("numpy", "onnx", "onnxruntime", "torch", "scikit-learn", "skl2onnx", "onnxscript"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _exchange(a: str, b: str) -> bool:
    """Swap two folders in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.EOPNOTSUPP):  # file system or kernel without it
        return False
    raise OSError(err, os.strerror(err), b)


def install_artifact(staged: str, out_dir: str) -> None:
    """Rename the staged folder to `out_dir`; a previous artifact there is replaced only at this point.

    Replacing swaps the two folders atomically where the system can (Linux), so a process killed at
    any instant leaves `out_dir` holding either the previous artifact or the new one, never nothing.
    """
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise ExportError(f"--out {out_dir} exists and is not a folder")
    if not os.path.exists(out_dir):
        os.rename(staged, out_dir)
        return
    if _exchange(staged, out_dir):
        shutil.rmtree(staged, ignore_errors=True)  # now the previous artifact
        return
    # Fallback: two renames (a kill between them leaves the previous artifact in the .old- folder).
    parent = os.path.dirname(os.path.abspath(out_dir))
    old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.old-", dir=parent)
    old_artifact = os.path.join(old, "artifact")
    os.rename(out_dir, old_artifact)
    try:
        os.rename(staged, out_dir)
    except BaseException:
        os.rename(old_artifact, out_dir)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


MODEL_NAMES = {"lr": "logistic regression", "mlp": "MLP", "siamese": "Siamese BiLSTM", "tcn": "TCN",
               "transformer": "Transformer"}


def format_ece(ece: float) -> str:
    """ECE with two significant figures, so a small ECE never prints as 0.000 (e.g. 0.0042, 3.1e-05)."""
    if ece is None or not np.isfinite(ece):
        return "n/a"
    if ece == 0:
        return "0"
    return f"{ece:.2g}" if ece >= 1e-3 else f"{ece:.1e}"


def _plot(path: str, kind: str, calibration: Calibration, splits: dict) -> None:
    """Cost histograms of positives and negatives against thresholds 3 and 4 (log y), and a reliability
    diagram of the calibrated probability, for the calibration and test splits; the title names the model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.metrics import expected_calibration_error

    fig, axes = plt.subplots(1, len(splits) + 1, figsize=(5.2 * (len(splits) + 1), 4.2))
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.13, top=0.86, wspace=0.25)  # tight_layout costs seconds
    top = max(12.0, MASTER_THRESH * 3)
    bins = np.linspace(0.0, top, 97)
    for ax, (name, (costs, labels, prob)) in zip(axes, splits.items()):
        shown = np.clip(costs, 0.0, top)
        # one polygon per class ("stepfilled"), not one patch per bar: ten times faster to draw
        ax.hist(shown[labels == 0], bins=bins, color="tab:red", alpha=0.55, histtype="stepfilled",
                label=f"negatives ({(labels == 0).sum()})")
        ax.hist(shown[labels == 1], bins=bins, color="tab:green", alpha=0.7, histtype="stepfilled",
                label=f"positives ({(labels == 1).sum()})")
        for t, style in ((calibration.T, "-"), (MASTER_THRESH, "--")):
            ax.axvline(t, color="k", linestyle=style, linewidth=1, label=f"threshold {t:g}")
        ax.set_yscale("log")
        ax.set_xlabel(f"cost (clipped to {top:g})")
        ax.set_ylabel("pairs")
        ax.set_title(f"{name} split")
        ax.legend(fontsize=8, loc="upper right")  # "best" searches every bar: seconds per plot
    ax = axes[-1]
    edges = np.linspace(0, 1, 11)
    for (name, (_, labels, prob)), marker in zip(splits.items(), ("o", "s")):
        which = np.clip(np.digitize(prob, edges[1:-1]), 0, 9)
        xs, ys = [], []
        for b in range(10):
            sel = which == b
            if sel.sum() >= 5:
                xs.append(prob[sel].mean())
                ys.append(labels[sel].mean())
        ece = expected_calibration_error(labels, prob)
        ax.plot(xs, ys, marker=marker, label=f"{name} (ECE {format_ece(ece)})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    ax.set_xlabel("calibrated P(same vehicle) = sigmoid(a z + b)")
    ax.set_ylabel("observed frequency")
    ax.set_title("reliability")
    ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"{MODEL_NAMES.get(kind, kind)} ({kind}): calibration folded into the cost.  "
                 f"a={calibration.a:.3g} b={calibration.b:.3g} z*={calibration.z_star:.3g} s={calibration.s:.3g} "
                 f"T={calibration.T:g} ({calibration.strategy} {calibration.target:g})", fontsize=10)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def export_artifact(kind: str, run_dir: str, out_dir: str, *, strategy: str = "fpr_ceiling",
                    max_fpr: float = DEFAULT_MAX_FPR, min_precision: float = DEFAULT_MIN_PRECISION,
                    data_dir: str | None = None, min_parity_pairs: int = MIN_PARITY_PAIRS,
                    say: Callable[[str], None] | None = None, progress: bool = False) -> dict:
    """Export the trained run `run_dir` of model `kind` to the artifact folder `out_dir`.

    Parameters
    ----------
    kind : "lr", "mlp", "siamese", "tcn" or "transformer"; must match the run.
    run_dir : a finished training run (model_config.json, dataset.json, weights).
    out_dir : the artifact folder to create or replace.
    strategy, max_fpr, min_precision : how the operating point z* is chosen on the calibration split.
    data_dir : where the run's pairs are loaded from (default: the folder recorded in dataset.json).
    min_parity_pairs : the fewest test-split pairs the parity check accepts.
    say : progress lines.
    progress : a progress bar with ETA (stderr) over the export's steps and checks.

    Returns
    -------
    The manifest written to `out_dir/manifest.json`.

    Raises
    ------
    ExportError, export.validate.ValidationError (a subclass per check), CalibrationFitError
        Nothing is installed; a previous artifact at `out_dir` is left as it was.
    """
    say = say or (lambda line: None)
    from tqdm import tqdm

    from .validate import CHECKS

    # steps: loading the pairs, logit graphs, calibration, checks, manifest; then one per check
    bar = tqdm(total=len(CHECKS) + 4, desc=f"export {kind}", unit="step", disable=not progress, file=sys.stderr,
               dynamic_ncols=True, leave=False)
    try:
        return _export(kind, run_dir, out_dir, strategy, max_fpr, min_precision, data_dir, min_parity_pairs, say, bar)
    finally:
        bar.close()


def _export(kind, run_dir, out_dir, strategy, max_fpr, min_precision, data_dir, min_parity_pairs, say, bar) -> dict:
    def step(name: str) -> None:
        bar.set_postfix_str(name)
        bar.update(1)

    spec = export_spec(kind)
    model, metrics = _trained_model(kind, run_dir)
    data_spec, folder, described = dataset_spec_of_run(run_dir, data_dir, getattr(model, "schema", None))
    if getattr(model, "schema", data_spec.schema) != data_spec.schema:
        raise ExportError(f"{run_dir}: the model was trained on schema {model.schema!r}, its data is {data_spec.schema!r}")

    say(f"loading the calibration and test splits from {folder} ...")
    bar.set_postfix_str("loading pairs")
    splits = _calibration_and_test(data_spec, folder)
    step("logit graphs")
    cal_pairs = splits["cal"].select(splits["cal"].trainable)
    test_pairs = splits["test"]
    del splits
    say(f"  calibration: {len(cal_pairs)} pairs ({int(cal_pairs.label.sum())} positive); "
        f"test: {len(test_pairs)} candidate pairs")

    say("exporting the logit graph(s) ...")
    graphs = spec.logit_graphs(model)
    step("calibration")
    say("fitting the calibration on the calibration split ...")
    cal_logits = spec.framework_logits(model, cal_pairs)
    calibration = fit_calibration(cal_logits, cal_pairs.label, cal_pairs.bhat, strategy, max_fpr, min_precision)
    say(f"  a={calibration.a:.4g} b={calibration.b:.4g} z*={calibration.z_star:.4g} s={calibration.s:.4g} "
        f"(TPR {calibration.operating['tpr']:.3f} at FPR {calibration.operating['fpr']:.4f})")
    folded_inputs = fold_input_scaling(graphs[spec.cost_role])
    graphs[spec.cost_role] = fold_calibration(graphs[spec.cost_role], LOGIT, calibration, COST)
    say(f"  cost graph: {len(graphs[spec.cost_role].graph.node)} nodes ({folded_inputs} feature "
        f"standardisation(s) folded into the first layers)")
    signatures = spec.signatures(model)
    blobs = {role: graphs[role].SerializeToString() for role in signatures}

    out_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    staged = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.export-", dir=parent)
    try:
        for role, sig in signatures.items():
            with open(os.path.join(staged, sig.file), "wb") as fh:
                fh.write(blobs[role])
        candidate = Candidate(spec, model, blobs, signatures, calibration, cal_pairs, test_pairs,
                              artifact_dir=staged, min_parity_pairs=min_parity_pairs, time_win=data_spec.time_win)
        candidate.memo["logits_cal"] = cal_logits
        say("validating ...")
        step("checks")
        results = run_checks(candidate, say, skip=("runtime_parity",), bar=bar)
        trainable = test_pairs.label >= 0
        bar.set_postfix_str("calibration.png")
        _plot(os.path.join(staged, PLOT), kind, calibration, {
            "calibration": (candidate.graph_costs("cal"), cal_pairs.label, calibration.probability(cal_logits)),
            "test": (candidate.graph_costs("test")[trainable], test_pairs.label[trainable],
                     calibration.probability(candidate.framework_logits("test")[trainable])),
        })
        manifest = _manifest(kind, spec, model, metrics, run_dir, data_spec, described, signatures, calibration,
                             results)
        _write_manifest(staged, manifest)
        step("manifest")
        # the last check loads the staged folder exactly as pp_lite will, manifest and checksums included
        results.update(run_checks(candidate, say, only=("runtime_parity",), bar=bar))
        manifest["parity"]["runtime_max_abs_diff"] = results["runtime_parity"]["max_abs_diff"]
        _write_manifest(staged, manifest)
        install_artifact(staged, out_dir)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    say(f"wrote {out_dir}")
    return manifest


def _calibration_and_test(data_spec, folder: str) -> dict:
    """The calibration and test splits only: the training and validation instances (their fragment documents
    are most of the memory) are never loaded. Real RAW files are split by vehicle, which needs them all."""
    from training.pairs import concat_pairs, load_dataset, scenario_instance

    if data_spec.real_data_dir:
        splits = load_dataset(data_spec, folder, progress=False)
        return {"cal": splits["cal"], "test": splits["test"]}
    randomized = getattr(data_spec, "randomized", ())
    return {split: concat_pairs([scenario_instance(folder, p, seed, data_spec, False, randomize=split in randomized)
                                 for p, seed in data_spec.instances(split)])
            for split in ("cal", "test")}


def _trained_model(kind: str, run_dir: str):
    """(model, metrics) of a finished run of `kind`."""
    from training.train import load_trained

    if not os.path.isdir(run_dir):
        raise ExportError(f"run folder {run_dir} does not exist")
    if not os.path.exists(os.path.join(run_dir, "metrics.json")):
        raise ExportError(f"{run_dir} is not a finished run (no metrics.json)")
    try:
        run_kind, model, metrics = load_trained(run_dir)
    except FileNotFoundError as exc:
        raise ExportError(f"{run_dir}: {exc}") from None
    if run_kind != kind:
        raise ExportError(f"{run_dir} holds a {run_kind!r} model, not {kind!r}")
    return model, metrics


def _manifest(kind, spec, model, metrics, run_dir, data_spec, described, signatures, calibration, results) -> dict:
    """Everything the runtime needs to serve the artifact and a reader needs to trust it (files added on write)."""
    from runtime.features import INPUT_FIELDS, schema_hash

    # the fragment-document fields the cost reads: what a tracker must provide, and nothing it may vary
    inputs = {**spec.runtime_inputs(model), "document_fields": list(INPUT_FIELDS[data_spec.schema])}
    test_metrics = metrics.get("splits", {}).get("test", {})
    return {
        "format": ARTIFACT_FORMAT,
        "artifact_version": ARTIFACT_VERSION,
        "model": kind,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "feature_schema": data_spec.schema,
        "schema_hash": schema_hash(data_spec.schema, inputs["feature_names"]),
        "inputs": inputs,
        "graphs": {role: sig.to_json() for role, sig in signatures.items()},
        "external_data": [],
        "opset": OPSET,
        "calibration": calibration.to_json(),
        "thresholds": {"stitch_thresh": REFERENCE_THRESH, "master_stitch_thresh": MASTER_THRESH},
        "versions": _versions(),
        "training": {"run": os.path.abspath(run_dir), "seed": metrics.get("seed"), "dataset": described,
                     "model_config": metrics.get("model_config"), "train_config": metrics.get("train_config")},
        "metrics": {
            "test": {k: test_metrics.get(k, metrics.get(k))
                     for k in ("n", "pos_rate", "accuracy", "roc_auc", "average_precision", "log_loss", "ece")},
            "cost": results["calibration_rates"],
        },
        "parity": results["parity"],
        "validation": results,  # the same dict: checks run after writing land in it too
    }


def _write_manifest(folder: str, manifest: dict) -> None:
    """manifest.json with the sha256 and size of every other file in `folder`."""
    manifest["files"] = {}
    for name in sorted(os.listdir(folder)):
        if name == MANIFEST:
            continue
        with open(os.path.join(folder, name), "rb") as fh:
            data = fh.read()
        manifest["files"][name] = {"sha256": sha256_bytes(data), "bytes": len(data)}
    atomic_write_text(os.path.join(folder, MANIFEST), json.dumps(_jsonable(manifest), indent=2, allow_nan=False))


def _jsonable(obj: Any):
    """Plain JSON values: numpy scalars and arrays converted, non-finite floats as null (JSON has no NaN)."""
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset, np.ndarray)):
        return [_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    return str(obj)
