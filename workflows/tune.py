"""The `tune` command: Optuna studies of `training.tune`, with the idf1 objective's export step wired in.

    tune --model mlp --trials 40                           # SQLite study in runs/optuna.db
    tune --model lr --trials 10 --objective idf1           # each trial exported and stitched with pp_lite

The search, the studies and the ap / tpr_at_fpr objectives live in `training.tune`; the idf1 objective
exports a trial's run (`export`) and stitches a validation scenario with it (`pp_lite`), which is why it
and the command are here, above both `training` and `export`.
"""
from __future__ import annotations

import os
import sys
import tempfile

import click

from training.cli import _spec as spec_from_options
from training.cli import data_options
from training.tune import (DEFAULT_STORAGE, KINDS, OBJECTIVES, STITCH_ARGS, TrialObjective, _pruner,
                           promote_command)
from training.tune import tune as _tune

__all__ = ["check_idf1_available", "idf1_of_run", "tune", "main"]


def check_idf1_available() -> None:
    """Raise ValueError naming what the idf1 objective needs and the installation lacks."""
    import importlib

    missing = []
    for module, what in (("export.export", "export/export.py (export API)"),
                         ("runtime.onnx_cost", "runtime/onnx_cost.py"), ("pp_lite", "pp_lite.py"),
                         ("training.evaluate", "training/evaluate.py (evaluate_tracking)")):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(what)
    if missing:
        raise ValueError(f"objective idf1 needs {', '.join(missing)}; use --objective ap or tpr_at_fpr")


def idf1_of_run(objective: TrialObjective, run_dir: str) -> float:
    """Export the run to a temporary artifact, stitch the objective's validation scenario with it, return IDF1."""
    import pp_lite
    from export.export import ExportError, export_artifact
    from export.validate import MIN_PARITY_PAIRS, ValidationError
    from runtime.onnx_cost import OnnxCostFunction
    from training.evaluate import evaluate_tracking

    gt_docs, raw_docs = objective.scenario.docs()
    params = {"time_win": objective.spec.time_win, "master_time_win": objective.spec.time_win,
              "stitcher_mode": "local", "stitcher_args": dict(STITCH_ARGS)}
    with tempfile.TemporaryDirectory(prefix="tune-idf1-") as tmp:
        artifact = os.path.join(tmp, objective.kind)
        try:
            # a throw-away artifact: parity is checked on every test pair there is, however few
            export_artifact(objective.kind, run_dir, artifact, data_dir=objective.data_dir,
                            min_parity_pairs=min(MIN_PARITY_PAIRS, max(1, len(objective.splits["test"]))))
        except (ExportError, ValidationError) as exc:  # the trial fails, the study goes on
            raise ValueError(f"{run_dir}: export failed its checks ({exc})") from None
        rec_docs, _ = pp_lite.run(raw_docs, params, cost_fn=OnnxCostFunction(artifact), name=objective.scenario.name)
    return float(evaluate_tracking(gt_docs, rec_docs, hota=False)["idf1"])


def tune(kind: str, n_trials: int, *args, objective: str = "tpr_at_fpr", **kwargs):
    """`training.tune.tune` with the export-based idf1 scorer (same parameters and result)."""
    if objective == "idf1":
        check_idf1_available()
        kwargs.setdefault("idf1_scorer", idf1_of_run)
    return _tune(kind, n_trials, *args, objective=objective, **kwargs)


def _report(study, objective: str) -> None:
    import optuna

    trials = study.trials
    count = {s: sum(t.state == s for t in trials) for s in optuna.trial.TrialState}
    click.echo(f"study {study.study_name}: {len(trials)} trials ({count[optuna.trial.TrialState.COMPLETE]} complete, "
               f"{count[optuna.trial.TrialState.PRUNED]} pruned, {count[optuna.trial.TrialState.FAIL]} failed)")
    try:
        best = study.best_trial
    except ValueError:
        click.echo("no complete trial yet")
        return
    click.echo(f"best trial {best.number}: {objective} {best.value:.4f}  run {best.user_attrs.get('run_dir')}")
    for name, value in sorted(best.params.items()):
        click.echo(f"  {name} = {value}")
    click.echo(f"promote it with:\n  {promote_command(study)}")


@click.command("tune")
@click.option("--model", "kind", type=click.Choice(KINDS), required=True, help="Model kind to tune.")
@click.option("--trials", "n_trials", type=click.IntRange(min=1), default=20, show_default=True,
              help="Trials this command adds to the study (running it again continues the study).")
@click.option("--storage", default=DEFAULT_STORAGE, show_default=True,
              help="Optuna storage, any SQLAlchemy URL (e.g. postgresql://user:pass@host/db to share one "
                   "study between machines).")
@click.option("--study", "study_name", default=None,
              help="Study name (default <model>-<objective>); processes naming the same study share it.")
@click.option("--objective", type=click.Choice(tuple(OBJECTIVES)), default="tpr_at_fpr", show_default=True,
              help="What to maximise: " + "; ".join(f"{k} = {v}" for k, v in OBJECTIVES.items()) + ".")
@click.option("--n-jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Trials run in parallel threads of this process.")
@click.option("--runs-dir", default=os.path.join("runs", "tune"), show_default=True,
              help="Trial n of study S is written to RUNS_DIR/S/trial_n (a normal run folder).")
@click.option("--pruner", "pruner_name", type=click.Choice(["median", "none"]), default="median", show_default=True,
              help="Stop a trial whose validation AP at an epoch is below the median of earlier trials "
                   "at that epoch (torch models; LR trains in one step).")
@click.option("--startup-trials", type=click.IntRange(min=0), default=5, show_default=True,
              help="Trials that always run to the end before the pruner acts.")
@click.option("--warmup-epochs", type=click.IntRange(min=0), default=2, show_default=True,
              help="Epochs of every trial the pruner never stops.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Cap on the epochs of every trial (default: the model's).")
@click.option("--max-neg-per-pos", type=float, default=None,
              help="Subsample training negatives to at most this many per positive (default: as train-<model>).")
@click.option("--sampler-seed", type=int, default=None,
              help="Seed of the TPE sampler (reproducible suggestions; leave unset when several processes "
                   "share a study, or they suggest the same configurations).")
@click.option("--timeout", type=float, default=None, help="Stop starting new trials after this many seconds.")
@click.option("--init-features-from", type=click.Path(file_okay=False, exists=True), default=None,
              help="Sequence models: every trial starts from this trained MLP run (a feature branch, frozen or "
                   "fine-tuned as the trial's feature_branch_lr_scale says; see train-tcn --help).")
@data_options
def main(kind, n_trials, storage, study_name, objective, n_jobs, runs_dir, pruner_name, startup_trials,
         warmup_epochs, epochs, max_neg_per_pos, sampler_seed, timeout, init_features_from, **kw):
    """Tune a model's hyperparameters with Optuna; every trial is a run folder that `runs` and `promote` read."""
    import optuna

    try:
        study = tune(kind, n_trials, spec_from_options(kw), kw["cache_dir"], storage=storage, study_name=study_name,
                     objective=objective, n_jobs=n_jobs, runs_dir=runs_dir,
                     pruner=_pruner(pruner_name, startup_trials, warmup_epochs),
                     sampler=optuna.samplers.TPESampler(seed=sampler_seed), seed=kw["seed"],
                     max_neg_per_pos=max_neg_per_pos, train_overrides={"epochs": epochs} if epochs else None,
                     timeout=timeout, progress=not kw["quiet"], init_features_from=init_features_from)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc).splitlines()[0]) from None
    except KeyboardInterrupt:
        click.echo(f"interrupted; the study keeps its finished trials: run the same command to continue", err=True)
        sys.exit(130)
    _report(study, objective)


if __name__ == "__main__":
    main()
