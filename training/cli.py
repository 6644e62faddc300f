"""Command-line entry points: train-lr, train-mlp, train-siamese, train-tcn, train-transformer.

Every option is checked before any data is loaded or anything is written (model-config keys and value
types, feature names, presets), and a run folder that a failed or interrupted command created is
removed again, unless training already wrote its resume state (then the same command resumes it).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys

import click
import numpy as np

from runtime.version import __version__

from .pairs import DEFAULT_TIME_WIN, HARD_NEGATIVES, DatasetSpec

__all__ = ["train_lr", "train_mlp", "train_siamese", "train_tcn", "train_transformer", "validate_model_config",
           "validate_features"]

CONTEXT = {"help_option_names": ["-h", "--help"]}


def _version(f):
    return click.version_option(__version__, "--version", message="%(prog)s, version %(version)s")(f)


def _ints(value: str) -> tuple:
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None


def _names(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def data_options(f):
    """Options shared by every train-* command: where pairs come from and how they are split."""
    opts = [
        click.option("--data", "real_data", type=click.Path(file_okay=False, exists=True), default=None,
                     help="Folder with I-24 RAW_{s}.json (with gt_ids) to train on, split by vehicle. "
                          "Default: simulated scenarios split by seed."),
        click.option("--cache", "cache_dir", default="data", show_default=True,
                     help="Folder where simulated scenarios and mined pairs are cached."),
        click.option("--presets", default="i,ii,iii", show_default=True, help="Scenario presets to use."),
        click.option("--train-seeds", default="11,12", show_default=True, help="Simulator seeds of the training split."),
        click.option("--val-seeds", default="13", show_default=True, help="Seeds of the validation split (early stopping)."),
        click.option("--cal-seeds", default="14", show_default=True, help="Seeds of the calibration split (used by export)."),
        click.option("--test-seeds", default="15", show_default=True, help="Seeds of the test split (metrics.json top level)."),
        click.option("--duration", type=float, default=None, help="Override the presets' scenario durations (s)."),
        click.option("--time-win", type=float, default=DEFAULT_TIME_WIN, show_default=True,
                     help="The stitcher's TIME_WIN: candidate pairs have 0 <= gap <= TIME_WIN."),
        click.option("--seed", type=int, default=0, show_default=True, help="Training seed."),
        click.option("--quiet", is_flag=True, help="No progress output."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _spec(kw) -> DatasetSpec:
    from .simulate import PRESETS

    presets = tuple(p.strip() for p in kw["presets"].split(",") if p.strip())
    # simulated data knows three presets; with --data they name the RAW_{s}.json files, any name
    unknown = [p for p in presets if p not in PRESETS] if not kw["real_data"] else []
    if unknown or not presets:
        raise click.BadParameter(f"unknown preset(s) {', '.join(map(repr, unknown)) or '(none given)'}; valid "
                                 f"presets: {', '.join(PRESETS)}", param_hint="--presets")
    try:
        return _make_spec(kw)
    except (TypeError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None


def _make_spec(kw) -> DatasetSpec:
    return DatasetSpec(presets=tuple(p.strip() for p in kw["presets"].split(",") if p.strip()),
                       train_seeds=_ints(kw["train_seeds"]), val_seeds=_ints(kw["val_seeds"]),
                       cal_seeds=_ints(kw["cal_seeds"]), test_seeds=_ints(kw["test_seeds"]),
                       time_win=kw["time_win"], duration=kw["duration"], real_data_dir=kw["real_data"])


def _report(kind: str, metrics: dict, out: str) -> None:
    rows = [("all", metrics["splits"]["test"])] + list(metrics["splits"]["test"]["by_preset"].items())
    click.echo(f"{kind} test split ({out}/metrics.json):")
    click.echo(f"  {'preset':8s} {'pairs':>7s} {'pos%':>6s} {'ROC-AUC':>8s} {'AP':>7s} {'acc':>7s} {'Bhat AP':>8s}")
    for name, m in rows:
        fmt = lambda v, w=7: f"{v:{w}.4f}" if isinstance(v, (int, float)) and v is not None else f"{'n/a':>{w}s}"
        click.echo(f"  {name:8s} {m['n']:7d} {100 * m['pos_rate']:6.2f} {fmt(m['roc_auc'], 8)} "
                   f"{fmt(m['average_precision'])} {fmt(m['accuracy'])} {fmt(m['bhattacharyya']['average_precision'], 8)}")


def validate_model_config(kind: str, overrides: dict) -> dict:
    """Check `--model-config` against model `kind`'s Config before anything is loaded.

    Unknown keys raise with the list of valid ones; a value whose type does not fit the default's
    (a number for a number, a list of integers for a tuple of widths) raises naming the key.
    Returns the overrides with lists turned into tuples, as the Config takes them.
    """
    from .models import model_module

    if not isinstance(overrides, dict):
        raise ValueError(f"--model-config must be a JSON object, got {type(overrides).__name__}")
    config_cls = model_module(kind).Config
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = [k for k in overrides if k not in fields]
    if unknown:
        raise ValueError(f"--model-config: unknown key(s) {', '.join(map(repr, unknown))} for {kind}; valid keys: "
                         f"{', '.join(fields)}")
    defaults = config_cls()
    out = {}
    for key, value in overrides.items():
        default = getattr(defaults, key)
        if isinstance(default, tuple):
            ok = isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            want = "a list of integers"
            value = tuple(value) if ok else value
        elif isinstance(default, bool):
            ok, want = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif isinstance(default, float):
            ok, want = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        else:
            ok, want = True, ""
        if not ok:
            raise ValueError(f"--model-config: {key} must be {want} (default {json.dumps(default)}), "
                             f"got {json.dumps(value)}")
        out[key] = value
    try:
        config_cls(**out)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--model-config: {exc}") from None
    return out


def validate_features(names: list[str] | None) -> None:
    """Feature names for train-lr: every one must be one of the 47 (the error lists them)."""
    if names:
        from runtime.features import FEATURE_NAMES

        unknown = [n for n in names if n not in FEATURE_NAMES]
        if unknown:
            raise ValueError(f"--features: unknown feature name(s) {', '.join(unknown)}; valid names: "
                             f"{', '.join(FEATURE_NAMES)} (or 'consensus')")


class _RunFolder:
    """Removes the run folder again if this command created it and did not finish (error or Ctrl-C),
    unless training already wrote its resume state (`last.pt`): then the same command resumes it."""

    def __init__(self, path: str):
        self.path = path
        self.created = not os.path.exists(path)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None or not self.created or not os.path.isdir(self.path):
            return False
        if os.path.isfile(os.path.join(self.path, "last.pt")):
            click.echo(f"run folder {self.path} kept: it holds the resume state; run the same command again to "
                       "resume, or delete the folder", err=True)
        else:
            shutil.rmtree(self.path, ignore_errors=True)
        return False


def _run(kind: str, out: str | None, kw: dict, **train_kw) -> None:
    from .train import train_run

    out = out or os.path.join("runs", kind)
    spec = _spec(kw)
    try:
        with _RunFolder(out):
            metrics = train_run(kind, out, spec, kw["cache_dir"], seed=kw["seed"], progress=not kw["quiet"],
                                **train_kw)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    _report(kind, metrics, out)


def torch_options(f):
    opts = [
        click.option("--out", default=None, help="Run folder (default runs/<model>)."),
        click.option("--epochs", type=int, default=None, help="Maximum epochs (default: the model's)."),
        click.option("--lr", "learning_rate", type=float, default=None, help="Learning rate (AdamW)."),
        click.option("--batch-size", type=int, default=None, help="Pairs per batch."),
        click.option("--patience", type=int, default=None, help="Early-stopping patience in epochs."),
        click.option("--max-neg-per-pos", type=float, default=None,
                     help="Subsample training negatives to at most this many per positive (training split only)."),
        click.option("--model-config", default=None, help="JSON object of architecture overrides, e.g. '{\"hidden\": 96}'."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def hard_negatives_option(start_flag: str):
    return click.option(
        "--hard-negatives", type=click.Choice(HARD_NEGATIVES), default=HARD_NEGATIVES[0], show_default=True,
        help="Which training negatives count as hard when --max-neg-per-pos subsamples them (half of those kept): "
             f"the lowest Bhattacharyya cost, or the highest score of the {start_flag} MLP.")


def sequence_options(f):
    f = hard_negatives_option("--init-features-from")(f)
    return click.option(
        "--init-features-from", "init_features_from", type=click.Path(file_okay=False, exists=True), default=None,
        help="A trained MLP run folder (same data splits): its network becomes a feature branch of the pair head "
             "and training starts from its predictions, fitting the encoder's contribution on top. The branch "
             "stays frozen unless --model-config sets feature_branch_lr_scale > 0 (fine-tuned at lr x scale).")(f)


def _torch_train(kind: str, kw: dict) -> None:
    from .train import DEFAULT_MAX_NEG

    overrides = {k: v for k, v in (("epochs", kw["epochs"]), ("lr", kw["learning_rate"]),
                                   ("batch_size", kw["batch_size"]), ("patience", kw["patience"])) if v is not None}
    try:
        model_overrides = json.loads(kw["model_config"]) if kw["model_config"] else {}
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--model-config") from None
    try:
        model_overrides = validate_model_config(kind, model_overrides)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    max_neg = kw["max_neg_per_pos"] if kw["max_neg_per_pos"] is not None else DEFAULT_MAX_NEG.get(kind)
    extra = {"init_features_from": kw["init_features_from"]} if kw.get("init_features_from") else {}
    if kw.get("hard_negatives"):
        extra["hard_negatives"] = kw["hard_negatives"]
    _run(kind, kw["out"], kw, model_overrides=model_overrides, train_overrides=overrides, max_neg_per_pos=max_neg,
         **extra)


@click.command("train-lr", context_settings=CONTEXT)
@_version
@data_options
@click.option("--out", default=None, help="Run folder (default runs/lr).")
@click.option("--features", "feature_list", default=None,
              help="Comma-separated feature names (default: all 47), e.g. y_diff,time_gap,projection_error_x_max. "
                   "'consensus' selects the reference's ten consensus features.")
@click.option("--features-npz", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Train from the reference .npz format (X, y, feature_names; schema i24-47-v1) instead of scenarios.")
@click.option("--holdout-scenario", type=click.Choice(["i", "ii", "iii"]), default=None,
              help="With --features-npz: test on this scenario's row block, train on the others.")
@click.option("--C", "C", type=float, default=1.0, show_default=True, help="Inverse L2 regularisation strength.")
@click.option("--transform", type=click.Choice(["slog", "none"]), default="slog", show_default=True,
              help="Feature transform before the scaler: slog = sign(x) log(1 + |x|); none = the reference's raw "
                   "features.")
@click.option("--bhattacharyya-input/--no-bhattacharyya-input", default=True, show_default=True,
              help="Also feed the pair's Bhattacharyya cost (as log(cost + 1e-3)); the runtime computes it at "
                   "the cone parameters recorded in the artifact.")
def train_lr(out, feature_list, features_npz, holdout_scenario, C, transform, bhattacharyya_input, **kw):
    """Train logistic regression (StandardScaler + LogisticRegression, split before scaling).

    By default on signed-log features plus the pair's Bhattacharyya cost; `--transform none
    --no-bhattacharyya-input` is the reference's plain LR. `--features-npz` trains the plain LR on the
    reference's feature matrix (which holds no Bhattacharyya cost).
    """
    from .lr import CONSENSUS_10

    names = list(CONSENSUS_10) if feature_list == "consensus" else _names(feature_list)
    try:
        validate_features(names)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if features_npz:
        from .npz_run import train_lr_npz

        out = out or os.path.join("runs", "lr_npz")
        try:
            with _RunFolder(out):
                metrics = train_lr_npz(features_npz, out, names, holdout_scenario, C=C, seed=kw["seed"])
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"lr on {features_npz} ({metrics['protocol']}): test ROC-AUC {metrics['roc_auc']:.4f}, "
                   f"AP {metrics['average_precision']:.4f}, accuracy {metrics['accuracy']:.4f} "
                   f"(n_test {metrics['n_test']}) -> {out}/metrics.json")
        return
    if holdout_scenario:
        raise click.UsageError("--holdout-scenario applies to --features-npz; scenario runs split by seed")
    _run("lr", out, kw, features=names,
         model_overrides={"C": C, "transform": transform, "bhattacharyya_input": bhattacharyya_input})


@click.command("train-mlp", context_settings=CONTEXT)
@_version
@data_options
@torch_options
@click.option("--init-from", "init_features_from", type=click.Path(file_okay=False, exists=True), default=None,
              help="Fine-tune a trained MLP run (same data splits): start from its weights and statistics.")
@hard_negatives_option("--init-from")
def train_mlp(**kw):
    """Train the MLP on the standardised v2 engineered features (class-weighted BCE, early stopping)."""
    _torch_train("mlp", kw)


@click.command("train-siamese", context_settings=CONTEXT)
@_version
@data_options
@torch_options
@sequence_options
def train_siamese(**kw):
    """Train the Siamese BiLSTM (encoder per fragment window + pair head)."""
    _torch_train("siamese", kw)


@click.command("train-tcn", context_settings=CONTEXT)
@_version
@data_options
@torch_options
@sequence_options
def train_tcn(**kw):
    """Train the TCN (dilated causal convolutions per fragment window + pair head)."""
    _torch_train("tcn", kw)


@click.command("train-transformer", context_settings=CONTEXT)
@_version
@data_options
@torch_options
@sequence_options
def train_transformer(**kw):
    """Train the Transformer encoder (per fragment window) + pair head."""
    _torch_train("transformer", kw)
