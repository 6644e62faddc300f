"""The README's drop-in: the reference stitcher's calls, made against this runtime, work unchanged; its
own cost blocks get an error that says what to write instead; the shipped shorthand works from any folder."""
import json
import os

import numpy as np
import pytest

from runtime import INVALID_COST, ConfigError, CostFunctionFactory, FragmentError, load_cost_function


def merged_fragment(fid, t0, n, x0, speed, node=1, raw_len=None):
    """A fragment as the reference merge stage hands it to MOTGraphSingle: string _id, 25 Hz arrays,
    velocity / detection_confidence left at their raw (different) length, scalar fields set."""
    t = t0 + 0.04 * np.arange(n)
    x = x0 + speed * (t - t0)
    raw = raw_len or n + 7
    return {"_id": fid, "ID": fid, "timestamp": t.tolist(), "x_position": x.tolist(), "y_position": [12.0] * n,
            "length": [15.0] * n, "width": [6.0] * n, "height": [5.0] * n,
            "velocity": [speed] * raw, "detection_confidence": [0.9] * raw, "direction": 1,
            "first_timestamp": float(t[0]), "last_timestamp": float(t[-1]),
            "starting_x": float(x[0]), "ending_x": float(x[-1]), "compute_node_id": node}


def reference_param():
    # MOTGraphSingle passes stitcher_args, with time_win and stitch_thresh written into it
    return {"cx": 0.2, "mx": 0.1, "cy": 2, "my": 0.1, "stitch_thresh": 3, "master_stitch_thresh": 4, "time_win": 15}


def test_reference_stitcher_calls_work_unchanged():
    cost_config = {"type": "bhattacharyya"}               # parameters.get('cost_function', ...)
    cost_fn = CostFunctionFactory.create(cost_config)     # MOTGraphSingle.__init__
    a = merged_fragment("frag-a", 1623877175.0, 50, 100.0, 60.0)
    b = merged_fragment("frag-b", 1623877175.0 + 2.5, 30, 100.0 + 60.0 * 2.5, 60.0)
    c = merged_fragment("frag-c", 1623877175.0 + 2.5, 30, 400.0, 60.0)
    param, TIME_WIN = reference_param(), 15
    same = cost_fn.compute_cost(a, b, TIME_WIN, param)    # MOTGraphSingle.add_node
    other = cost_fn.compute_cost(a, c, TIME_WIN, param)
    assert same <= param["stitch_thresh"] < other
    assert cost_fn.compute_cost(b, a, TIME_WIN, param) == INVALID_COST  # negative gap: no edge
    costs = cost_fn.compute_costs([a, c], b, TIME_WIN, param)
    np.testing.assert_allclose(costs, [same, cost_fn.compute_cost(c, b, TIME_WIN, param)], rtol=1e-12)


def test_unknown_reference_cost_type_names_the_known_ones():
    with pytest.raises(ValueError, match="known types: .*bhattacharyya"):
        CostFunctionFactory.create({"type": "logistic_regression", "model_path": "x.pkl"})


def test_bad_merged_fragment_names_id_and_field():
    cost_fn = CostFunctionFactory.create({"type": "bhattacharyya"})
    a = merged_fragment("frag-a", 1623877175.0, 50, 100.0, 60.0)
    b = merged_fragment("frag-bad", 1623877175.0 + 2.5, 30, 250.0, 60.0)
    b["y_position"][3] = float("nan")
    with pytest.raises(FragmentError, match="'frag-bad'.*field 'y_position'"):
        cost_fn.compute_cost(a, b, 15, reference_param())


# ---- the public I24-postprocessing-lite pipeline's own cost blocks -----------------------------------------

@pytest.mark.parametrize("block, write, drop", [
    ({"type": "logistic_regression", "model_path": "lr.pkl", "use_logit": True, "logit_offset": 5.0,
      "time_penalty": 0.1}, '{"type": "lr"}', "model_path, use_logit, logit_offset, time_penalty"),
    ({"type": "torch_logistic", "checkpoint_path": "best_accuracy.pth"}, '{"type": "lr"}', "checkpoint_path"),
    ({"type": "tcn", "checkpoint_path": "tcn.pth", "scale_factor": 5.0, "time_penalty": 0.1}, '{"type": "tcn"}',
     "checkpoint_path, scale_factor, time_penalty"),
    ({"type": "siamese", "scale_factor": 5.0}, '{"type": "siamese"}', "scale_factor"),
    ({"type": "transformer", "checkpoint_path": "t.pth", "calibration_path": "cal.json"},
     '{"type": "transformer"}', "checkpoint_path, calibration_path"),
])
def test_public_pipeline_blocks_say_what_to_write_instead(block, write, drop):
    with pytest.raises(ConfigError) as info:
        CostFunctionFactory.create(block)
    message = str(info.value)
    assert "\n" not in message
    assert "I24-postprocessing-lite" in message and f"write {write}" in message
    assert f"remove {drop}" in message
    assert "stitch_thresh" in message  # the exported cost is already on the threshold scale


def test_public_pipeline_types_this_runtime_does_not_serve():
    for kind in ("gate_rank", "hybrid", "pinn", "physics_only", "heteroscedastic"):
        with pytest.raises(ConfigError, match=f"{kind}.*does not serve.*bhattacharyya"):
            CostFunctionFactory.create({"type": kind})
    with pytest.raises(ConfigError, match="time_penalty do not apply to the Bhattacharyya cost"):
        CostFunctionFactory.create({"type": "bhattacharyya", "time_penalty": 0.1})
    with pytest.raises(ConfigError, match="scale_factor do not apply to an exported artifact"):
        CostFunctionFactory.create({"type": "onnx", "artifact": "artifacts/tcn", "scale_factor": 5.0})


def test_unknown_keys_are_an_error_listing_the_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'artefact' in cost_function of type 'tcn'; "
                                          r"valid keys: type, artifact, cache_size"):
        CostFunctionFactory.create({"type": "tcn", "artefact": "artifacts/tcn"})
    with pytest.raises(ConfigError, match="valid keys: type, cache_size"):
        CostFunctionFactory.create({"type": "bhattacharyya", "cx": 0.2})
    assert CostFunctionFactory.valid_keys("MLP") == ("type", "artifact", "cache_size")


def test_shipped_shorthand_resolves_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no artifacts/ here
    for kind in ("lr", "mlp", "siamese", "tcn", "transformer"):
        fn = CostFunctionFactory.create({"type": kind})
        assert fn.kind == kind and os.path.isfile(os.path.join(fn.artifact_dir, "manifest.json"))
    # a parameters file elsewhere that names the shorthand
    (tmp_path / "params.json").write_text(json.dumps({"cost_function": {"type": "tcn"}}))
    assert load_cost_function(str(tmp_path / "params.json")).kind == "tcn"


def test_shorthand_falls_back_to_the_installed_package_data(tmp_path, monkeypatch):
    """An installed wheel has no repository root: the artifacts are runtime/artifacts/<kind>."""
    import runtime.onnx_cost as onnx_cost

    fake_pkg = tmp_path / "site-packages" / "runtime"
    (fake_pkg / "artifacts").mkdir(parents=True)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.symlink(os.path.join(repo, "artifacts", "mlp"), fake_pkg / "artifacts" / "mlp")
    monkeypatch.setattr(onnx_cost, "__file__", str(fake_pkg / "onnx_cost.py"))
    monkeypatch.chdir(tmp_path)
    assert onnx_cost.resolve_artifact("artifacts/mlp") == str(fake_pkg / "artifacts" / "mlp")
    with pytest.raises(ConfigError, match="not found.*looked in"):
        onnx_cost.resolve_artifact("artifacts/none")
