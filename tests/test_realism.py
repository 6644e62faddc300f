"""Tests of the realism report (benchmarks/realism.py): the KS distance, npz-style mining, the report
with and without real data. None of them needs ../shared (a fresh clone has no real pairs)."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import realism  # noqa: E402
from runtime.features import FEATURE_NAMES  # noqa: E402
from training.io import gt_id_of  # noqa: E402
from training.simulate import simulate  # noqa: E402


@pytest.fixture(scope="module")
def raw_ii():
    return simulate("ii", 3, duration=20.0)[1]


def test_ks_distance_agrees_with_scipy_ks_2samp():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    cases = [
        (rng.normal(size=50), rng.normal(0.3, 1.2, size=80)),
        (rng.exponential(size=7), rng.exponential(2.0, size=300)),
        (rng.integers(0, 5, size=40).astype(float), rng.integers(0, 6, size=33).astype(float)),   # many ties
        (np.ones(10), np.ones(4)),
        (np.arange(5.0), np.arange(5.0) + 100.0),
    ]
    for a, b in cases:
        assert realism.ks_distance(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
        assert realism.ks_distance(b, a) == pytest.approx(realism.ks_distance(a, b), abs=1e-12)
    assert realism.ks_distance(np.arange(5.0), np.arange(5.0) + 100.0) == 1.0
    assert np.isnan(realism.ks_distance([], [1.0]))
    m1, m2 = rng.normal(size=(30, 3)), rng.normal(size=(45, 3)) + [0.0, 1.0, 3.0]
    cols = realism.ks_columns(m1, m2)
    for j in range(3):
        assert cols[j] == pytest.approx(stats.ks_2samp(m1[:, j], m2[:, j]).statistic, abs=1e-12)
    assert cols[0] < cols[1] < cols[2]


def test_npz_style_mining_respects_the_builder_gates(raw_ii):
    pos, neg = realism.mine_reference_pairs(raw_ii)
    assert len(pos) > 20 and len(neg) == len(pos)
    for i, j in pos:
        a, b = raw_ii[i], raw_ii[j]
        assert i < j and gt_id_of(a) == gt_id_of(b) and a["direction"] == b["direction"]
        assert a["last_timestamp"] < b["first_timestamp"] <= a["last_timestamp"] + realism.POS_MAX_GAP
        assert -50.0 <= realism._builder_spatial_gap(a, b) <= 200.0
        assert abs(np.mean(a["y_position"]) - np.mean(b["y_position"])) <= 5.0
    for i, j in neg:
        a, b = raw_ii[i], raw_ii[j]
        assert i < j and gt_id_of(a) != gt_id_of(b) and a["direction"] == b["direction"]
        assert a["last_timestamp"] < b["first_timestamp"] <= a["last_timestamp"] + realism.NEG_MAX_GAP
    assert len(set(neg)) == len(neg)
    # Westbound uses the builder's (buggy) span A.starting_x - B.ending_x, which grows with both durations.
    wb = {"direction": -1, "starting_x": 1000.0, "ending_x": 900.0}
    wb_b = {"direction": -1, "starting_x": 880.0, "ending_x": 850.0}
    assert realism._builder_spatial_gap(wb, wb_b) == 150.0
    X = realism.pair_matrix(raw_ii, pos[:5])
    assert X.shape == (5, len(FEATURE_NAMES)) and np.isfinite(X).all()
    assert (X[:, FEATURE_NAMES.index("direction_match")] == 1).all()


def test_report_without_the_npz_says_what_it_skipped_and_writes_simulated_quantiles(tmp_path):
    lines = []
    doc = realism.run_report(str(tmp_path / "absent.npz"), ["ii"], [3], 12.0, str(tmp_path / "out"),
                             plots=False, say=lines.append)
    skipped = [line for line in lines if line.startswith("skipped:")]
    assert len(skipped) == 1 and "absent.npz not found" in skipped[0] and "KS" in skipped[0]
    assert doc["summary"] == [] and doc["meta"]["npz"] is None
    pos = doc["scenarios"]["ii"]["pos"]
    assert pos["n_sim"] > 0 and "median_ks" not in pos and "ks" not in pos["features"]["time_gap"]
    q = pos["features"]["time_gap"]["sim_q"]
    assert q == sorted(q) and q[0] > 0
    on_disk = json.loads((tmp_path / "out" / "realism.json").read_text())
    assert on_disk["scenarios"]["ii"]["pos"]["n_sim"] == pos["n_sim"]
    assert "sim p05 / p50 / p95" in (tmp_path / "out" / "realism.md").read_text()


def test_report_with_an_npz_computes_ks_and_draws_the_grid(tmp_path, raw_ii):
    """A stand-in npz resampled from simulated pairs: same distribution, so small KS; a shifted feature is caught."""
    pos, neg = realism.mine_reference_pairs(raw_ii)
    P, N = realism.pair_matrix(raw_ii, pos), realism.pair_matrix(raw_ii, neg)
    rng = np.random.default_rng(1)
    X = np.zeros((2100, len(FEATURE_NAMES)))
    y = np.zeros(2100, dtype=np.int64)
    for lo, mid, hi in realism.NPZ_BLOCKS.values():
        X[lo:mid] = P[rng.integers(0, len(P), mid - lo)]
        X[mid:hi] = N[rng.integers(0, len(N), hi - mid)]
        y[lo:mid] = 1
    X[:, FEATURE_NAMES.index("height_diff")] += 5.0         # one feature made unrealistic
    npz = tmp_path / "pairs.npz"
    np.savez(npz, X=X, y=y, feature_names=np.array(FEATURE_NAMES))
    lines = []
    doc = realism.run_report(str(npz), ["ii"], [3], 20.0, str(tmp_path / "out"), plots=True, say=lines.append)
    assert not any(line.startswith("skipped") for line in lines)
    row = doc["summary"][0]
    assert row["scenario"] == "ii" and row["median_ks_pos"] < 0.15
    assert row["pos_over_0p30"] == {"height_diff": 1.0}
    assert doc["scenarios"]["ii"]["pos"]["worst"][0][0] == "height_diff"
    png = tmp_path / "out" / "realism_ii_pos.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| ii |" in (tmp_path / "out" / "realism.md").read_text()
