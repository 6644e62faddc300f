"""Both ends of the stitch window, for every cost kind, single and batch.

The cost contract (DESIGN.md): a pair whose gap `track2.t[0] - track1.t[-1]` lies in the closed
interval [0, TIME_WIN] is scored; just outside it costs exactly 1e6. Gaps here are *exact* floats:
0.0, exactly TIME_WIN = 15.0, and the neighbouring doubles outside (one ulp below 0, one ulp above
15). `compute_cost` and `compute_costs` must agree at every one of them, for Bhattacharyya and
every shipped artifact (a `<=` turned into `<` at either end fails here).
"""
from __future__ import annotations

import math
import zlib
import os

import numpy as np
import pytest

from runtime.bhattacharyya import BhattacharyyaCostFunction
from runtime.cost import INVALID_COST
from runtime.onnx_cost import MODEL_KINDS, OnnxCostFunction

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.path.join(REPO, "artifacts")
SHIPPED = [k for k in MODEL_KINDS if os.path.isfile(os.path.join(ARTIFACTS, k, "manifest.json"))]
TIME_WIN = 15.0
START_B = 2000.0  # the later fragment's first timestamp


def _fragment(fid: str, t: np.ndarray, x0: float, lane_y: float = 12.0) -> dict:
    """A vehicle at 60 ft/s eastbound with realistic dimensions, on the given (exact) timestamps."""
    t = np.asarray(t, dtype=float)
    n = t.size
    rng = np.random.default_rng(zlib.crc32(fid.encode()))
    x = x0 + 60.0 * (t - t[0]) + rng.normal(0.0, 0.3, n)
    return {"_id": fid, "direction": 1, "timestamp": t.tolist(), "x_position": x.tolist(),
            "y_position": (lane_y + rng.normal(0.0, 0.1, n)).tolist(), "length": [15.0] * n, "width": [6.0] * n,
            "height": [5.0] * n, "velocity": [60.0] * n, "detection_confidence": [0.9] * n,
            "first_timestamp": float(t[0]), "last_timestamp": float(t[-1]), "starting_x": float(x[0]),
            "ending_x": float(x[-1]), "compute_node_id": 1}


def _earlier(fid: str, t_end: float, n: int = 50) -> dict:
    """n samples at 25 Hz ending *exactly* at t_end (t_end - 0.0 == t_end)."""
    t = t_end - 0.04 * np.arange(n)[::-1]
    assert t[-1] == t_end
    return _fragment(fid, t, x0=1000.0 - 60.0 * (START_B - t[0]))


LATER = _fragment("later", START_B + 0.04 * np.arange(40), x0=1000.0)
# name -> (last timestamp of the earlier fragment, inside the window?)
GAPS = {
    "zero": (START_B, True),
    "time_win": (START_B - TIME_WIN, True),
    "just_negative": (math.nextafter(START_B, math.inf), False),
    "just_above_time_win": (math.nextafter(START_B - TIME_WIN, -math.inf), False),
    "mid": (START_B - 7.5, True),
}


def test_the_gaps_are_exact():
    assert LATER["timestamp"][0] == START_B
    gaps = {name: LATER["timestamp"][0] - _earlier(name, end)["timestamp"][-1] for name, (end, _) in GAPS.items()}
    assert gaps["zero"] == 0.0 and gaps["time_win"] == TIME_WIN and gaps["mid"] == 7.5
    assert gaps["just_negative"] < 0.0 and gaps["just_above_time_win"] > TIME_WIN
    assert gaps["just_above_time_win"] == pytest.approx(TIME_WIN, abs=1e-11)


def _cost(kind: str):
    return BhattacharyyaCostFunction() if kind == "bhattacharyya" else OnnxCostFunction(os.path.join(ARTIFACTS, kind))


@pytest.fixture(scope="module", params=["bhattacharyya", *SHIPPED])
def kind(request):
    return request.param


@pytest.mark.parametrize("gap", list(GAPS))
def test_single_pair_at_the_window_edges(kind, gap):
    end, inside = GAPS[gap]
    a = _earlier(gap, end)
    cost = _cost(kind).compute_cost(a, LATER, TIME_WIN, None)
    if inside:
        assert cost != INVALID_COST and math.isfinite(cost) and cost >= 0.0, (kind, gap, cost)
    else:
        assert cost == INVALID_COST, (kind, gap, cost)


def test_batch_at_the_window_edges_equals_single(kind):
    """One batch call over all five earlier fragments; a fresh cost object per call order."""
    earlier = [_earlier(name, end) for name, (end, _) in GAPS.items()]
    batch = _cost(kind).compute_costs(earlier, LATER, TIME_WIN, None)
    single_fn = _cost(kind)
    single = np.array([single_fn.compute_cost(a, LATER, TIME_WIN, None) for a in earlier])
    inside = np.array([ok for _, ok in GAPS.values()])
    assert (batch[~inside] == INVALID_COST).all(), dict(zip(GAPS, batch))
    assert (batch[inside] != INVALID_COST).all() and np.isfinite(batch[inside]).all(), dict(zip(GAPS, batch))
    np.testing.assert_array_equal(single == INVALID_COST, batch == INVALID_COST)
    np.testing.assert_allclose(batch, single, rtol=1e-6, atol=1e-9)
    # the window edge itself scored like any other pair, in the batch of one too
    (edge,) = _cost(kind).compute_costs([earlier[1]], LATER, TIME_WIN, None)
    assert edge == pytest.approx(single[1], rel=1e-6, abs=1e-9)


def test_a_smaller_window_moves_the_edge(kind):
    """The window is the caller's TIME_WIN, not a constant: at TIME_WIN = 7.5 the 7.5 s gap is in, 15 s out."""
    fn = _cost(kind)
    mid, far = _earlier("mid", GAPS["mid"][0]), _earlier("time_win", GAPS["time_win"][0])
    assert fn.compute_cost(mid, LATER, 7.5, None) != INVALID_COST
    assert fn.compute_cost(far, LATER, 7.5, None) == INVALID_COST
    batch = fn.compute_costs([mid, far], LATER, 7.5, None)
    assert batch[0] != INVALID_COST and batch[1] == INVALID_COST
