"""The pictures: integer epoch ticks and the kept epoch marked, the reliability of what ships (Platt as exported)
beside the raw output, a Bhattacharyya baseline on ROC/PR, named presets, and an ECE that never prints 0.000."""
import numpy as np
import pytest

from training.plots import best_epoch_of, plot_evaluation, plot_history, preset_label

PNG = b"\x89PNG\r\n\x1a\n"


def _history(n):
    return [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_log_loss": 0.3 + 0.01 * e, "val_roc_auc": 0.9,
             "val_average_precision": [0.5, 0.8, 0.7, 0.6, 0.65][e]} for e in range(n)]


@pytest.mark.parametrize("n", [1, 3, 5])
def test_curves_have_integer_epoch_ticks_and_the_kept_epoch_marked(tmp_path, n):
    path = tmp_path / "curves.png"
    drawn = plot_history(_history(n), str(path), "mlp training", best_epoch=min(1, n - 1))
    assert path.read_bytes().startswith(PNG)
    assert drawn["xticks"] and all(float(t).is_integer() for t in drawn["xticks"])   # no 1.5, 2.5
    assert set(drawn["xticks"]) <= set(range(1, n + 1))
    assert drawn["best_epoch"] == min(1, n - 1) + 1
    # without the loop's answer, the best validation AP is marked
    assert plot_history(_history(n), str(path))["best_epoch"] == best_epoch_of(_history(n)) + 1


def test_best_epoch_is_the_best_validation_ap():
    assert best_epoch_of(_history(5)) == 1
    assert best_epoch_of([{"epoch": 0, "val_average_precision": None}]) is None


def test_presets_are_named():
    assert [preset_label(n) for n in ("test i", "test ii", "iii", "test all")] == \
        ["free flow (i)", "snow (ii)", "stop-and-go (iii)", "test all"]


def _pairs(rng, n=4000, rate=0.04):
    y = (rng.random(n) < rate).astype(int)
    z = 3.0 * (rng.normal(-4, 1.5, n) + 5 * y)       # over-confident raw logits: the calibration must shrink them
    bhat = rng.gamma(2, 2, n) - 2 * y
    return y, z, bhat


def test_evaluation_shows_the_calibrated_output_and_the_baseline(tmp_path):
    from export.calibration import fit_platt as exported_fit

    rng = np.random.default_rng(0)
    curves = {f"test {p}": _pairs(rng) for p in ("i", "ii", "iii")}
    y_cal, z_cal, _ = _pairs(rng)
    path = tmp_path / "evaluation.png"
    drawn = plot_evaluation(curves, str(path), "mlp, test split", calibration=(y_cal, z_cal))
    assert path.read_bytes().startswith(PNG)
    roc, pr, reliability = drawn["legends"]
    for name in ("free flow (i)", "snow (ii)", "stop-and-go (iii)"):
        assert f"Bhattacharyya, {name}" in roc and f"Bhattacharyya, {name}" in pr
        assert f"calibrated (ships), {name}" in reliability and f"uncalibrated, {name}" in reliability
    assert not any("test i" in label for label in roc)
    # the calibration drawn is the one the export fits: same function, same split
    assert drawn["platt"] == exported_fit(z_cal, y_cal)
    assert drawn["platt"][0] < 1.0                    # over-confident logits are shrunk
    assert drawn["titles"][1] == "precision-recall" and "calibrated" in drawn["titles"][2]


def test_evaluation_without_a_calibration_split_says_so(tmp_path):
    rng = np.random.default_rng(1)
    y, z, _ = _pairs(rng)
    drawn = plot_evaluation({"test ii": (y, z)}, str(tmp_path / "e.png"))
    assert drawn["platt"] is None and drawn["legends"][2] == ["uncalibrated, snow (ii)"]
    assert len(drawn["legends"][0]) == 1                  # no baseline given, none drawn


def test_ece_is_printed_with_two_significant_figures():
    from export.export import format_ece

    assert format_ece(0.00042) == "4.2e-04"
    assert format_ece(0.0042) == "0.0042"
    assert format_ece(0.031) == "0.031"
    assert format_ece(0.0) == "0" and format_ece(float("nan")) == "n/a"
