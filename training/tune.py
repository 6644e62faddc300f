"""Hyperparameter search with Optuna for every model kind; each trial is an ordinary run folder.

    tune --model mlp --trials 40                           # SQLite study in runs/optuna.db
    tune --model tcn --trials 20 --storage postgresql://user:pass@host/db --study tcn-v1   # on each machine

The search space comes from the model's module (`search_space(trial)`; LR's from `models/lr_space.py`).
Torch trials report validation AP after every epoch and a MedianPruner stops the unpromising ones
through the loop's `epoch_callback` / `TrainingStopped`. Studies live in any SQLAlchemy storage and are
opened with `load_if_exists`, so several processes or machines can work on one study, and running the
command again adds trials instead of starting over. Trial n trains into `<runs-dir>/<study>/trial_<n>`
with `train_run`, so `runs list/compare/best` and `promote` apply to it unchanged.

This module is the library (spaces, studies, the ap / tpr_at_fpr objectives). The idf1 objective exports
every trial, so it is wired in from above: `workflows.tune` (the `tune` command) passes `idf1_scorer`.
`training` never imports `export`.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
import warnings
from typing import Any, Callable, Mapping

import numpy as np

from .train import DEFAULT_MAX_NEG
from .models import TORCH_KINDS, model_module
from .pairs import BHAT_PARAM, DatasetSpec, ScenarioPairs

__all__ = ["KINDS", "OBJECTIVES", "DEFAULT_STORAGE", "TARGET_FPR", "STITCH_ARGS", "search_space_of", "tpr_at_fpr",
           "open_study", "tune", "TrialObjective", "StudyMismatch", "promote_command"]

KINDS = ("lr",) + TORCH_KINDS
OBJECTIVES = {
    "ap": "validation average precision at the natural class ratio",
    "tpr_at_fpr": "validation TPR at FPR <= 0.5% (the export's default operating point)",
    "idf1": "IDF1 of pp_lite with the trial's exported model on a validation scenario",
}
DEFAULT_STORAGE = "sqlite:///runs/optuna.db"
TARGET_FPR = 0.005
# The train-* commands' defaults (training/cli.py): training negatives per positive, per model kind.
# The reference stitcher setting the learned costs are calibrated for (thresholds 3 / 4).
STITCH_ARGS = {**BHAT_PARAM, "stitch_thresh": 3.0, "master_stitch_thresh": 4.0}
FAILED_TRIAL_ERRORS = (ValueError, RuntimeError, FloatingPointError)
HEARTBEAT_S = 30
_NEEDS_SCORER = ("the idf1 objective exports every trial: run it with the `tune` command or workflows.tune.tune "
                 "(training.tune.tune needs idf1_scorer)")


class StudyMismatch(ValueError):
    """An existing study was created for another model, objective or data set."""


def search_space_of(kind: str) -> Callable[[Any], dict]:
    """`search_space(trial) -> {"model": {...}, "train": {...}}` for model `kind`.

    The sequence kinds' spaces take `warm_start=True` when the trials start from an MLP run; they then
    also return {"pairs": {...}}, keyword arguments of `train_run` (which negatives count as hard).
    """
    if kind == "lr":
        from .models.lr_space import search_space

        return search_space
    return model_module(kind).search_space


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float = TARGET_FPR) -> float:
    """Share of positives scored strictly above a threshold that at most `fpr` of negatives exceed.

    Ties at the threshold count as rejected, so the realised FPR never exceeds `fpr`.
    """
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    neg = np.sort(s[~y])[::-1]
    if neg.size == 0 or y.sum() == 0:
        raise ValueError(f"TPR at FPR needs both classes ({int(y.sum())} positives, {neg.size} negatives)")
    allowed = int(np.floor(fpr * neg.size))  # negatives that may lie above the threshold
    threshold = neg[min(allowed, neg.size - 1)]
    return float((s[y] > threshold).mean())


def _ensure_sqlite_folder(url: str) -> None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
        folder = os.path.dirname(os.path.abspath(parsed.database))
        os.makedirs(folder, exist_ok=True)


def _shown(url: str) -> str:
    """The storage URL with any password masked, for progress lines and errors."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _storage(url: str):
    """An RDB storage for any SQLAlchemy URL; SQLite waits for locks instead of failing under concurrency."""
    import optuna
    from sqlalchemy.exc import ArgumentError

    try:
        _ensure_sqlite_folder(url)
    except ArgumentError:
        raise ValueError(f"--storage {url!r} is not an SQLAlchemy URL (e.g. sqlite:///runs/optuna.db, "
                         f"postgresql://user:pass@host/db)") from None
    except OSError as exc:
        raise ValueError(f"cannot create the folder of storage {url}: {exc.strerror}") from None
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    last: Exception | None = None
    # Two processes creating the tables of a fresh database at once can race; the loser retries.
    for attempt in range(5):
        try:
            # heartbeats let a live worker mark the trials of a killed one as failed instead of running forever
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S,
                                                  grace_period=4 * HEARTBEAT_S)
        except Exception as exc:  # sqlalchemy OperationalError/IntegrityError, driver import errors
            last = exc
            if isinstance(exc, ImportError):
                break
            time.sleep(0.5 * (attempt + 1))
    raise ValueError(f"cannot open storage {_shown(url)}: {str(last).splitlines()[0]}")


def open_study(storage: str, study_name: str, setup: Mapping[str, Any], *, pruner=None, sampler=None):
    """Create the study or join the existing one (`load_if_exists`), refusing one set up differently.

    `setup` (model kind, objective, data set, training seed, ...) is stored as study user attributes
    when the study is new; joining a study whose setup differs raises `StudyMismatch` naming the keys,
    because trials on other data or another objective are not comparable.
    """
    import optuna

    study = optuna.create_study(storage=_storage(storage), study_name=study_name, direction="maximize",
                                load_if_exists=True, pruner=pruner, sampler=sampler)
    stored = study.user_attrs
    if not stored.get("setup"):
        study.set_user_attr("setup", json.loads(json.dumps(dict(setup))))
        return study
    wanted = json.loads(json.dumps(dict(setup)))
    differ = sorted(k for k in set(stored["setup"]) | set(wanted) if stored["setup"].get(k) != wanted.get(k))
    if differ:
        details = "; ".join(f"{k}: study has {stored['setup'].get(k)!r}, this command {wanted.get(k)!r}"
                            for k in differ)
        raise StudyMismatch(f"study {study_name!r} was set up differently ({details}); use another --study")
    return study


def _trial_dir(runs_dir: str, study_name: str, number: int) -> str:
    return os.path.join(runs_dir, study_name, f"trial_{number}")


def promote_command(study) -> str:
    """The shell command that promotes the study's best trial to its artifact folder."""
    best = study.best_trial
    kind = study.user_attrs["setup"]["model"]
    return f"promote {best.user_attrs['run_dir']} --to {os.path.join('artifacts', kind)}"


class _ValidationScenario:
    """The GT and RAW documents of one validation instance, simulated once per process (idf1 objective)."""

    def __init__(self, spec: DatasetSpec):
        if spec.real_data_dir:
            raise ValueError("the idf1 objective stitches a simulated validation scenario; "
                             "it is not available with --data")
        preset = "ii" if "ii" in spec.presets else spec.presets[0]
        self.name = f"{preset}/seed{spec.val_seeds[0]}"
        self._args = (preset, int(spec.val_seeds[0]), spec.duration)
        self._docs = None
        self._lock = threading.Lock()

    def docs(self) -> tuple[list, list]:
        with self._lock:
            if self._docs is None:
                from .simulate import simulate

                self._docs = simulate(self._args[0], self._args[1], duration=self._args[2])
            return self._docs


class TrialObjective:
    """The Optuna objective: sample a configuration, train it into its run folder, score it.

    Parameters
    ----------
    kind : model kind.
    splits : the four data splits, loaded once per process and shared by every trial.
    spec, data_dir : the data set the splits come from (recorded in each run folder).
    objective : one of OBJECTIVES.
    runs_dir, study_name : trial n trains into `<runs_dir>/<study_name>/trial_<n>`.
    seed : training seed of every trial (so trials differ by their hyperparameters only).
    max_neg_per_pos, train_overrides : fixed settings applied to every trial (e.g. an epoch cap).
    progress : per-epoch progress of each trial on stderr.
    idf1_scorer : `idf1_scorer(objective, run_dir) -> IDF1` for the idf1 objective (it exports the run, so
        it comes from `workflows.tune`, above both training and export).
    """

    def __init__(self, kind: str, splits: dict[str, ScenarioPairs], spec: DatasetSpec, data_dir: str, *,
                 objective: str, runs_dir: str, study_name: str, seed: int = 0,
                 max_neg_per_pos: float | None = None, train_overrides: Mapping | None = None,
                 progress: bool = False, init_features_from: str | None = None,
                 idf1_scorer: Callable[["TrialObjective", str], float] | None = None):
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        self.kind, self.splits, self.spec, self.data_dir = kind, splits, spec, data_dir
        self.objective, self.runs_dir, self.study_name = objective, runs_dir, study_name
        self.seed, self.max_neg_per_pos = seed, max_neg_per_pos
        self.train_overrides = dict(train_overrides or {})
        self.progress = progress
        self.init_features_from = init_features_from
        if objective == "idf1" and idf1_scorer is None:
            raise ValueError(_NEEDS_SCORER)
        self.idf1_scorer = idf1_scorer
        self.space = search_space_of(kind)
        self.scenario = _ValidationScenario(spec) if objective == "idf1" else None
        self._val_inputs: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, trial) -> float:
        import optuna

        from .loop import TrainingStopped
        from .train import train_run

        # sequence kinds started from an MLP also search the branch's learning rate and the hard negatives
        space = self.space(trial, warm_start=True) if self.init_features_from else self.space(trial)
        model_overrides = dict(space.get("model", {}))
        pair_options = dict(space.get("pairs", {}))
        train_overrides = {**space.get("train", {}), **self.train_overrides}
        features = model_overrides.pop("features", None) if self.kind == "lr" else None
        run_dir = _trial_dir(self.runs_dir, self.study_name, trial.number)
        if os.path.exists(os.path.join(run_dir, "metrics.json")) or os.path.exists(os.path.join(run_dir, "last.pt")):
            # trial numbers are unique within a study: a filled folder belongs to some other study
            raise ValueError(f"{run_dir} already holds a run from another study; use another --study or --runs-dir")
        trial.set_user_attr("run_dir", run_dir)
        pruned_at: list[int] = []

        def report(epoch: int, val_metrics: dict) -> None:
            value = val_metrics.get("average_precision")
            if value is None or not np.isfinite(value):
                return
            trial.report(float(value), epoch)
            if trial.should_prune():
                pruned_at.append(epoch)
                raise TrainingStopped(f"pruned at epoch {epoch + 1}")

        metrics = train_run(self.kind, run_dir, self.spec, self.data_dir, model_overrides=model_overrides,
                            train_overrides=train_overrides, max_neg_per_pos=self.max_neg_per_pos,
                            features=features, seed=self.seed, progress=self.progress,
                            epoch_callback=report if self.kind != "lr" else None, splits=self.splits,
                            init_features_from=self.init_features_from, **pair_options)
        val = metrics["splits"]["val"]
        trial.set_user_attr("val_average_precision", val["average_precision"])
        trial.set_user_attr("val_roc_auc", val["roc_auc"])
        trial.set_user_attr("epochs_run", metrics.get("training", {}).get("epochs_run"))
        if pruned_at:
            trial.set_user_attr("pruned_at_epoch", pruned_at[0] + 1)
            raise optuna.TrialPruned(f"validation AP below the pruner's bar at epoch {pruned_at[0] + 1}")
        return self.score(run_dir, metrics)

    def score(self, run_dir: str, metrics: Mapping) -> float:
        """The objective value of a finished run folder."""
        if self.objective == "ap":
            value = metrics["splits"]["val"]["average_precision"]
            if value is None:
                raise ValueError("validation AP is undefined (single-class validation split)")
            return float(value)
        if self.objective == "tpr_at_fpr":
            return tpr_at_fpr(self.splits["val"].label, self.validation_logits(run_dir))
        return self.idf1(run_dir)

    def validation_logits(self, run_dir: str) -> np.ndarray:
        """Logits of the run's best model on the validation pairs (at the natural ratio)."""
        from .train import split_logits

        # validation inputs depend on the window length only: built once per process, under the lock
        return split_logits(run_dir, self.splits["val"], self._val_inputs, self._lock)

    def idf1(self, run_dir: str) -> float:
        """IDF1 of pp_lite on the validation scenario with the run exported (`idf1_scorer`)."""
        return float(self.idf1_scorer(self, run_dir))


def _pruner(name: str, startup_trials: int, warmup_epochs: int):
    import optuna

    if name == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_epochs)


def tune(kind: str, n_trials: int, spec: DatasetSpec, data_dir: str = "data", *,
         storage: str = DEFAULT_STORAGE, study_name: str | None = None, objective: str = "tpr_at_fpr",
         n_jobs: int = 1, runs_dir: str = os.path.join("runs", "tune"), pruner=None, sampler=None,
         seed: int = 0, max_neg_per_pos: float | None = None, train_overrides: Mapping | None = None,
         timeout: float | None = None, splits: dict[str, ScenarioPairs] | None = None,
         progress: bool = True, say: Callable[[str], None] | None = None, init_features_from: str | None = None,
         idf1_scorer: Callable[[TrialObjective, str], float] | None = None):
    """Run `n_trials` more trials of the study (created if new) and return the `optuna.Study`.

    Parameters
    ----------
    kind : "lr", "mlp", "siamese", "tcn" or "transformer".
    n_trials : trials this call adds (a second call on the same study continues it).
    spec, data_dir : the data set; splits are loaded once per call unless `splits` is given.
    storage : any SQLAlchemy URL; SQLite files get their folder created.
    study_name : default "<kind>-<objective>".
    objective : "ap", "tpr_at_fpr" or "idf1" (see OBJECTIVES).
    n_jobs : trials run in parallel threads of this process.
    runs_dir : trial n writes `<runs_dir>/<study>/trial_<n>`.
    pruner : an Optuna pruner (default MedianPruner(5 startup trials, 2 warm-up epochs)).
    sampler : an Optuna sampler (default TPE).
    seed : training seed of every trial.
    max_neg_per_pos : negative subsampling of the training split (default: the train-* default of `kind`).
    train_overrides : loop settings fixed for every trial, applied over the sampled ones (e.g. {"epochs": 10}).
    init_features_from : sequence kinds: every trial starts from this MLP run (see `train_run`).
    idf1_scorer : needed by the idf1 objective (`workflows.tune.tune` passes the export-based one).
    timeout : stop starting trials after this many seconds.
    progress : per-trial result lines (and per-epoch lines when n_jobs == 1).
    say : where result lines go (default stderr).
    """
    import optuna

    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(KINDS)}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if n_trials < 1 or n_jobs < 1:
        raise ValueError("trials and n_jobs must be >= 1")
    if objective == "idf1" and idf1_scorer is None:
        raise ValueError(_NEEDS_SCORER)
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    study_name = study_name or f"{kind}-{objective}"
    max_neg = max_neg_per_pos if max_neg_per_pos is not None else DEFAULT_MAX_NEG.get(kind)
    setup = {"model": kind, "objective": objective, "data": spec.describe(), "seed": seed,
             "max_neg_per_pos": max_neg, "train_overrides": dict(train_overrides or {}),
             **({"init_features_from": os.path.abspath(init_features_from)} if init_features_from else {})}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(storage, study_name, setup, pruner=pruner or _pruner("median", 5, 2), sampler=sampler)
    if splits is None:
        from .train import load_splits

        splits = load_splits(spec, data_dir, progress)
    objective_fn = TrialObjective(kind, splits, spec, data_dir, objective=objective, runs_dir=runs_dir,
                                  study_name=study_name, seed=seed, max_neg_per_pos=max_neg,
                                  train_overrides=train_overrides, progress=progress and n_jobs == 1,
                                  init_features_from=init_features_from, idf1_scorer=idf1_scorer)
    done_before = len(study.trials)

    def on_trial(study_, frozen) -> None:
        if not progress:
            return
        state = frozen.state.name.lower()
        value = f"{frozen.value:.4f}" if frozen.value is not None else "-"
        extra = f" at epoch {frozen.user_attrs['pruned_at_epoch']}" if "pruned_at_epoch" in frozen.user_attrs else ""
        try:
            best = f"best {study_.best_value:.4f} (trial {study_.best_trial.number})"
        except ValueError:
            best = "no complete trial yet"
        say(f"trial {frozen.number}: {state}{extra}, {objective} {value}, {frozen.params}; {best}")

    if progress:
        say(f"study {study_name!r} ({_shown(storage)}): {done_before} earlier trials; adding {n_trials} "
            f"({kind}, objective {objective}: {OBJECTIVES[objective]})")
    study.optimize(objective_fn, n_trials=n_trials, n_jobs=n_jobs, timeout=timeout,
                   catch=FAILED_TRIAL_ERRORS, callbacks=[on_trial])
    return study


