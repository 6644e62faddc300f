"""The cost contract's math on synthetic logits: Platt scaling, operating point, scale, softplus floor, ONNX fold."""
from __future__ import annotations

import math

import numpy as np
import pytest

from export.calibration import (
    Calibration,
    CalibrationFitError,
    calibration_graph,
    cost_scale,
    fit_calibration,
    fit_platt,
    fold_calibration,
    operating_point,
    softplus_shift,
    threshold_rates,
)


def _synthetic(n=20000, slope=0.7, offset=-3.0, seed=0):
    """Logits whose true calibration is sigmoid(slope * z + offset): Platt must recover (slope, offset)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=4.0, size=n)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-(slope * z + offset)))).astype(np.int64)
    return z, y


def test_platt_recovers_the_generating_slope_and_offset():
    z, y = _synthetic()
    a, b = fit_platt(z, y)
    assert a == pytest.approx(0.7, abs=0.05)
    assert b == pytest.approx(-3.0, abs=0.15)


def test_platt_matches_unregularised_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    z, y = _synthetic(seed=3)
    a, b = fit_platt(z, y)
    ref = LogisticRegression(C=1e12, max_iter=1000).fit(z[:, None], y)
    # Platt's smoothed targets move the optimum by O(1/N) only
    assert a == pytest.approx(ref.coef_[0, 0], rel=2e-3)
    assert b == pytest.approx(ref.intercept_[0], abs=5e-3)


def test_platt_is_finite_on_separable_data_and_refuses_one_class():
    z = np.r_[np.linspace(-5, -1, 500), np.linspace(1, 5, 20)]
    y = np.r_[np.zeros(500), np.ones(20)].astype(int)
    a, b = fit_platt(z, y)
    assert math.isfinite(a) and math.isfinite(b) and a > 0
    with pytest.raises(CalibrationFitError, match="both classes"):
        fit_platt(z, np.zeros_like(y))
    with pytest.raises(CalibrationFitError, match="non-finite"):
        fit_platt(np.r_[z[:-1], np.nan], y)


def test_an_absurd_outlier_logit_does_not_flatten_the_fit():
    z, y = _synthetic(seed=5)
    clean = fit_calibration(z, y, np.ones_like(z))
    z_bad = z.copy()
    z_bad[np.flatnonzero(y == 0)[:60]] = 1e7  # a cluster of negatives with runaway logits (0.3%)
    cal = fit_calibration(z_bad, y, np.ones_like(z))
    assert cal.a == pytest.approx(clean.a, rel=0.05) and cal.b == pytest.approx(clean.b, abs=0.15)
    assert cal.platt_fit_excluded == 60 and cal.platt_fit_range[1] < 1e7
    assert clean.platt_fit_excluded == 0


def test_fpr_ceiling_takes_the_highest_tpr_within_the_ceiling():
    # 1000 negatives at scores 0..999 (/100), 100 positives spread over the top; FPR 0.5% = 5 negatives
    neg = np.arange(1000) / 100.0
    pos = np.linspace(5.0, 12.0, 100)
    zc = np.r_[neg, pos]
    y = np.r_[np.zeros(1000), np.ones(100)].astype(int)
    op = operating_point(zc, y, "fpr_ceiling", max_fpr=0.005)
    accepted = zc >= op["z_star"]
    assert (accepted & (y == 0)).sum() / 1000 <= 0.005
    assert op["fpr"] == pytest.approx((accepted & (y == 0)).mean() * 1100 / 1000)
    assert op["tpr"] == pytest.approx((accepted & (y == 1)).sum() / 100)
    # one step lower would break the ceiling
    lower = np.sort(zc[zc < op["z_star"]])[-1]
    assert ((zc >= lower) & (y == 0)).sum() / 1000 > 0.005
    assert zc[op["index"]] == op["z_star"]  # z* is a real calibration score, never +inf


@pytest.mark.parametrize("strategy", ["fpr_ceiling", "precision_floor"])
def test_ties_in_tpr_go_to_the_lower_fpr(strategy):
    """The documented rule: among thresholds of equal TPR the one with the lower FPR wins.

    Every positive scores above every negative, so lowering the threshold below the lowest positive
    (8.0) only adds negatives: thresholds 8.0, 5.0, 4.0, 3.0 all have TPR 1 and FPR 0, 0.1, 0.2, 0.3,
    all within a loose ceiling (0.5) and above a loose precision floor (0.5). z* must be the lowest
    positive, never a negative's score.
    """
    pos = np.array([12.0, 11.0, 10.0, 9.0, 8.0])
    neg = np.array([5.0, 4.0, 3.0, -1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0])
    zc = np.r_[neg, pos]
    y = np.r_[np.zeros(neg.size), np.ones(pos.size)].astype(int)
    op = operating_point(zc, y, strategy, max_fpr=0.5, min_precision=0.5)
    assert op["tpr"] == 1.0 and op["fpr"] == 0.0 and op["fp"] == 0, op
    assert op["z_star"] == 8.0 and y[op["index"]] == 1 and zc[op["index"]] == 8.0
    assert op["precision"] == 1.0 and op["constraint_met"]


def test_ties_in_tpr_go_to_the_lower_fpr_with_tied_scores():
    """Tied scores form one threshold; still, of equal TPR, the lower FPR (1 negative at 7.0, not 5 or 6)."""
    zc = np.array([9.0, 9.0, 7.0, 7.0, 6.0, 6.0, 6.0, 6.0, 1.0, 0.0])
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    op = operating_point(zc, y, "fpr_ceiling", max_fpr=0.9)
    assert op["z_star"] == 7.0 and op["tpr"] == 1.0 and op["fp"] == 1


def test_precision_floor():
    z, y = _synthetic(seed=1)
    op = operating_point(z, y, "precision_floor", min_precision=0.9)
    accepted = z >= op["z_star"]
    precision = (accepted & (y == 1)).sum() / accepted.sum()
    assert precision >= 0.9 and op["precision"] == pytest.approx(precision)
    # the next lower threshold must fall below the floor or not raise TPR
    lower = np.sort(z[z < op["z_star"]])[-1]
    acc2 = z >= lower
    assert (acc2 & (y == 1)).sum() / acc2.sum() < 0.9
    with pytest.raises(ValueError, match="unknown strategy"):
        operating_point(z, y, "youden")


def test_cost_scale_formula_and_clipping():
    zc_pos = np.array([4.0, 5.0, 6.0])
    bhat_pos = np.array([0.5, 1.0, 1.5])
    out = cost_scale(zc_pos, bhat_pos, z_star=1.0, T=3.0)
    assert out["s"] == pytest.approx((3.0 - 1.0) / (5.0 - 1.0))
    assert cost_scale(zc_pos, bhat_pos, z_star=4.99)["s"] == 10.0          # huge ratio clipped
    assert cost_scale(zc_pos, bhat_pos + 10, z_star=1.0)["s"] == 0.1       # negative ratio -> lower bound
    assert cost_scale(zc_pos, bhat_pos, z_star=5.0)["s"] == 10.0           # zero denominator


def test_cost_equals_threshold_at_the_operating_point_and_is_monotone_and_non_negative():
    z, y = _synthetic(seed=2)
    bhat = np.where(y == 1, 1.0, 9.0)
    cal = fit_calibration(z, y, bhat)
    assert cal.cost(np.array([cal.logit_at_operating_point()]))[0] == pytest.approx(3.0, abs=1e-12)
    assert cal.cost(z[[cal.operating["index"]]])[0] == pytest.approx(3.0, abs=1e-12)
    grid = np.linspace(-200, 200, 40001)
    cost = cal.cost(grid)
    c = cal.linear_cost(grid)
    assert (cost >= 0).all() and (cost <= cal.ceiling).all()
    inside = (cost > 1e-9) & (cost < cal.ceiling - 1e-9)  # costs resolve to ~1e-14 (ulp of C)
    assert inside.sum() > 1000 and (np.diff(cost)[inside[1:] & inside[:-1]] < 0).all()
    near = (c >= 3.0) & (c <= 50.0)
    assert np.abs(cost - c)[near].max() < 4e-6
    assert np.abs(cost - c)[(c >= 2.0) & (c <= 50.0)].max() < 1e-4
    # edge iff cost <= T is edge iff z' >= z*: the operating point's rates are reproduced exactly
    rates = threshold_rates(cal.cost(z), y, 3.0)
    assert rates["fpr"] == pytest.approx(cal.operating["fpr"])
    assert rates["tpr"] == pytest.approx(cal.operating["tpr"])
    assert rates["expected_false_edges"] == cal.operating["fp"]


def test_the_ceiling_bounds_outliers_and_leaves_the_threshold_region_alone():
    cal = Calibration(a=1.0, b=0.0, z_star=0.0, s=2.0)
    z = np.array([-1e7, -1e3, -45.0, -2.0, 0.0, 0.5, 1e3])
    cost = cal.cost(z)
    assert cost[0] == cal.ceiling and cost[1] == cal.ceiling        # a float32 outlier logit saturates
    assert cost[2] == pytest.approx(93.0 - cal.delta, abs=1e-12)  # c = 93: the ceiling bends it by ~1e-12
    assert cost[3] == pytest.approx(7.0 - cal.delta, abs=1e-12) and cost[4] == pytest.approx(3.0, abs=1e-15)
    assert cost[5] == pytest.approx(2.0, abs=1e-4) and cost[6] == 0.0


def test_softplus_shift_is_exact():
    d = softplus_shift(3.0, 4.0)
    assert 1e-6 < d < 2e-6
    assert math.log1p(math.exp(4.0 * (3.0 - d))) / 4.0 == pytest.approx(3.0, abs=1e-14)


def test_calibration_json_round_trip():
    z, y = _synthetic(seed=4)
    cal = fit_calibration(z, y, np.ones_like(z))
    again = Calibration.from_json(cal.to_json())
    np.testing.assert_array_equal(again.cost(z), cal.cost(z))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_folded_graph_computes_the_same_cost(dtype):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    cal = Calibration(a=0.8, b=-1.5, z_star=2.0, s=1.3)
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    # a logit graph with a dead side branch, which the fold must prune
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["logit"]), helper.make_node("Neg", ["x"], ["unused"])], "logit",
        [helper.make_tensor_value_info("x", elem, ["N"])],
        [helper.make_tensor_value_info("logit", elem, ["N"]), helper.make_tensor_value_info("unused", elem, ["N"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    folded = fold_calibration(model, "logit", cal)
    onnx.checker.check_model(folded, full_check=True)
    assert [o.name for o in folded.graph.output] == ["cost"]
    assert all(n.op_type != "Neg" for n in folded.graph.node)
    z = np.r_[np.linspace(-300, 300, 2001), -1e30, 1e30, cal.logit_at_operating_point()].astype(dtype)
    got = ort.InferenceSession(folded.SerializeToString()).run(["cost"], {"x": z})[0]
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, cal.cost(z.astype(np.float64)), rtol=0, atol=1e-12)
    assert got[-1] == pytest.approx(3.0, abs=1e-6 if dtype == np.float32 else 1e-12)
    assert np.isfinite(got).all() and (got >= 0).all()  # exp underflows to an exact 0 far below T


def test_calibration_graph_names_are_prefixed():
    nodes, inits = calibration_graph(Calibration(a=1, b=0, z_star=0, s=1), "logit")
    assert all(n.name.startswith("calibration/") for n in nodes)
    assert all(i.name.startswith("calibration/") for i in inits)
    assert nodes[-1].output == ["cost"]
