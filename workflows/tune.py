"""The `tune` command: Optuna studies of `training.tune`, with the idf1 objective's export step wired in.

    tune --model mlp --trials 40                           # SQLite study in runs/optuna.db
    tune --model lr --trials 10 --objective idf1           # each trial exported and stitched with pp_lite
    tune --model mlp --trials 20 --select worst-case       # recommend the top-3 trial with the best shift worst case
    tune --model mlp --trials 20 --select constraint       # best objective among trials whose worst case holds

The search, the studies and the ap / tpr_at_fpr objectives live in `training.tune`; the idf1 objective
exports a trial's run (`export`) and stitches a validation scenario with it (`pp_lite`), which is why it
and the command are here, above both `training` and `export`.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Callable

import click

from runtime.files import atomic_write_text

from training.cli import _spec as spec_from_options
from training.cli import data_options
from training.tune import (DEFAULT_STORAGE, KINDS, OBJECTIVES, STITCH_ARGS, TrialObjective, _pruner,
                           promote_command)
from training.tune import tune as _tune

from . import shift_suite

__all__ = ["check_idf1_available", "idf1_of_run", "tune", "select_by_shift", "write_summary", "main"]


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


def _export_trial(run_dir: str, kind: str, out_dir: str, data_dir: str | None) -> None:
    from .promote import export_with_checks

    export_with_checks(run_dir, kind, out_dir, data_dir)


def select_by_shift(study, mode: str, *, top_k: int = 3, tolerance: float = shift_suite.TOLERANCE,
                    profile: str = "quick", data_dir: str | None = None, progress: bool = True,
                    say: Callable[[str], None] | None = None,
                    exporter: Callable[[str, str, str, str | None], None] | None = None) -> dict:
    """Choose among the study's top-`top_k` complete trials (by objective) with the shift suite.

    Each candidate trial's run is exported to a scratch folder (`exporter(run_dir, kind, out, data_dir)`,
    default: every export check), and all of them run through one shift suite (`profile`) with one
    Bhattacharyya run per cell. `mode`: "worst-case" = the highest worst case (ties -> objective);
    "constraint" = the highest objective among trials whose worst case >= -tolerance. A trial whose
    export fails is ruled out. Returns the selection record (also what `write_summary` stores):
    mode, top_k, tolerance, profile, seeds, shifts, duration, table (one row per candidate, best first),
    chosen (trial number or None), run_dir and promote (the command) of the chosen trial, suite seconds.
    """
    import optuna

    say = say or (lambda line: click.echo(line, err=True))
    exporter = exporter or _export_trial
    kind = study.user_attrs["setup"]["model"]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    if not done:
        raise ValueError(f"study {study.study_name} has no complete trial to select from")
    top = sorted(done, key=lambda t: (-t.value, t.number))[:top_k]
    candidates, costs, failed = [], [], {}
    with tempfile.TemporaryDirectory(prefix="tune-select-") as tmp:
        for t in top:
            label, run_dir = f"trial_{t.number}", t.user_attrs.get("run_dir")
            candidates.append({"label": label, "trial": t.number, "value": float(t.value), "run_dir": run_dir})
            out = os.path.join(tmp, label)
            try:
                if not run_dir:
                    raise ValueError("the trial records no run_dir")
                exporter(run_dir, kind, out, data_dir)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # ExportError, ValidationError, CalibrationFitError: the trial is ruled out
                failed[label] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                say(f"{label}: export failed ({failed[label]}); ruled out")
                continue
            costs.append(shift_suite.onnx_cost(label, out))
        if costs:
            say(f"shift suite ({profile}) on {', '.join(c[1] for c in costs)} and Bhat ...")
            payload = shift_suite.run_profile([shift_suite.BHAT] + costs, profile, tolerance=tolerance,
                                              progress=progress, desc="shift select")
        else:
            payload = {"worst_case": [], "seeds": list(shift_suite.PROFILES[profile]["seeds"]), "shifts": [],
                       "presets": [], "seconds": 0.0, "aggregate": []}
    worst = {w["cost"]: w for w in payload["worst_case"]}
    chosen, table = shift_suite.select_candidate(candidates, {k: w["worst"] for k, w in worst.items()}, mode, tolerance)
    for row in table:
        w = worst.get(row["label"])
        row["worst_cell"] = None if w is None else list(w["worst_cell"])
        row["nominal_delta"] = None if w is None else w.get("nominal_delta")
        if row["label"] in failed:
            row["export_failed"] = failed[row["label"]]
    if costs:
        say(shift_suite.cell_table(payload, [c[1] for c in costs]))
    record = {"mode": mode, "top_k": top_k, "tolerance": tolerance, "profile": profile, "seeds": payload["seeds"],
              "shifts": payload["shifts"], "presets": payload["presets"],
              "duration": shift_suite.PROFILES[profile]["duration"], "seconds": payload["seconds"], "table": table,
              "chosen": None if chosen is None else chosen["trial"],
              "run_dir": None if chosen is None else chosen["run_dir"],
              "promote": None if chosen is None else
              f"promote {chosen['run_dir']} --to {os.path.join('artifacts', kind)} --shift-guard"}
    return record


def write_summary(study, objective: str, runs_dir: str, selection: dict | None) -> str:
    """Write `<runs_dir>/<study>/summary.json` (atomically): the best trial by objective, the selection
    record (None with --select objective) and the recommended trial. Returns its path."""
    try:
        best = study.best_trial
        best_row = {"trial": best.number, "value": best.value, "run_dir": best.user_attrs.get("run_dir"),
                    "params": best.params}
    except ValueError:
        best_row = None
    recommended = (selection or {}).get("chosen") if selection else (best_row or {}).get("trial")
    summary = {"study": study.study_name, "objective": objective, "trials": len(study.trials),
               "best_by_objective": best_row, "selection": selection, "recommended_trial": recommended}
    path = os.path.join(runs_dir, study.study_name, "summary.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_text(path, json.dumps(summary, indent=1, default=float))
    return path


def _report_selection(record: dict, objective: str) -> None:
    click.echo(f"selection by shift suite ({record['mode']}, top {record['top_k']}, {record['profile']} profile, "
               f"tolerance {record['tolerance']}):")
    click.echo(f"  {'rank':>4}  {'trial':>6}  {objective:>12}  {'worst':>8}  worst cell")
    for r in record["table"]:
        rank = "-" if r["rank"] is None else str(r["rank"])
        worst = "-" if r["worst"] is None else f"{r['worst']:+.4f}"
        cell = r.get("export_failed") and f"export failed: {r['export_failed']}" or \
            (" / ".join(r["worst_cell"]) if r["worst_cell"] else "-")
        click.echo(f"  {rank:>4}  {r['trial']:>6}  {r['value']:>12.4f}  {worst:>8}  {cell}")
    if record["chosen"] is None:
        click.echo(f"no trial among the top {record['top_k']} has a worst case >= -{record['tolerance']}: "
                   "nothing to recommend (train more trials, or --select worst-case)")
    else:
        click.echo(f"recommended: trial {record['chosen']}  run {record['run_dir']}\npromote it with:\n  "
                   f"{record['promote']}")


def _report(study, objective: str, promote_hint: bool = True) -> None:
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
    if promote_hint:
        click.echo(f"promote it with:\n  {promote_command(study)}")
    else:
        click.echo("(the trial to promote is chosen by the shift suite below)")


@click.command("tune", context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("--select", "select_mode", type=click.Choice(shift_suite.SELECT_MODES), default="objective",
              show_default=True,
              help="Which trial to recommend after the study: objective = the best objective; worst-case = among "
                   "the top --select-top trials by objective, the one with the best shift-suite worst case (min "
                   "over preset x shift of IDF1 - Bhattacharyya IDF1; ties -> objective); constraint = the best "
                   "objective among those whose worst case >= -tolerance. Each candidate is exported to a scratch "
                   "folder; the table goes to <runs-dir>/<study>/summary.json.")
@click.option("--select-top", type=click.IntRange(min=1), default=3, show_default=True,
              help="Candidates for --select worst-case/constraint: the top trials by objective.")
@click.option("--shift-tolerance", type=click.FloatRange(min=0), default=shift_suite.TOLERANCE, show_default=True,
              help="The constraint's (and the table's pass mark's) tolerance on the worst case, IDF1.")
@click.option("--shift-quick/--shift-full", "shift_quick", default=True, show_default=True,
              help="Suite profile for --select: quick = 20 s scenarios, seed 201; full = preset durations, "
                   "seeds 201 and 202 (all presets and shifts either way).")
@data_options
def main(kind, n_trials, storage, study_name, objective, n_jobs, runs_dir, pruner_name, startup_trials,
         warmup_epochs, epochs, max_neg_per_pos, sampler_seed, timeout, init_features_from, select_mode, select_top,
         shift_tolerance, shift_quick, **kw):
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
    _report(study, objective, promote_hint=select_mode == "objective")
    selection = None
    if select_mode != "objective":
        try:
            selection = select_by_shift(study, select_mode, top_k=select_top, tolerance=shift_tolerance,
                                        profile="quick" if shift_quick else "full", data_dir=kw["cache_dir"],
                                        progress=not kw["quiet"])
        except ValueError as exc:
            raise click.ClickException(str(exc).splitlines()[0]) from None
        _report_selection(selection, objective)
    click.echo(f"summary: {write_summary(study, objective, runs_dir, selection)}")


if __name__ == "__main__":
    main()
