"""The README's drop-in: the reference stitcher's calls, made against this runtime, work unchanged."""
import numpy as np
import pytest

from runtime import INVALID_COST, CostFunctionFactory, FragmentError


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
