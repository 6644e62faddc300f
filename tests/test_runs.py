"""Run management: curve diagnostics, `runs list/compare/best`, and `promote` (swap only after a passing export)."""
import json
import os

import pytest
from click.testing import CliRunner

from workflows.promote import PromotionRefused, promote
from workflows.promote import main as promote_cli
from training.runs import analyse_curves, best_run, find_runs
from training.runs import main as runs_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = dict(presets=("ii",), duration=12.0, train_seeds=(1,), val_seeds=(2,), cal_seeds=(3,), test_seeds=(4,))


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Two real MLP runs on tiny simulated data, differing in learning rate."""
    from training.pairs import DatasetSpec
    from training.train import load_splits, train_run

    root = tmp_path_factory.mktemp("tiny")
    spec = DatasetSpec(**TINY)
    splits = load_splits(spec, str(root / "data"), progress=False)
    runs = []
    for name, lr in (("mlp_a", 2e-3), ("mlp_b", 5e-3)):
        train_run("mlp", str(root / name), spec, str(root / "data"), model_overrides={"hidden": (16,)},
                  train_overrides={"epochs": 3, "lr": lr}, progress=False, splits=splits)
        runs.append(root / name)
    return runs


def history_of(train_loss, val_loss, val_ap, val_auc=None):
    val_auc = val_auc or [min(0.999, a + 0.1) for a in val_ap]
    return [{"epoch": i, "train_loss": t, "val_log_loss": v, "val_average_precision": a, "val_roc_auc": u}
            for i, (t, v, a, u) in enumerate(zip(train_loss, val_loss, val_ap, val_auc))]


def write_run(path, kind="mlp", history=None, stopped="max_epochs", best_epoch=0, epochs=None, val_ap=0.8,
              test_ap=0.7, lr=1e-3):
    os.makedirs(path, exist_ok=True)
    history = history or []
    split = lambda ap: {"roc_auc": 0.95, "average_precision": ap, "accuracy": 0.9, "log_loss": 0.2}
    metrics = {"model": kind, "roc_auc": 0.95, "average_precision": test_ap, "accuracy": 0.9, "log_loss": 0.2,
               "splits": {"val": split(val_ap), "test": split(test_ap)}, "seconds": 1.5}
    if history:
        metrics["training"] = {"best_epoch": best_epoch, "epochs_run": len(history), "stopped": stopped}
        metrics["train_config"] = {"epochs": epochs or len(history), "lr": lr, "batch_size": 256}
    (path / "metrics.json").write_text(json.dumps(metrics))
    (path / "history.json").write_text(json.dumps(history))
    (path / "model_config.json").write_text(json.dumps({"kind": kind, "hidden": [32, 16], "dropout": 0.1}))
    return path


# ------------------------------------------------------------------------------------- curve analysis
def test_overfitting_needs_k_consecutive_epochs_of_rising_val_loss_with_falling_train_loss():
    train = [0.9, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    val = [0.8, 0.6, 0.5, 0.55, 0.6, 0.7, 0.8]        # lowest at epoch 3, then rises 4 times
    rep = analyse_curves(history_of(train, val, [0.5, 0.6, 0.7, 0.7, 0.69, 0.68, 0.6]), k=3,
                         max_epochs=20, stopped="early_stopping", best_epoch=2)
    assert rep.overfitting_from == 3 and rep.best_epoch == 3
    assert rep.early_stopping_epoch == 7 and "early stopping at epoch 7" in rep.stop_line()
    assert any(f.startswith("overfitting") for f in rep.flags)
    assert not rep.not_converged
    # two rising epochs only (then a dip) is not overfitting at k=3, but is at k=2
    val2 = [0.8, 0.6, 0.5, 0.55, 0.6, 0.58, 0.59]
    assert analyse_curves(history_of(train, val2, [0.5] * 7), k=3).overfitting_from is None
    assert analyse_curves(history_of(train, val2, [0.5] * 7), k=2).overfitting_from == 3


def test_non_convergence_at_max_epochs_and_flat_training_loss():
    # still improving at the end of the epoch budget
    rep = analyse_curves(history_of([0.9, 0.8, 0.7, 0.6, 0.5, 0.45], [0.8, 0.7, 0.6, 0.55, 0.5, 0.45],
                                    [0.3, 0.4, 0.5, 0.6, 0.7, 0.8]), k=3, max_epochs=6, stopped="max_epochs")
    assert any("validation AP still improving" in r for r in rep.not_converged)
    assert rep.overfitting_from is None and rep.early_stopping_epoch is None
    # the same curves, stopped early before the budget: no "still improving" flag
    rep = analyse_curves(history_of([0.9, 0.8, 0.7, 0.6, 0.5, 0.45], [0.8, 0.7, 0.6, 0.55, 0.5, 0.45],
                                    [0.3, 0.4, 0.5, 0.6, 0.7, 0.8]), k=3, max_epochs=30, stopped="early_stopping")
    assert not rep.not_converged
    # training loss never goes down
    rep = analyse_curves(history_of([0.7, 0.71, 0.7, 0.72], [0.7] * 4, [0.2] * 4), k=3)
    assert any("training loss not decreasing" in r for r in rep.not_converged)


# ------------------------------------------------------------------------------------- runs CLI
def test_runs_list_best_and_compare_with_plot(tmp_path, tiny_runs):
    runs_dir = tmp_path / "runs"
    over = write_run(runs_dir / "overfit", history=history_of([0.9, 0.7, 0.6, 0.5, 0.4, 0.3],
                                                             [0.8, 0.6, 0.65, 0.7, 0.75, 0.8],
                                                             [0.6, 0.7, 0.68, 0.66, 0.64, 0.6]),
                     stopped="early_stopping", best_epoch=1, epochs=40, val_ap=0.7, test_ap=0.9)
    write_run(runs_dir / "lr_run", kind="lr", val_ap=0.75, test_ap=0.6)
    write_run(runs_dir / "tune" / "mlp-ap" / "trial_0", history=history_of([0.9, 0.8], [0.8, 0.7], [0.7, 0.8]),
              best_epoch=1, val_ap=0.85, test_ap=0.5)
    runner = CliRunner()

    out = runner.invoke(runs_cli, ["list", "--runs-dir", str(runs_dir), "--sort", "ap"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].split()[:3] == ["run", "model", "test"] and len(lines) == 2 + 3
    assert lines[2].startswith("overfit")              # test AP 0.9 first
    assert "tune/mlp-ap/trial_0" in out.output          # trials are ordinary runs

    # best picks by validation AP by default, not by the test split
    assert best_run(find_runs(str(runs_dir)), "mlp").name == os.path.join("tune", "mlp-ap", "trial_0")
    out = runner.invoke(runs_cli, ["best", "--model", "mlp", "--runs-dir", str(runs_dir)])
    assert out.exit_code == 0 and out.stdout.strip() == str(runs_dir / "tune" / "mlp-ap" / "trial_0")
    out = runner.invoke(runs_cli, ["best", "--model", "mlp", "--split", "test", "--runs-dir", str(runs_dir)])
    assert out.stdout.strip() == str(over)
    out = runner.invoke(runs_cli, ["best", "--model", "tcn", "--runs-dir", str(runs_dir)])
    assert out.exit_code == 1 and "no finished tcn run" in out.output

    # compare two real tiny runs and the synthetic overfitting one: one PNG, flags, hyperparameter table
    png = tmp_path / "cmp.png"
    out = runner.invoke(runs_cli, ["compare", *map(str, tiny_runs), str(over), "--plot", str(png)])
    assert out.exit_code == 0, out.output
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert "overfitting: validation loss rising while training loss falls from epoch 2" in out.output
    assert "early stopping at epoch 6, best epoch 2" in out.output
    assert "* train.lr" in out.output                   # the tiny runs differ in learning rate
    assert "test AP" in out.output and "val ROC-AUC" in out.output
    for run in tiny_runs:
        assert f"{run}: ran all" in out.output or f"{run}: early stopping" in out.output

    out = runner.invoke(runs_cli, ["compare", str(tmp_path / "nope")])
    assert out.exit_code == 1 and "no such run folder" in out.output


# ------------------------------------------------------------------------------------- promote
def make_artifact(path, tag):
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps({"tag": tag}))
    return path


def fake_exporter(tag):
    def export(run_dir, kind, out_dir):
        os.makedirs(out_dir)
        with open(os.path.join(out_dir, "manifest.json"), "w") as fh:
            json.dump({"tag": tag, "kind": kind}, fh)
    return export


def failing_exporter(run_dir, kind, out_dir):
    os.makedirs(out_dir)
    with open(os.path.join(out_dir, "model.onnx"), "w") as fh:
        fh.write("half-written")
    raise RuntimeError("parity check failed: max |cost difference| 0.3 > 1e-4")


def tag_of(path):
    return json.loads((path / "manifest.json").read_text())["tag"]


def test_mlp_fine_tuning_starts_from_the_run_it_names(tmp_path, tiny_runs):
    import numpy as np

    from training.pairs import DatasetSpec
    from training.train import load_trained, train_run

    base = str(tiny_runs[0])
    data = json.loads((tiny_runs[0] / "dataset.json").read_text())["data_dir"]
    # a zero learning rate leaves the starting point untouched: same architecture, weights and statistics
    metrics = train_run("mlp", str(tmp_path / "ft"), DatasetSpec(**TINY), data, init_features_from=base,
                        train_overrides={"epochs": 1, "lr": 0.0}, max_neg_per_pos=2.0, hard_negatives="warm-start",
                        progress=False)
    assert metrics["warm_start"] == {"fine_tuned_from": os.path.abspath(base)}
    assert metrics["hard_negatives"] == "warm-start"
    original = json.loads((tiny_runs[0] / "metrics.json").read_text())
    assert metrics["splits"]["test"]["average_precision"] == pytest.approx(
        original["splits"]["test"]["average_precision"], abs=1e-12)
    _, tuned, _ = load_trained(str(tmp_path / "ft"))
    _, start, _ = load_trained(base)
    for (name, a), (_, b) in zip(tuned.state_dict().items(), start.state_dict().items()):
        assert np.array_equal(a.numpy(), b.numpy()), name
    stats = json.loads((tmp_path / "ft" / "stats.json").read_text())    # what export folds into the graph
    assert np.allclose(stats["feature_mean"], start.scaler.mean.numpy())


def test_compare_shows_the_pair_sampling_and_warm_start(tmp_path):
    from training.runs import compare_table, load_run

    history = history_of([0.9, 0.8], [0.8, 0.7], [0.7, 0.8])
    runs = []
    for name, hard in (("old", None), ("new", "warm-start")):
        path = write_run(tmp_path / name, kind="tcn", history=history, best_epoch=1)
        metrics = json.loads((path / "metrics.json").read_text())
        metrics.update({"max_neg_per_pos": 4.0,
                        "warm_start": {"feature_branch_from": "/x/runs/tune/mlp-tpr/trial_2", "frozen": True}})
        if hard:                      # runs from before the option carry no key: they used the Bhattacharyya cost
            metrics["hard_negatives"] = hard
        (path / "metrics.json").write_text(json.dumps(metrics))
        runs.append(load_run(str(path)))
    table = compare_table(runs)
    row = next(line for line in table.splitlines() if "data.hard_negatives" in line)
    assert row.startswith("* ") and "bhattacharyya" in row and "warm-start" in row
    row = next(line for line in table.splitlines() if "data.warm_start" in line)
    assert row.startswith("  ") and row.count("mlp-tpr/trial_2") == 2
    # an MLP fine-tuned from another run names its start the same way
    path = tmp_path / "new"
    metrics = json.loads((path / "metrics.json").read_text())
    metrics["warm_start"] = {"fine_tuned_from": "/x/runs/tune/mlp-tpr/trial_7"}
    (path / "metrics.json").write_text(json.dumps(metrics))
    row = next(line for line in compare_table([runs[0], load_run(str(path))]).splitlines()
               if "data.warm_start" in line)
    assert row.startswith("* ") and "mlp-tpr/trial_7" in row


def test_promote_swaps_in_and_keeps_one_prev(tmp_path):
    run = write_run(tmp_path / "run")
    dest = tmp_path / "artifacts" / "mlp"
    make_artifact(dest, "v1")
    make_artifact(tmp_path / "artifacts" / "mlp.prev", "v0")
    promote(str(run), str(dest), exporter=fake_exporter("v2"), say=lambda s: None)
    assert tag_of(dest) == "v2" and tag_of(tmp_path / "artifacts" / "mlp.prev") == "v1"
    promote(str(run), str(dest), exporter=fake_exporter("v3"), say=lambda s: None)
    assert tag_of(dest) == "v3" and tag_of(tmp_path / "artifacts" / "mlp.prev") == "v2"
    assert sorted(os.listdir(tmp_path / "artifacts")) == ["mlp", "mlp.prev"]   # no staging left behind


def test_promote_refuses_a_failed_export_and_leaves_the_artifact(tmp_path):
    run = write_run(tmp_path / "run")
    dest = make_artifact(tmp_path / "artifacts" / "mlp", "v1")
    make_artifact(tmp_path / "artifacts" / "mlp.prev", "v0")
    with pytest.raises(PromotionRefused, match="parity check failed.*left unchanged"):
        promote(str(run), str(dest), exporter=failing_exporter, say=lambda s: None)
    assert tag_of(dest) == "v1" and tag_of(tmp_path / "artifacts" / "mlp.prev") == "v0"
    assert sorted(os.listdir(tmp_path / "artifacts")) == ["mlp", "mlp.prev"]


def test_promote_cli_refuses_a_run_whose_real_export_fails(tmp_path):
    # a finished-looking run whose weights are garbage: the real export must fail, the artifact must stay
    run = write_run(tmp_path / "run")
    (run / "best.pt").write_bytes(b"not a checkpoint")
    (run / "stats.json").write_text(json.dumps({"feature_mean": [0.0] * 47, "feature_scale": [1.0] * 47}))
    (run / "dataset.json").write_text(json.dumps({"source": "simulated"}))
    dest = make_artifact(tmp_path / "artifacts" / "mlp", "v1")
    before = {p: p.read_bytes() for p in dest.iterdir()}
    out = CliRunner().invoke(promote_cli, [str(run), "--to", str(dest)])
    assert out.exit_code == 1
    assert "export of" in out.output and "left unchanged" in out.output and len(out.output.strip().splitlines()) <= 2
    assert {p: p.read_bytes() for p in dest.iterdir()} == before
    assert sorted(os.listdir(tmp_path / "artifacts")) == ["mlp"]


def test_promote_refuses_an_unfinished_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.json").write_text(json.dumps(history_of([0.9], [0.8], [0.5])))
    with pytest.raises(PromotionRefused, match="not a finished run"):
        promote(str(run), str(tmp_path / "artifacts" / "mlp"), exporter=fake_exporter("x"), say=lambda s: None)
    assert not (tmp_path / "artifacts" / "mlp").exists()
