"""runtime.resample: the exact 25 Hz grid shared by training and pp_lite."""
from __future__ import annotations

import json

import numpy as np
import pytest

from runtime.fragment import Fragment
from runtime.resample import needs_resample, resample_document

T0 = 1_623_877_175.0  # scenario i epoch, on the 0.04 s grid


def _doc(t, **extra):
    t = np.asarray(t, dtype=float)
    doc = {
        "_id": {"$oid": "frag-a"},
        "timestamp": t.tolist(),
        "x_position": (100.0 + 90.0 * (t - t[0])).tolist(),
        "y_position": (12.0 + 0.5 * (t - t[0])).tolist(),
        "length": (15.0 + 0.0 * t).tolist(),
        "width": 6.0,
        "height": (5.0 + 0.1 * np.arange(t.size)).tolist(),
        "velocity": (90.0 + 0.0 * t).tolist(),
        "detection_confidence": np.linspace(0.5, 1.0, t.size).tolist(),
        "direction": 1,
        "gt_ids": [[{"$oid": "veh-1"}]],
        "compute_node_id": 3,
        "first_timestamp": float(t[0]),
        "last_timestamp": float(t[-1]),
        "starting_x": 100.0,
        "ending_x": 100.0 + 90.0 * float(t[-1] - t[0]),
    }
    doc.update(extra)
    return doc


def _on_grid(ts, hz=25.0):
    k = np.rint(np.asarray(ts) * hz)
    return np.allclose(k / hz, ts, atol=1e-6, rtol=0) and (np.diff(k) == 1).all()


def test_30hz_fragment_is_resampled_onto_absolute_grid():
    t = T0 + 0.013 + np.arange(61) / 30.0  # 2 s at 30 Hz, off-grid start
    doc = _doc(t)
    assert needs_resample(doc)
    out = resample_document(doc)
    ts = np.asarray(out["timestamp"])
    assert _on_grid(ts)
    assert ts[0] >= t[0] - 1e-3 and ts[-1] <= t[-1] + 1e-3
    assert ts[0] - t[0] < 0.04 and t[-1] - ts[-1] < 0.04  # the grid covers the whole span
    # linear fields are reproduced exactly by linear interpolation
    np.testing.assert_allclose(out["x_position"], 100.0 + 90.0 * (ts - t[0]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(out["y_position"], 12.0 + 0.5 * (ts - t[0]), rtol=0, atol=1e-9)
    np.testing.assert_allclose(out["detection_confidence"], np.interp(ts, t, doc["detection_confidence"]))
    assert out["width"] == 6.0  # scalar kept
    assert len(out["length"]) == len(out["height"]) == len(out["velocity"]) == ts.size
    assert out["first_timestamp"] == ts[0] and out["last_timestamp"] == ts[-1]
    assert out["starting_x"] == out["x_position"][0] and out["ending_x"] == out["x_position"][-1]
    # everything else copied, not shared
    assert out["gt_ids"] == doc["gt_ids"] and out["gt_ids"] is not doc["gt_ids"]
    assert out["_id"] == {"$oid": "frag-a"} and out["compute_node_id"] == 3
    json.dumps(out)
    Fragment.from_document(out)
    assert not needs_resample(out)


def test_grid_fragment_needs_no_resample_and_is_unchanged():
    t = T0 + 0.04 * np.arange(50)
    doc = _doc(t)
    assert not needs_resample(doc)
    out = resample_document(doc)
    np.testing.assert_allclose(out["timestamp"], t, rtol=0, atol=1e-6)
    np.testing.assert_allclose(out["x_position"], doc["x_position"], rtol=0, atol=1e-6)


def test_sub_millisecond_jitter_is_on_grid_but_missing_samples_are_not():
    t = T0 + 0.04 * np.arange(20)
    jitter = t + np.where(np.arange(20) % 2, 4e-4, -4e-4)
    assert not needs_resample(_doc(jitter))
    assert needs_resample(_doc(t + 2e-3))
    gappy = np.delete(t, [5, 6, 7])
    assert needs_resample(_doc(gappy))
    out = resample_document(_doc(gappy))
    np.testing.assert_allclose(out["timestamp"], t, rtol=0, atol=1e-6)


def test_too_short_fragment_keeps_nearest_grid_point():
    t = T0 + np.array([0.005, 0.015, 0.030])  # no grid point strictly inside [t0, t1]
    out = resample_document(_doc(t))
    assert len(out["timestamp"]) == 1
    assert out["timestamp"][0] == pytest.approx(T0, abs=1e-6)  # midpoint T0+0.0175 is nearest to T0
    assert len(out["x_position"]) == 1 and out["first_timestamp"] == out["last_timestamp"]
    Fragment.from_document(out)


def test_mismatched_optional_arrays_are_dropped_and_other_mismatch_raises():
    t = T0 + 0.01 + np.arange(10) / 30.0
    doc = _doc(t, velocity=[1.0, 2.0], detection_confidence=[0.9])
    out = resample_document(doc)
    assert "velocity" not in out and "detection_confidence" not in out
    with pytest.raises(ValueError, match="length"):
        resample_document(_doc(t, length=[1.0, 2.0]))


def test_westbound_and_epoch_precision():
    t = 1_641_481_246.0 + 0.02 + np.arange(300) / 29.97
    doc = _doc(t, direction=-1)
    doc["x_position"] = (2000.0 - 40.0 * (t - t[0])).tolist()
    out = resample_document(doc)
    ts = np.asarray(out["timestamp"])
    assert _on_grid(ts)
    np.testing.assert_allclose(out["x_position"], 2000.0 - 40.0 * (ts - t[0]), atol=1e-5)
    assert out["direction"] == -1
