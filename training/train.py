"""One training run, the same for every model kind: data splits -> fit -> evaluate -> run folder.

A run folder holds `metrics.json` (test-split figures at the top level, every split and preset below),
`dataset.json` (which scenario instances, so export can rebuild the calibration and test splits),
`model_config.json`, `stats.json` (normalisation statistics from the training split), the weights
(`best.pt`, a torch state dict loaded with weights_only=True, or `model.json` for LR), `history.json`
and PNG curves.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, fields, replace
from typing import Any, Callable, Mapping

import numpy as np

from runtime.files import atomic_write_text

from .metrics import classification_metrics, finite_or_none
from .pairs import HARD_NEGATIVES, DatasetSpec, ScenarioPairs, load_dataset

__all__ = ["train_run", "load_splits", "model_inputs", "load_trained", "split_logits", "evaluate_logits", "RUN_FILES"]

RUN_FILES = ("metrics.json", "dataset.json", "model_config.json")
# Training-split negatives kept per positive, by kind (the natural ratio is ~100:1 on the simulated presets).
# Class-weighted BCE restores the balance; validation, calibration and test keep the natural ratio.
DEFAULT_MAX_NEG = {"mlp": 30.0, "siamese": 4.0, "tcn": 4.0, "transformer": 4.0}
# The LR's inputs unless a run says otherwise (`training.lr`): signed-log features plus the pair's
# Bhattacharyya cost. On the shift suite's validation seeds this ranks close candidates as well as the
# baseline in free flow, where the raw-feature LR fell behind it (docs/training.md).
LR_DEFAULTS = {"transform": "slog", "bhattacharyya_input": True}


def _clean(metrics: Mapping[str, Any]) -> dict:
    return {k: finite_or_none(v) if isinstance(v, float) else v for k, v in metrics.items()}


def load_splits(spec: DatasetSpec, data_dir: str, progress: bool = True) -> dict[str, ScenarioPairs]:
    """The four splits with only trainable pairs (label 0/1); skipping same-vehicle pairs are left out."""
    splits = load_dataset(spec, data_dir, progress)
    return {name: sp.select(sp.trainable) for name, sp in splits.items()}


def subsample_negatives(sp: ScenarioPairs, max_neg_per_pos: float | None, seed: int,
                        hard_fraction: float = 0.5, hardness: np.ndarray | None = None) -> ScenarioPairs:
    """Keep every positive and at most `max_neg_per_pos` negatives per positive (training split only).

    Half of the kept negatives (`hard_fraction`) are the hardest ones, the rest a seeded random draw from
    the remainder, so the model sees both the confusable pairs and the ordinary ones. Hardest means the
    lowest `hardness` (one value per pair of `sp`); by default the Bhattacharyya cost (the lowest-cost
    negatives, the ones the stitcher could confuse with a true link). Class-weighted BCE restores the
    balance; validation, calibration and test keep the natural ratio.
    """
    if not max_neg_per_pos:
        return sp
    pos = np.flatnonzero(sp.label == 1)
    neg = np.flatnonzero(sp.label == 0)
    keep_neg = int(min(neg.size, max_neg_per_pos * pos.size))
    if keep_neg >= neg.size:
        return sp
    hardness = sp.bhat if hardness is None else np.asarray(hardness)
    if hardness.shape != (len(sp),):
        raise ValueError(f"hardness has shape {hardness.shape}, expected ({len(sp)},)")
    n_hard = int(round(hard_fraction * keep_neg))
    hard = neg[np.argsort(hardness[neg], kind="stable")[:n_hard]]
    rest = np.setdiff1d(neg, hard, assume_unique=True)
    chosen = np.random.default_rng(seed).choice(rest, size=keep_neg - n_hard, replace=False)
    mask = np.zeros(len(sp), dtype=bool)
    mask[pos] = True
    mask[hard] = True
    mask[chosen] = True
    return sp.select(mask)


def model_inputs(kind: str, sp: ScenarioPairs, window_length: int = 64):
    """Training-loop data for `kind`: engineered features for the MLP, windows + features for sequence models."""
    import torch

    from .loop import TensorPairs

    labels = sp.label.astype(np.int64)
    if kind == "mlp":
        return TensorPairs(labels, {"features": torch.as_tensor(sp.features, dtype=torch.float32)})
    from .sequence_data import sequence_pairs

    return sequence_pairs(sp.docs, sp.a, sp.b, labels, sp.features, L=window_length, schema=sp.schema)


def evaluate_logits(sp: ScenarioPairs, logits: np.ndarray) -> dict:
    """Metrics overall and per preset, with the Bhattacharyya cost as a score on the same pairs."""
    out = _clean(classification_metrics(sp.label, logits))
    out["bhattacharyya"] = _clean(classification_metrics(sp.label, -sp.bhat))
    presets = sorted({n.split("/")[0] for n in sp.names})
    by_preset = {}
    for preset in presets:
        src = [i for i, n in enumerate(sp.names) if n.split("/")[0] == preset]
        mask = np.isin(sp.source, src)
        m = _clean(classification_metrics(sp.label[mask], logits[mask]))
        m["bhattacharyya"] = _clean(classification_metrics(sp.label[mask], -sp.bhat[mask]))
        by_preset[preset] = m
    out["by_preset"] = by_preset
    return out


def _write_json(path: str, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))


def _top_level(kind: str, evals: dict, splits: dict, spec: DatasetSpec, seed: int, schema: str, extra: dict) -> dict:
    test = evals["test"]
    return {
        "model": kind,
        "accuracy": test["accuracy"], "roc_auc": test["roc_auc"],
        "average_precision": test["average_precision"], "log_loss": test["log_loss"],
        "n_train": len(splits["train"]), "n_val": len(splits["val"]), "n_cal": len(splits["cal"]),
        "n_test": len(splits["test"]), "pos_rate_test": test["pos_rate"],
        "feature_schema": schema, "seed": seed, "data": spec.describe(),
        "splits": evals, **extra,
    }


def train_run(kind: str, run_dir: str, spec: DatasetSpec | None = None, data_dir: str = "data", *,
              model_overrides: Mapping | None = None, train_overrides: Mapping | None = None,
              max_neg_per_pos: float | None = None, features: list[str] | None = None, seed: int = 0,
              progress: bool = True, epoch_callback: Callable | None = None,
              splits: dict[str, ScenarioPairs] | None = None, init_features_from: str | None = None,
              hard_negatives: str = "bhattacharyya") -> dict:
    """Train one model of `kind` ("lr", "mlp", "siamese", "tcn", "transformer") and write its run folder.

    `init_features_from` (sequence kinds only): a trained MLP run folder; its network becomes a feature
    branch of the pair head and the head's own output starts at zero, so training begins at that MLP's
    predictions and fits the encoder's contribution as a residual (`warm_start_feature_branch`). The branch
    stays frozen unless the model config's `feature_branch_lr_scale` is > 0 (then it is fine-tuned too).
    For kind "mlp" the run starts from that MLP's weights and statistics and fine-tunes all of it.

    `hard_negatives` picks which training negatives count as hard when `max_neg_per_pos` subsamples them
    (`subsample_negatives`): "bhattacharyya" (lowest Bhattacharyya cost, the default) or "warm-start" (the
    highest logit of the `init_features_from` MLP: the pairs the encoder's residual has to correct).
    The MLP must have been trained on the same training split (checked against its dataset.json).

    Returns the metrics dict written to `run_dir/metrics.json`.
    """
    from .models import SEQUENCE_KINDS

    if init_features_from is not None and kind not in SEQUENCE_KINDS + ("mlp",):
        raise ValueError(f"init_features_from applies to the MLP and the sequence models, not {kind!r}")
    if hard_negatives not in HARD_NEGATIVES:
        raise ValueError(f"hard_negatives must be one of {', '.join(HARD_NEGATIVES)}, got {hard_negatives!r}")
    if hard_negatives == "warm-start" and init_features_from is None:
        raise ValueError("hard_negatives 'warm-start' ranks negatives by the warm-start MLP: give init_features_from")
    spec = spec or DatasetSpec()
    warm = _mlp_warm_start(init_features_from, spec) if init_features_from else None  # refused before any work
    os.makedirs(run_dir, exist_ok=True)
    t0 = time.perf_counter()
    if splits is None:
        splits = load_splits(spec, data_dir, progress)
    for name in ("train", "val", "test"):
        if len(splits[name]) == 0 or splits[name].label.min() == splits[name].label.max():
            raise ValueError(f"{name} split has {len(splits[name])} pairs and needs both classes")
    _write_json(os.path.join(run_dir, "dataset.json"), {**spec.describe(), "data_dir": os.path.abspath(data_dir),
                                                        "splits": {k: v.summary() for k, v in splits.items()}})
    hardness = _warm_hardness(warm, splits["train"]) if hard_negatives == "warm-start" and max_neg_per_pos else None
    train_sp = subsample_negatives(splits["train"], max_neg_per_pos, seed, hardness=hardness)
    if progress:
        s = splits["train"].summary()
        print(f"[{kind}] train {len(train_sp)} pairs ({s['positives']} positive, natural ratio "
              f"{s['neg_per_pos']}:1), val {len(splits['val'])}, cal {len(splits['cal'])}, test {len(splits['test'])}",
              file=sys.stderr, flush=True)
    if kind == "lr":
        metrics = _train_lr(run_dir, spec, splits, train_sp, features, model_overrides or {}, seed)
    else:
        metrics = _train_torch(kind, run_dir, spec, splits, train_sp, model_overrides or {}, train_overrides or {},
                               seed, progress, epoch_callback, warm)
    metrics["max_neg_per_pos"] = max_neg_per_pos
    metrics["hard_negatives"] = hard_negatives
    metrics["seconds"] = round(time.perf_counter() - t0, 2)
    _write_json(os.path.join(run_dir, "metrics.json"), metrics)
    return metrics


def _train_lr(run_dir, spec, splits, train_sp, features, overrides, seed) -> dict:
    from runtime.features import FEATURE_NAMES

    from .lr import TRANSFORMS, bhattacharyya_input, feature_columns, fit_logistic, input_matrix
    from .pairs import BHAT_PARAM
    from .plots import plot_evaluation

    names = list(features) if features else list(FEATURE_NAMES)
    cols = feature_columns(names)
    transform = overrides.get("transform", LR_DEFAULTS["transform"])
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {', '.join(TRANSFORMS)}, got {transform!r}")
    with_bhat = bool(overrides.get("bhattacharyya_input", LR_DEFAULTS["bhattacharyya_input"]))
    inputs = [bhattacharyya_input(BHAT_PARAM)] if with_bhat else []

    model = fit_logistic(input_matrix(train_sp.features, train_sp.bhat, cols, inputs), train_sp.label, names,
                         spec.schema, C=float(overrides.get("C", 1.0)),
                         class_weight=overrides.get("class_weight", "balanced"), transform=transform, inputs=inputs)
    model.save(os.path.join(run_dir, "model.json"))
    config = {"C": model.C, "features": names, "transform": transform, "bhattacharyya_input": with_bhat}
    _write_json(os.path.join(run_dir, "model_config.json"), {"kind": "lr", "class_weight": model.class_weight,
                                                              **config})
    logits = {name: model.decision_function(model.pair_inputs(sp)) for name, sp in splits.items()}
    evals = {name: evaluate_logits(sp, logits[name]) for name, sp in splits.items()}
    test = splits["test"]
    plot_evaluation({f"test {p}": (test.label[m], logits["test"][m], test.bhat[m])
                     for p, m in _preset_masks(test).items()},
                    os.path.join(run_dir, "evaluation.png"), "logistic regression, test split",
                    calibration=(splits["cal"].label, logits["cal"]))
    return _top_level("lr", evals, splits, spec, seed, spec.schema, {"model_config": config})


def _preset_masks(sp: ScenarioPairs) -> dict[str, np.ndarray]:
    out = {}
    for preset in sorted({n.split("/")[0] for n in sp.names}):
        src = [i for i, n in enumerate(sp.names) if n.split("/")[0] == preset]
        out[preset] = np.isin(sp.source, src)
    return out


def _mlp_warm_start(run_dir: str, spec: DatasetSpec) -> dict:
    """The MLP run that seeds a sequence model's feature branch: its hidden widths, weights and provenance.

    Refuses an MLP trained on other data: its weights would carry another training split (possibly one that
    overlaps this run's validation or test seeds) into this model.
    """
    from .loop import load_state

    try:
        with open(os.path.join(run_dir, "model_config.json"), encoding="utf-8") as fh:
            config = json.load(fh)
        with open(os.path.join(run_dir, "dataset.json"), encoding="utf-8") as fh:
            dataset = json.load(fh)
    except FileNotFoundError as exc:
        raise ValueError(f"{run_dir} is not a training run folder: {exc.filename} is missing") from None
    if config.get("kind") != "mlp":
        raise ValueError(f"{run_dir} is a {config.get('kind')!r} run; the feature branch starts from an 'mlp' run")
    ours = spec.describe()
    differing = sorted(k for k in ours if k in dataset and dataset[k] != ours[k] and k != "data_dir")
    if differing:
        raise ValueError(f"{run_dir} was trained on other data (differs in {', '.join(differing)}); "
                         f"train the MLP on the same splits first")
    best = os.path.join(run_dir, "best.pt")
    if not os.path.exists(best):
        raise ValueError(f"{run_dir} has no best.pt")
    return {"run": os.path.abspath(run_dir), "hidden": tuple(config["hidden"]), "state": load_state(best)}


def _warm_stats(warm: dict) -> dict:
    """The feature statistics the warm-start MLP was trained with (buffers of its scaler, in its state dict)."""
    return {"feature_mean": warm["state"]["scaler.mean"].tolist(),
            "feature_scale": warm["state"]["scaler.scale"].tolist()}


def _warm_hardness(warm: dict, sp: ScenarioPairs) -> np.ndarray:
    """Minus the warm-start MLP's logit on every pair of `sp`: the lowest are the negatives it finds most
    link-like. The MLP saw this training split, so these are in-sample scores: they rank, they do not judge."""
    import torch

    from .models import model_module

    mlp = model_module("mlp")
    model = mlp.build(mlp.Config(hidden=warm["hidden"]), _warm_stats(warm))
    model.load_state_dict(warm["state"])
    model.eval()
    with torch.no_grad():
        logits = model(torch.as_tensor(sp.features, dtype=torch.float32)).numpy().astype(np.float64)
    return -logits


def _train_torch(kind, run_dir, spec, splits, train_sp, model_overrides, train_overrides, seed, progress,
                 epoch_callback, warm: dict | None = None) -> dict:
    import torch

    from .loop import TrainConfig, predict_logits, train_model
    from .models import model_module
    from .plots import plot_evaluation, plot_history

    module = model_module(kind)
    torch.manual_seed(seed)
    config = module.Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in model_overrides.items()})
    if warm is not None and kind != "mlp":
        # No dropout in the branch: training sees exactly the MLP's logit underneath (frozen or fine-tuned).
        config = replace(config, feature_branch=warm["hidden"], feature_branch_dropout=0.0)
    window = getattr(config, "window_length", 64)
    train_data = model_inputs(kind, train_sp, window)
    val_data = model_inputs(kind, splits["val"], window)
    stats = module.fit_stats(train_data)
    if warm is not None and kind == "mlp":
        # fine-tune the MLP itself: its architecture, weights and the scaler statistics it was trained with
        config = replace(config, hidden=warm["hidden"])
        stats = {**stats, **_warm_stats(warm)}
    model = module.build(config, stats)
    if warm is not None and kind == "mlp":
        model.load_state_dict(warm["state"])
    elif warm is not None:
        from .models.sequence import warm_start_feature_branch

        warm_start_feature_branch(model, warm["state"])  # frozen unless feature_branch_lr_scale > 0
    cfg = TrainConfig(**{**module.DEFAULT_TRAIN, "seed": seed, **train_overrides})
    _write_json(os.path.join(run_dir, "model_config.json"), {"kind": kind, **asdict(config)})
    _write_json(os.path.join(run_dir, "stats.json"), stats)
    # which training pairs (not only how many): a resume must not continue on another negative subsample
    chosen = hashlib.sha1(np.concatenate([train_sp.source, train_sp.a, train_sp.b]).astype(np.int64).tobytes())
    fingerprint = json.dumps({"kind": kind, "model": asdict(config), "data": spec.describe(), "n_train": len(train_sp),
                              "train_pairs": chosen.hexdigest(), "warm_start": warm["run"] if warm else None},
                             sort_keys=True, default=str)
    result = train_model(model, train_data, val_data, cfg, run_dir, progress=progress, epoch_callback=epoch_callback,
                         fingerprint=fingerprint)
    evals, curves, cal = {}, {}, None
    for name, sp in splits.items():
        data = val_data if name == "val" else model_inputs(kind, sp, window)
        logits = predict_logits(model, data)
        evals[name] = evaluate_logits(sp, logits)
        if name == "test":
            curves = {f"test {p}": (sp.label[m], logits[m], sp.bhat[m]) for p, m in _preset_masks(sp).items()}
        elif name == "cal":
            cal = (sp.label, logits)
    plot_history(result["history"], os.path.join(run_dir, "curves.png"), f"{kind} training",
                 best_epoch=result["best_epoch"])
    plot_evaluation(curves, os.path.join(run_dir, "evaluation.png"), f"{kind}, test split", calibration=cal)
    return _top_level(kind, evals, splits, spec, seed, spec.schema, {
        "model_config": asdict(config), "train_config": asdict(cfg),
        "training": {k: result[k] for k in ("best_epoch", "epochs_run", "stopped")},
        "warm_start": _warm_summary(kind, config, warm),
    })


def _warm_summary(kind: str, config, warm: dict | None) -> dict | None:
    if warm is None:
        return None
    if kind == "mlp":
        return {"fine_tuned_from": warm["run"]}
    return {"feature_branch_from": warm["run"], "frozen": config.feature_branch_lr_scale <= 0,
            "feature_branch_lr_scale": config.feature_branch_lr_scale}


def load_trained(run_dir: str):
    """Rebuild a trained model from its run folder: `(kind, model, metrics)`.

    For LR the model is a `LogisticModel`; for torch kinds an eval-mode module with the best weights
    (loaded with weights_only=True).
    """
    with open(os.path.join(run_dir, "model_config.json"), encoding="utf-8") as fh:
        mc = json.load(fh)
    kind = mc.pop("kind")
    metrics_path = os.path.join(run_dir, "metrics.json")
    metrics = json.load(open(metrics_path, encoding="utf-8")) if os.path.exists(metrics_path) else {}
    if kind == "lr":
        from .lr import LogisticModel

        return kind, LogisticModel.load(os.path.join(run_dir, "model.json")), metrics
    from .loop import load_state
    from .models import model_module

    module = model_module(kind)
    known = {f.name for f in fields(module.Config)}
    config = module.Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in mc.items() if k in known})
    with open(os.path.join(run_dir, "stats.json"), encoding="utf-8") as fh:
        stats = json.load(fh)
    model = module.build(config, stats)
    model.load_state_dict(load_state(os.path.join(run_dir, "best.pt")))
    model.eval()
    return kind, model, metrics


def split_logits(run_dir: str, sp: ScenarioPairs, inputs_cache: dict | None = None, lock=None) -> np.ndarray:
    """Logits of a run's best model on the pairs of one split.

    `inputs_cache` lets several runs share the model inputs built for `sp` (the features of MLP runs, the
    windows of sequence runs of any kind with the same window length); pass one dict per split. `lock`, when
    given, guards filling the cache, so threads share one build while their predictions run in parallel.
    """
    kind, model, _ = load_trained(run_dir)
    if kind == "lr":
        return model.decision_function(model.pair_inputs(sp))
    from .loop import predict_logits

    with open(os.path.join(run_dir, "model_config.json"), encoding="utf-8") as fh:
        window = int(json.load(fh).get("window_length", 64))
    cache = inputs_cache if inputs_cache is not None else {}
    key = (kind == "mlp", window)
    with lock if lock is not None else contextlib.nullcontext():
        if key not in cache:
            cache[key] = model_inputs(kind, sp, window)
        data = cache[key]
    return predict_logits(model, data)
