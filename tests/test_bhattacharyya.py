"""The Bhattacharyya baseline: REFERENCE.md §2.3 test vectors, an independent re-derivation of §2.1,
the gate, parameters, the factory, the cache, and the batch call's equality with the single call."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import INVALID_COST, ConfigError, FragmentError, load_cost_function
from runtime.bhattacharyya import BhattacharyyaCostFunction, cone_parameters

EPOCH = 1_641_481_246.0  # REC_ii starts around here (REFERENCE.md §7.1)


def _doc(fid, t, x, y, direction=1):
    t = np.asarray(t, dtype=float)
    return {"_id": fid, "timestamp": t.tolist(), "x_position": np.broadcast_to(x, t.shape).tolist(),
            "y_position": np.broadcast_to(y, t.shape).tolist(), "direction": direction}


def _test_vector(case: int):
    """The fragments of TV1-TV6, built exactly as REFERENCE.md §2.3 describes (25 Hz)."""
    n_a, n_b, start = (10, 60, 1.0) if case == 4 else (50, 30, 0.5)
    t_a = 1000.0 + 0.04 * np.arange(n_a)
    t_b = t_a[-1] + start + 0.04 * np.arange(n_b)
    def motion(t):
        return 100.0 + 60.0 * (t - 1000.0)
    a = _doc(f"A{case}", t_a, motion(t_a), 12.0)
    b = _doc(f"B{case}", t_b, motion(t_b), 12.0)
    if case == 2:
        b = _doc("B2", t_b, motion(t_b), 24.0)
    elif case == 3:
        b = _doc("B3", t_b, motion(t_b) + 30.0, 12.0)
    elif case == 5:
        a = _doc("A5", t_a, 2000.0 - 60.0 * (t_a - 1000.0), 80.0, -1)
        b = _doc("B5", t_b, 2000.0 - 60.0 * (t_b - 1000.0), 80.0, -1)
    elif case == 6:
        a = _doc("A6", t_a, 100.0 - 5.0 * (t_a - 1000.0), 12.0)
        b = _doc("B6", t_b, 97.0, 12.0)
    return a, b


TEST_VECTORS = {1: 0.15140110433, 2: 4.65140110433, 3: 5.60726545785, 4: 0.10730023089,
                5: 0.15140110433, 6: 10.89050767410}


@pytest.mark.parametrize("case", sorted(TEST_VECTORS))
def test_reference_vectors(case):
    a, b = _test_vector(case)
    cost_fn = BhattacharyyaCostFunction()
    cost = cost_fn.compute_cost(a, b, 15, None)
    assert cost == pytest.approx(TEST_VECTORS[case], rel=1e-6)
    # The batch call, with the pair among gated-out candidates.
    costs = cost_fn.compute_costs([b, a, a], b, 15, None)
    assert costs[0] == INVALID_COST
    np.testing.assert_allclose(costs[1:], cost, rtol=1e-12)


def _wls(t, z, w):
    """Weighted least squares by an independent route: lstsq on sqrt(w)-scaled rows (min-norm)."""
    sw = np.sqrt(w)
    (a, b), *_ = np.linalg.lstsq(np.column_stack((np.ones_like(t), t)) * sw[:, None], z * sw, rcond=None)
    return a, b


def _reference_cost(doc_a, doc_b, time_win, cx=0.2, mx=0.1, cy=2.0, my=0.1):
    """REFERENCE.md §2.1 step by step, with absolute times shifted by tau0, and §2.2 summed directly."""
    t_a, t_b = np.array(doc_a["timestamp"]), np.array(doc_b["timestamp"])
    tau0 = min(t_a[0], t_b[0])
    t_a, t_b = t_a - tau0, t_b - tau0
    gap = t_b[0] - t_a[-1]
    if gap < 0 or gap > time_win:
        return INVALID_COST
    xa, ya, xb, yb = (np.array(doc[k]) for doc in (doc_a, doc_b) for k in ("x_position", "y_position"))
    n1, n2 = min(len(t_a), 25), min(len(t_b), 25)
    if len(t_a) >= len(t_b):
        ft, fx, fy, w = t_a[-n1:], xa[-n1:], ya[-n1:], np.linspace(1e-6, 1, n1)
        mt, mx_, my_ = t_b[:n2], xb[:n2], yb[:n2]
        apex, sign, direction = ft[-1], 1.0, doc_a["direction"]
    else:
        ft, fx, fy, w = t_b[:n2], xb[:n2], yb[:n2], np.linspace(1, 1e-6, n2)
        mt, mx_, my_ = t_a[-n1:], xa[-n1:], ya[-n1:]
        apex, sign, direction = t_b[0], -1.0, doc_b["direction"]
    ax, bx = _wls(ft, fx, w)
    ay, by = _wls(ft, fy, w)
    tau = (mt - apex) * sign
    slope, intercept = (0.0, (w @ fx) / w.sum()) if bx * direction < 0 else (bx, ax)
    mu1 = np.concatenate((slope * mt + intercept, by * mt + ay))
    mu2 = np.concatenate((mx_, my_))
    sig_x = cx + mx * tau * abs(bx)
    sig_y = cy + my * tau * abs(by)
    var1 = np.concatenate((sig_x ** 2, sig_y ** 2))
    var2 = np.concatenate((np.full(len(mt), sig_x[0] ** 2), np.full(len(mt), max(np.var(my_), cy ** 2))))
    s = (var1 + var2) / 2
    d = np.sum((mu1 - mu2) ** 2 / (8 * s) + 0.5 * (np.log(s) - 0.5 * np.log(var1) - 0.5 * np.log(var2)))
    return d / len(mt) + 0.1 * gap


@st.composite
def fragment_doc(draw, fid, start):
    """A fragment like the I-24 tracker's: 1-60 samples at 10-30 Hz with jitter, moving, crawling,
    stationary or frozen (identical positions), eastbound or westbound."""
    n = draw(st.integers(1, 60))
    direction = draw(st.sampled_from([1, -1]))
    kind = draw(st.sampled_from(["moving", "moving", "crawling", "stationary", "frozen"]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    dt = draw(st.sampled_from([0.04, 1 / 30, 0.1]))
    t = EPOCH + start + np.cumsum(np.r_[0.0, dt * rng.uniform(0.5, 1.5, n - 1)])
    speed = {"moving": rng.uniform(20, 140), "crawling": rng.uniform(0, 3)}.get(kind, 0.0)
    noise = 0.0 if kind == "frozen" else rng.uniform(0, 1.0)
    x = 1000 + direction * speed * (t - t[0]) + rng.normal(0, noise, n)
    y = rng.uniform(0, 120) + rng.normal(0, noise / 3, n)
    return _doc(fid, t, x, y, direction)


@st.composite
def candidate_set(draw):
    """One new fragment B and 1-6 earlier candidates with gaps from -2 s to 20 s."""
    k = draw(st.integers(1, 6))
    b = draw(fragment_doc("B", 30.0))
    candidates = []
    for i in range(k):
        a = draw(fragment_doc(f"A{i}", 0.0))
        shift = b["timestamp"][0] - a["timestamp"][-1] - draw(st.floats(-2.0, 20.0))
        a["timestamp"] = (np.array(a["timestamp"]) + shift).tolist()
        candidates.append(a)
    return candidates, b


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(candidate_set(), st.sampled_from([None, {"cx": 0.5, "mx": 0.3, "cy": 1.0, "my": 0.0}]))
def test_costs_finite_or_invalid_and_batch_equals_single(pairs, param):
    candidates, b = pairs
    cost_fn = BhattacharyyaCostFunction(cache_size=16)
    single = np.array([cost_fn.compute_cost(a, b, 15.0, param) for a in candidates])
    batch = cost_fn.compute_costs(candidates, b, 15.0, param)
    assert not np.isnan(single).any()
    assert ((np.isfinite(single) & (single >= 0)) | (single == INVALID_COST)).all()
    np.testing.assert_array_equal(single == INVALID_COST, batch == INVALID_COST)
    np.testing.assert_allclose(batch, single, rtol=1e-12, atol=1e-14)
    cone = cone_parameters(param)
    reference = np.array([_reference_cost(a, b, 15.0, *cone) for a in candidates])
    np.testing.assert_allclose(single, reference, rtol=1e-8, atol=1e-10)


def test_gate_is_exact_and_first():
    a, b = _test_vector(1)
    cost_fn = BhattacharyyaCostFunction()
    assert cost_fn.compute_cost(b, a, 15, None) == INVALID_COST  # negative gap
    assert cost_fn.compute_cost(a, b, 0.4, None) == INVALID_COST  # gap 0.5 > TIME_WIN
    # Gated pairs cost no validation: a corrupt fragment outside the window is never looked at.
    broken = dict(b, y_position=[float("nan")] * 30)
    assert cost_fn.compute_cost(a, broken, 0.4, None) == INVALID_COST
    assert len(cost_fn.cache) == 0
    with pytest.raises(FragmentError) as err:
        cost_fn.compute_cost(a, broken, 15, None)
    assert err.value.field == "y_position" and err.value.fragment_id == "B1"


def test_gap_zero_is_allowed():
    t = 1000.0 + 0.04 * np.arange(20)
    a = _doc("a", t, 100 + 60 * (t - 1000), 12.0)
    b = _doc("b", t + t[-1] - t[0], 100 + 60 * (t + t[-1] - t[0] - 1000), 12.0)
    cost = BhattacharyyaCostFunction().compute_cost(a, b, 15, None)
    assert cost != INVALID_COST and cost == pytest.approx(_reference_cost(a, b, 15), rel=1e-9)


def test_gap_exactly_time_win_is_allowed_and_one_ulp_more_is_not():
    """The window is closed at both ends, in compute_cost and compute_costs alike (tests/test_gap_boundaries.py
    covers every cost kind)."""
    t = 1000.0 + 0.04 * np.arange(20)
    b = _doc("b", t - t[0] + 1015.0, 100 + 60 * (t - 1000), 12.0)
    ends = {"at": 1000.0, "beyond": math.nextafter(1000.0, -math.inf)}
    docs = {k: _doc(k, t - t[-1] + end, 100 + 60 * (t - t[-1] + end - 1000), 12.0) for k, end in ends.items()}
    assert b["timestamp"][0] - docs["at"]["timestamp"][-1] == 15.0
    fn = BhattacharyyaCostFunction()
    at = fn.compute_cost(docs["at"], b, 15.0, None)
    assert at != INVALID_COST and at == pytest.approx(_reference_cost(docs["at"], b, 15), rel=1e-9)
    assert fn.compute_cost(docs["beyond"], b, 15.0, None) == INVALID_COST
    batch = BhattacharyyaCostFunction().compute_costs([docs["at"], docs["beyond"]], b, 15.0, None)
    assert batch[0] == pytest.approx(at, rel=1e-12) and batch[1] == INVALID_COST


def test_identical_timestamps_rejected_naming_the_field():
    a, b = _test_vector(1)
    b["timestamp"][3] = b["timestamp"][2]
    cost_fn = BhattacharyyaCostFunction()
    with pytest.raises(FragmentError) as err:
        cost_fn.compute_cost(a, b, 15, None)
    assert err.value.field == "timestamp" and err.value.fragment_id == "B1"
    with pytest.raises(FragmentError, match="'B1'.*timestamp"):
        cost_fn.compute_costs([a], b, 15, None)


def test_parameters_from_stitcher_args_or_parameters_dict():
    a, b = _test_vector(3)
    cost_fn = BhattacharyyaCostFunction()
    args = {"cx": 0.3, "mx": 0.2, "cy": 1.5, "my": 0.05, "stitch_thresh": 3}
    flat = cost_fn.compute_cost(a, b, 15, args)
    nested = cost_fn.compute_cost(a, b, 15, {"time_win": 15, "stitcher_args": args})
    assert flat == nested == pytest.approx(_reference_cost(a, b, 15, 0.3, 0.2, 1.5, 0.05), rel=1e-9)
    assert flat != cost_fn.compute_cost(a, b, 15, None)
    assert cost_fn.compute_cost(a, b, 15, {}) == cost_fn.compute_cost(a, b, 15, None)
    with pytest.raises(ConfigError, match="cx"):
        cost_fn.compute_cost(a, b, 15, {"cx": "wide"})
    with pytest.raises(ConfigError, match="positive"):
        cost_fn.compute_cost(a, b, 15, {"cy": 0})


def test_factory_builds_it():
    cost_fn = load_cost_function({"type": "bhattacharyya", "cache_size": 8})
    assert isinstance(cost_fn, BhattacharyyaCostFunction)
    assert cost_fn.describe() == {"type": "bhattacharyya", "cache_size": 8}
    assert isinstance(load_cost_function(None), BhattacharyyaCostFunction)
    with pytest.raises(ConfigError, match="cache_size"):
        load_cost_function({"type": "bhattacharyya", "cache_size": 0})


def test_non_finite_result_is_invalid():
    # Positions so large that the cost overflows: no edge, never NaN or inf.
    t = 1000.0 + 0.04 * np.arange(10)
    a = _doc("a", t, 1e300 * (t - 999.0), 12.0)
    b = _doc("b", t + 1.0, -1e300 * (t - 999.0), 12.0)
    cost_fn = BhattacharyyaCostFunction()
    assert cost_fn.compute_cost(a, b, 15, None) == INVALID_COST
    assert cost_fn.compute_costs([a], b, 15, None).tolist() == [INVALID_COST]


def test_cache_new_entry_when_a_fragment_grows_and_lru_bound():
    t = EPOCH + 0.04 * np.arange(40)
    x = 100 + 60 * (t - EPOCH)
    b = _doc("b", t + 2.0, 100 + 60 * (t + 2.0 - EPOCH), 12.0)
    cost_fn = BhattacharyyaCostFunction(cache_size=3)
    short = _doc("a", t[:20], x[:20], 12.0)
    grown = _doc("a", t, x, 12.0)  # same _id, more samples
    first = cost_fn.compute_cost(short, b, 15, None)
    second = cost_fn.compute_cost(grown, b, 15, None)
    assert cost_fn.cache.misses == 3 and len(cost_fn.cache) == 3
    assert first != second
    assert second == pytest.approx(_reference_cost(grown, b, 15), rel=1e-9)
    for i in range(5):
        cost_fn.compute_cost(_doc(f"c{i}", t, x, 12.0), b, 15, None)
    assert len(cost_fn.cache) == 3
    assert cost_fn.compute_costs([], b, 15, None).shape == (0,)
    # A batch larger than the cache: every candidate is scored, the cache stays bounded.
    many = [_doc(f"d{i}", t[: 10 + i], x[: 10 + i], 12.0) for i in range(6)]
    batch = cost_fn.compute_costs(many, b, 15, None)
    assert len(cost_fn.cache) == 3
    np.testing.assert_allclose(batch, [_reference_cost(a, b, 15) for a in many], rtol=1e-9)
