"""Tuning: search spaces sample valid configurations, a study runs, prunes and resumes from its storage,
and two processes share one SQLite study without colliding."""
import functools
import json
import os
import subprocess
import sys

import numpy as np
import optuna
import pytest

from training.pairs import DatasetSpec
from training.tune import KINDS, StudyMismatch, search_space_of, tpr_at_fpr, tune
from workflows.tune import check_idf1_available
from workflows.tune import tune as tune_with_export

TINY = dict(presets=("ii",), duration=12.0, train_seeds=(1,), val_seeds=(2,), cal_seeds=(3,), test_seeds=(4,))
TINY_ARGS = ["--presets", "ii", "--duration", "12", "--train-seeds", "1", "--val-seeds", "2", "--cal-seeds", "3", "--test-seeds", "4"]


def present_kinds():
    out = []
    for kind in KINDS:
        try:
            search_space_of(kind)
        except ImportError:
            continue
        out.append(kind)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from training.train import load_splits

    data = str(tmp_path_factory.mktemp("data"))
    spec = DatasetSpec(**TINY)
    return spec, data, load_splits(spec, data, progress=False)


def quiet(line):
    pass


# ------------------------------------------------------------------------------------- search spaces
@pytest.mark.parametrize("kind,warm", [(k, False) for k in present_kinds()]
                         + [(k, True) for k in present_kinds() if k not in ("lr", "mlp")])
def test_search_space_samples_valid_configs(kind, warm):
    import inspect

    from training.loop import TrainConfig
    from training.pairs import HARD_NEGATIVES
    from training.train import train_run

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    space = functools.partial(search_space_of(kind), warm_start=True) if warm else search_space_of(kind)
    configs = []
    for _ in range(16):
        trial = study.ask()
        sampled = space(trial)
        configs.append(sampled)
        if warm:   # the warm-start choices: the branch's learning-rate scale and the hard negatives
            assert set(sampled) == {"model", "train", "pairs"}
            assert sampled["model"]["feature_branch_lr_scale"] >= 0
            assert sampled["pairs"]["hard_negatives"] in HARD_NEGATIVES
            assert set(sampled["pairs"]) <= set(inspect.signature(train_run).parameters)
        else:
            assert set(sampled) == {"model", "train"}
        json.dumps(sampled, default=list)                       # stored in run folders as JSON
        if kind == "lr":
            from training.lr import feature_columns

            model = sampled["model"]
            assert model["C"] > 0 and model["class_weight"] in ("balanced", None)
            assert len(feature_columns(model["features"])) in (10, 47)
            assert model["transform"] in ("slog", "none") and model["bhattacharyya_input"] in (True, False)
            assert sampled["train"] == {}
        else:
            from training.models import model_module

            module = model_module(kind)
            module.Config(**sampled["model"])
            TrainConfig(**{**module.DEFAULT_TRAIN, **sampled["train"]})
        study.tell(trial, 0.5)
    # a trial's stored params rebuild its configuration
    for frozen, sampled in zip(study.trials, configs):
        assert space(optuna.trial.FixedTrial(frozen.params)) == sampled


def test_tpr_at_fpr_never_exceeds_the_fpr():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(50), np.zeros(1000)]
    s = np.r_[rng.normal(3, 1, 50), rng.normal(0, 1, 1000)]
    tpr = tpr_at_fpr(y, s, 0.005)
    thr = np.sort(s[y == 0])[::-1][5]
    assert tpr == pytest.approx((s[y == 1] > thr).mean())
    assert (s[y == 0] > thr).mean() <= 0.005
    assert tpr_at_fpr([1, 1, 0, 0], [0.9, 0.1, 0.5, 0.2], 0.0) == 0.5   # ties/ordering: strictly above all negatives
    with pytest.raises(ValueError, match="both classes"):
        tpr_at_fpr([0, 0], [0.1, 0.2])


# ------------------------------------------------------------------------------------- a study
def test_study_runs_prunes_and_resumes(tmp_path, tiny):
    spec, data, splits = tiny
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    runs_dir = str(tmp_path / "tune")
    common = dict(storage=storage, study_name="s", runs_dir=runs_dir, splits=splits, progress=False, say=quiet,
                  train_overrides={"epochs": 2}, objective="tpr_at_fpr")
    study = tune("mlp", 2, spec, data, pruner=optuna.pruners.NopPruner(), **common)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert all(0.0 <= t.value <= 1.0 for t in study.trials)

    # a second call on the same storage and study continues it; AP can never reach 2, so this trial is pruned
    study = tune("mlp", 1, spec, data, pruner=optuna.pruners.ThresholdPruner(lower=2.0), **common)
    states = [t.state for t in study.trials]
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert states == [optuna.trial.TrialState.COMPLETE] * 2 + [optuna.trial.TrialState.PRUNED]
    pruned = study.trials[2]
    assert pruned.user_attrs["pruned_at_epoch"] == 1 and list(pruned.intermediate_values) == [0]
    metrics = json.loads(open(os.path.join(runs_dir, "s", "trial_2", "metrics.json")).read())
    assert metrics["training"] == {"best_epoch": 0, "epochs_run": 1, "stopped": "callback"}
    for n in range(3):  # every trial is an ordinary run folder
        assert os.path.exists(os.path.join(runs_dir, "s", f"trial_{n}", "metrics.json"))
    assert study.best_trial.user_attrs["run_dir"] == os.path.join(runs_dir, "s", f"trial_{study.best_trial.number}")

    # joining the study with another objective or data set is refused
    with pytest.raises(StudyMismatch, match="objective"):
        tune("mlp", 1, spec, data, **{**common, "objective": "ap"})


def test_idf1_objective_is_explained_when_unavailable_or_scores(tmp_path, tiny):
    spec, data, splits = tiny
    # the library alone (training never imports export) refuses idf1 and names what runs it
    with pytest.raises(ValueError, match="workflows.tune"):
        tune("lr", 1, spec, data, storage=f"sqlite:///{tmp_path / 'lib.sqlite'}", objective="idf1",
             splits=splits, progress=False, say=quiet)
    try:
        check_idf1_available()
    except ValueError as exc:
        assert "objective idf1 needs" in str(exc)
        with pytest.raises(ValueError, match="objective idf1 needs"):
            tune_with_export("lr", 1, spec, data, storage=f"sqlite:///{tmp_path / 'db.sqlite'}", objective="idf1",
                 splits=splits, progress=False, say=quiet)
        return
    study = tune_with_export("lr", 1, spec, data, storage=f"sqlite:///{tmp_path / 'db.sqlite'}", objective="idf1",
                             runs_dir=str(tmp_path / "tune"), splits=splits, progress=False, say=quiet)
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE and 0.0 <= study.best_value <= 1.0


# ------------------------------------------------------------------------------------- two processes
def test_two_processes_share_one_sqlite_study(tmp_path, tiny):
    spec, data, _ = tiny  # the fixture filled the pair cache, so the workers only read it
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    cmd = [sys.executable, "-c", "from workflows.tune import main; main(prog_name='tune')",
           "--model", "lr", "--trials", "2", "--storage", storage, "--study", "shared", "--objective", "ap",
           "--runs-dir", str(tmp_path / "tune"), "--cache", data, *TINY_ARGS]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    workers = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
               for _ in range(2)]
    outputs = [w.communicate(timeout=120) for w in workers]
    for w, (out, err) in zip(workers, outputs):
        assert w.returncode == 0, err
        assert "best trial" in out and "promote it with:\n  promote " in out
    study = optuna.load_study(study_name="shared", storage=storage)
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    # the trials' run folders and the study summary (written atomically by whichever process ends last)
    assert sorted(os.listdir(tmp_path / "tune" / "shared")) == ["summary.json"] + [f"trial_{n}" for n in range(4)]
    summary = json.loads((tmp_path / "tune" / "shared" / "summary.json").read_text())
    assert summary["selection"] is None and summary["recommended_trial"] == summary["best_by_objective"]["trial"]
    assert summary["best_by_objective"]["value"] == pytest.approx(study.best_value)
    for t in study.trials:  # the ap objective is the run's validation AP; LR's feature subset is applied
        assert t.state == optuna.trial.TrialState.COMPLETE
        metrics = json.loads(open(os.path.join(t.user_attrs["run_dir"], "metrics.json")).read())
        assert t.value == pytest.approx(metrics["splits"]["val"]["average_precision"])
        assert len(metrics["model_config"]["features"]) == {"all-47": 47, "consensus-10": 10}[t.params["features"]]


# ------------------------------------------------------------------ tuned vs default (benchmarks/tuning.py)
def test_weighted_average_precision_is_sklearns_with_repeated_rows():
    from sklearn.metrics import average_precision_score

    from benchmarks.tuning import weighted_average_precision

    rng = np.random.default_rng(4)
    y = (rng.random(400) < 0.1).astype(float)
    s = np.round(rng.normal(size=400) + 2 * y, 1)                # rounded: plenty of tied scores
    order = np.argsort(-s, kind="stable")
    ones = np.ones_like(y)
    assert weighted_average_precision(order, s[order], y[order], ones) == pytest.approx(
        average_precision_score(y, s), abs=1e-12)
    w = rng.integers(0, 3, 400).astype(float)                    # a bootstrap draw: rows counted w times
    rows = np.repeat(np.arange(400), w.astype(int))
    assert weighted_average_precision(order, s[order], y[order], w) == pytest.approx(
        average_precision_score(y[rows], s[rows]), abs=1e-12)


def test_paired_ap_difference_separates_a_real_gain_from_none():
    from benchmarks.tuning import paired_ap_difference

    rng = np.random.default_rng(5)
    n = 3000
    clusters = rng.integers(0, 600, n)
    y = (rng.random(n) < 0.05).astype(float)
    base = rng.normal(size=n) + 1.5 * y
    same = paired_ap_difference(y, clusters, base, base.copy(), resamples=200)
    assert same["delta_ap"] == 0 and same["ci95"] == [0.0, 0.0]
    better = paired_ap_difference(y, clusters, base, base + 1.5 * y, resamples=200)
    assert better["delta_ap"] > 0 and better["ci95"][0] > 0 and better["share_positive"] == 1.0
    noise = paired_ap_difference(y, clusters, base, base + rng.normal(scale=0.05, size=n), resamples=200)
    assert noise["ci95"][0] < 0 < noise["ci95"][1]
