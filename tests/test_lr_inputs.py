"""The LR's input steps (training.lr): signed-log features, the Bhattacharyya-cost input, and the same steps in
the exported graph; the reference's plain LR still trains and exports."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from training.lr import (BHATTACHARYYA_INPUT, LogisticModel, apply_transform, bhattacharyya_input, fit_logistic,
                         input_matrix)
from training.pairs import BHAT_PARAM

sys.path.insert(0, os.path.dirname(__file__))
from test_export import TINY, tiny_artifacts  # noqa: E402  (one tiny training + export per test session)

CONE = {"cx": 0.2, "mx": 0.1, "cy": 2.0, "my": 0.1}


def test_signed_log_and_log_cost_by_column():
    X = np.array([[0.0, -3.0, 250.0, 0.0], [1.5, 2.0, -0.5, 7.0]])
    inputs = [bhattacharyya_input(CONE)]
    out = apply_transform(X, 3, "slog", inputs)
    expect = np.array([[0.0, -np.log(4.0), np.log(251.0), np.log(1e-3)],
                       [np.log(2.5), np.log(3.0), -np.log(1.5), np.log(7.001)]])
    np.testing.assert_allclose(out, expect, rtol=1e-15, atol=0)
    assert X[0, 1] == -3.0  # the caller's rows are not modified
    np.testing.assert_array_equal(apply_transform(X[:, :3], 3, "none", []), X[:, :3])
    np.testing.assert_allclose(apply_transform(X, 3, "none", inputs)[:, :3], X[:, :3], rtol=0, atol=0)
    with pytest.raises(ValueError, match="3 feature column.*1 input column"):
        apply_transform(X[:, :3], 3, "slog", inputs)
    with pytest.raises(ValueError, match="unknown transform"):
        apply_transform(X, 3, "cube", inputs)


def test_input_matrix_appends_the_miners_costs_and_refuses_another_cone():
    features, bhat = np.arange(12.0).reshape(3, 4), np.array([0.5, 2.0, 40.0])
    got = input_matrix(features, bhat, [3, 1], [bhattacharyya_input(BHAT_PARAM)])
    np.testing.assert_array_equal(got, [[3, 1, 0.5], [7, 5, 2.0], [11, 9, 40.0]])
    np.testing.assert_array_equal(input_matrix(features, None, [0], []), features[:, :1])
    with pytest.raises(ValueError, match="cone"):
        input_matrix(features, bhat, [0], [bhattacharyya_input({**CONE, "cx": 0.5})])
    with pytest.raises(ValueError, match="unknown model input"):
        input_matrix(features, bhat, [0], [{"name": "speed", "transform": "log", "eps": 1e-3}])
    with pytest.raises(ValueError, match="needs the pairs' Bhattacharyya costs"):
        input_matrix(features, None, [0], [bhattacharyya_input(BHAT_PARAM)])


def _toy(seed=0, n=600):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    gap = np.abs(rng.normal(2 + 3 * (1 - y), 1.0))
    err = np.exp(rng.normal(1 + 3 * (1 - y), 1.0))
    bhat = np.exp(rng.normal(-1 + 4 * (1 - y), 1.0))
    return np.c_[gap, err, bhat], y


def test_model_json_round_trip_keeps_the_steps_and_old_files_load_as_plain(tmp_path):
    X, y = _toy()
    inputs = [bhattacharyya_input(BHAT_PARAM)]
    model = fit_logistic(X, y, ["time_gap", "projection_error_x_max"], "i24-47-v3", transform="slog", inputs=inputs)
    assert model.n_inputs == 3 and len(model.coef) == 3
    path = tmp_path / "model.json"
    model.save(str(path))
    back = LogisticModel.load(str(path))
    assert back.transform == "slog" and back.inputs == inputs
    np.testing.assert_array_equal(back.decision_function(X), model.decision_function(X))
    # the steps matter: the same coefficients on untransformed inputs give other logits
    plain = LogisticModel(**{**json.loads(path.read_text()), "transform": "none", "inputs": []})
    plain.coef, plain.scaler_mean, plain.scaler_scale = plain.coef[:2], plain.scaler_mean[:2], plain.scaler_scale[:2]
    assert not np.allclose(plain.decision_function(X[:, :2]), model.decision_function(X))
    # a model.json written before the steps existed is the plain LR
    old = {k: v for k, v in json.loads(path.read_text()).items() if k not in ("transform", "inputs")}
    for key in ("coef", "scaler_mean", "scaler_scale"):
        old[key] = old[key][:2]
    path.write_text(json.dumps(old))
    loaded = LogisticModel.load(str(path))
    assert loaded.transform == "none" and loaded.inputs == [] and loaded.n_inputs == 2
    for bad, message in (({"transform": "cube"}, "transform"), ({"inputs": [{"name": "speed"}]}, "input"),
                         ({"coef": [1.0]}, "coefficients")):
        path.write_text(json.dumps({**old, **bad}))
        with pytest.raises(ValueError, match=message):
            LogisticModel.load(str(path))


def test_signed_log_helps_a_linear_model_on_a_heavy_tailed_feature():
    """Why the transform exists: on a log-normal error feature the raw-input LR spends its slope on the tail."""
    from sklearn.metrics import average_precision_score

    def toy(seed, n=4000):
        rng = np.random.default_rng(seed)
        y = (rng.random(n) < 0.3).astype(int)
        return np.c_[np.abs(rng.normal(2 + (1 - y), 1.0)), np.exp(rng.normal(1 + 1.5 * (1 - y), 1.2))], y

    (X, y), (Xt, yt) = toy(1), toy(2)
    names = ["time_gap", "projection_error_x_max"]
    raw = fit_logistic(X, y, names, "i24-47-v3")
    slog = fit_logistic(X, y, names, "i24-47-v3", transform="slog")
    assert average_precision_score(yt, slog.decision_function(Xt)) > \
        average_precision_score(yt, raw.decision_function(Xt)) + 0.02


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_artifacts(tmp_path_factory.getbasetemp() / "export_tiny", ("lr",))


def test_the_reference_plain_lr_still_trains_and_exports_with_parity(tiny, tmp_path):
    """`train-lr --transform none --no-bhattacharyya-input` is the reference's LR: 47 raw columns, no extra
    input in the manifest, no transform nodes in the graph, and the runtime serves it."""
    import onnx

    from export.export import export_artifact
    from runtime.onnx_cost import OnnxCostFunction
    from training.pairs import DatasetSpec
    from training.train import train_run

    run, art = tmp_path / "run", tmp_path / "art"
    train_run("lr", str(run), DatasetSpec(**TINY), str(tiny["data"]), progress=False,
              model_overrides={"transform": "none", "bhattacharyya_input": False})
    assert json.loads((run / "model_config.json").read_text())["transform"] == "none"
    export_artifact("lr", str(run), str(art))
    m = json.loads((art / "manifest.json").read_text())
    assert "extra_inputs" not in m["inputs"] and m["graphs"]["model"]["inputs"][0]["shape"] == ["N", 47]
    assert not [n for n in onnx.load(str(art / "model.onnx")).graph.node if n.name.startswith("inputs/")]
    assert m["parity"]["max_abs_diff_cost_le_2T"] <= 1e-9
    fn = OnnxCostFunction(str(art))
    assert fn.describe()["extra_inputs"] == []


def test_the_default_lr_graph_computes_the_steps_itself(tiny):
    """The shipped graph takes raw features and the raw Bhattacharyya cost: its transform nodes are there."""
    import onnx

    m = json.loads((tiny["artifacts"]["lr"] / "manifest.json").read_text())
    assert m["inputs"]["extra_inputs"][0]["name"] == BHATTACHARYYA_INPUT
    names = {n.name for n in onnx.load(str(tiny["artifacts"]["lr"] / "model.onnx")).graph.node}
    assert {"inputs/slice_extra", "inputs/log1p", "inputs/extra_log", "inputs/concat"} <= names
    assert m["parity"]["max_abs_diff_cost_le_2T"] <= 1e-9
