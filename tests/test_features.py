"""Engineered features: the REFERENCE.md §1.7 vector (v1), a literal re-derivation of both schemas from
their definitions, v2's corrections (mirror symmetry, gap sign, time windows, defaults), finiteness,
batch == stacked pair, names and hashes, validation and the cache."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import FragmentError
from runtime.features import (
    FEATURE_NAMES,
    INPUT_FIELDS,
    SCHEMA_V3,
    TRACKER_FIELDS,
    SCHEMA_V1,
    SCHEMA_V2,
    SCHEMAS,
    FeatureExtractor,
    pair_features,
    schema_hash,
)

EPOCH = 1_623_877_175.0  # GT_i starts around here (REFERENCE.md §7.1)
SCHEMA_LIST = [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3]

# REFERENCE.md §1.7: the fixture pair of the reference extractor's tests, eastbound.
VECTOR_A = {"_id": "A", "timestamp": [0, 0.04, 0.08, 0.12, 0.16], "x_position": [100, 102, 104, 106, 108],
            "y_position": [20, 20.5, 21, 20.5, 20], "velocity": [50] * 5, "length": 4.5, "width": 2.0,
            "height": 1.5, "detection_confidence": [0.95] * 5, "direction": 1, "first_timestamp": 0,
            "last_timestamp": 0.16, "starting_x": 100, "ending_x": 108}
VECTOR_B = {"_id": "B", "timestamp": [0.2, 0.24, 0.28], "x_position": [110, 112, 114], "y_position": [20, 20, 20],
            "velocity": [50] * 3, "length": 4.5, "width": 2.0, "height": 1.5, "detection_confidence": [0.95] * 3,
            "direction": 1, "first_timestamp": 0.2, "last_timestamp": 0.28, "starting_x": 110, "ending_x": 114}
# The reference extractor's float32 output printed as float64, in column order.
VECTOR_FEATURES = {
    "time_gap": 0.03999999910593033, "duration_a": 0.1599999964237213, "duration_b": 0.07999999821186066,
    "duration_ratio": 1.9999749660491943, "spatial_gap": 2.0, "y_mean_a": 20.399999618530273, "y_mean_b": 20.0,
    "y_diff": 0.4000000059604645, "y_std_a": 0.37416574358940125, "y_std_b": 0.0, "vel_a_mean": 50.0,
    "vel_b_mean": 50.0, "vel_diff": 0.0, "vel_ratio": 1.0, "length_a": 4.5, "length_b": 4.5, "length_diff": 0.0,
    "width_a": 2.0, "width_b": 2.0, "width_diff": 0.0, "height_a": 1.5, "height_b": 1.5, "height_diff": 0.0,
    "conf_a_mean": 0.949999988079071, "conf_b_mean": 0.949999988079071, "conf_a_min": 0.949999988079071,
    "conf_b_min": 0.949999988079071, "direction_match": 1.0, "projection_error_x_mean": 2.842170943040401e-14,
    "projection_error_x_std": 0.0, "projection_error_x_max": 2.842170943040401e-14,
    "projection_error_y_mean": 0.4999952018260956, "projection_error_y_std": 0.24494750797748566,
    "projection_error_y_max": 0.7999933958053589, "bhattacharyya_distance": 3.445585250854492,
    "bhattacharyya_coeff": 0.03188609331846237, "velocity_fit_x": 50.0, "velocity_fit_y": -7.499955177307129,
    "velocity_actual_x_mean": 49.998748779296875, "velocity_actual_y_mean": 0.0,
    "velocity_mismatch_x": 0.0012499687727540731, "velocity_mismatch_y": 7.499955177307129,
    "curvature_a_mean": 0.04782687500119209, "curvature_a_std": 0.046262893825769424, "curvature_b_mean": 0.0,
    "curvature_b_std": 0.0, "curvature_diff": 0.04782687500119209,
}


def test_reference_feature_vector_v1():
    assert tuple(VECTOR_FEATURES) == FEATURE_NAMES
    got = FeatureExtractor(SCHEMA_V1).pair(VECTOR_A, VECTOR_B)
    assert got.dtype == np.float64 and got.shape == (47,)
    np.testing.assert_allclose(got, list(VECTOR_FEATURES.values()), rtol=1e-5, atol=1e-6)


def test_reference_feature_vector_v2_differs_only_where_corrected():
    v1 = FeatureExtractor(SCHEMA_V1).pair(VECTOR_A, VECTOR_B)
    v2 = FeatureExtractor(SCHEMA_V2).pair(VECTOR_A, VECTOR_B)
    # At 25 Hz, eastbound, all fields present and consistent: only curvature is computed differently,
    # and geometric curvature does not depend on the parameterisation (index or time), so away
    # from the guards (+1e-6 in v1, the 1 ft/s floor in v2) the values agree.
    same = [FEATURE_NAMES.index(n) for n in FEATURE_NAMES if not n.startswith("curvature") and n != "vel_ratio"]
    np.testing.assert_allclose(v2[same], v1[same], rtol=1e-12, atol=1e-12)
    assert v2[FEATURE_NAMES.index("vel_ratio")] == 1.0  # 50 / 50 exactly: v2 has no +1e-6
    curvature = [FEATURE_NAMES.index(n) for n in FEATURE_NAMES if n.startswith("curvature")]
    np.testing.assert_allclose(v2[curvature], v1[curvature], rtol=1e-6, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# A literal re-derivation of both schemas from REFERENCE.md §1.2-§1.4 and FEATURES.md §1.

def _field(doc, name, default):
    value = doc.get(name)
    return default if value is None else value


def _per_sample(doc, name, n):
    value = doc.get(name)
    if value is None or np.ndim(value) == 0:
        return None
    value = np.asarray(value, dtype=float)
    return value if len(value) == n else None


def _wls(t, z, w):
    sw = np.sqrt(w)
    (a, b), *_ = np.linalg.lstsq(np.column_stack((np.ones_like(t), t)) * sw[:, None], z * sw, rcond=None)
    return a, b


def _curvature(x, y, t, v2):
    if len(x) < 3:
        return 0.0, 0.0
    if v2:
        dx, dy = np.gradient(x, t), np.gradient(y, t)
        ddx, ddy = np.gradient(dx, t), np.gradient(dy, t)
        k = np.abs(dx * ddy - dy * ddx) / np.maximum(np.hypot(dx, dy), 1.0) ** 3
    else:
        dx, dy = np.gradient(x), np.gradient(y)
        ddx, ddy = np.gradient(dx), np.gradient(dy)
        k = np.abs(dx * ddy - dy * ddx) / ((dx ** 2 + dy ** 2) ** 1.5 + 1e-6)
    return k.mean(), k.std()


def _reference(doc_a, doc_b, v2):
    f = {}
    ta, tb = np.array(doc_a["timestamp"], float), np.array(doc_b["timestamp"], float)
    xa, ya = np.array(doc_a["x_position"], float), np.array(doc_a["y_position"], float)
    xb, yb = np.array(doc_b["x_position"], float), np.array(doc_b["y_position"], float)
    na, nb = len(ta), len(tb)
    da, db = doc_a["direction"], doc_b["direction"]
    if v2:
        a0, a1, b0, b1 = ta[0], ta[-1], tb[0], tb[-1]
        sxa, exa, sxb, exb = xa[0], xa[-1], xb[0], xb[-1]
    else:
        a0, a1 = _field(doc_a, "first_timestamp", ta[0]), _field(doc_a, "last_timestamp", ta[-1])
        b0, b1 = _field(doc_b, "first_timestamp", tb[0]), _field(doc_b, "last_timestamp", tb[-1])
        sxa, exa = _field(doc_a, "starting_x", xa[0]), _field(doc_a, "ending_x", xa[-1])
        sxb, exb = _field(doc_b, "starting_x", xb[0]), _field(doc_b, "ending_x", xb[-1])
    f["time_gap"] = b0 - a1
    f["duration_a"], f["duration_b"] = a1 - a0, b1 - b0
    f["duration_ratio"] = f["duration_a"] / (f["duration_b"] + 1e-6)
    if v2:
        f["spatial_gap"] = da * (sxb - exa)
    else:
        f["spatial_gap"] = sxb - exa if da == 1 else sxa - exb
    f["y_mean_a"], f["y_mean_b"] = ya.mean(), yb.mean()
    f["y_diff"] = abs(f["y_mean_b"] - f["y_mean_a"])
    f["y_std_a"], f["y_std_b"] = ya.std(), yb.std()

    va, vb = _per_sample(doc_a, "velocity", na), _per_sample(doc_b, "velocity", nb)
    if v2:
        va = va if va is not None else (np.abs(np.gradient(xa, ta)) if na > 1 else np.zeros(1))
        vb = vb if vb is not None else (np.abs(np.gradient(xb, tb)) if nb > 1 else np.zeros(1))
    if va is not None and vb is not None:
        f["vel_a_mean"], f["vel_b_mean"] = va.mean(), vb.mean()
        f["vel_diff"] = abs(va[-1] - vb[0])
        # v2 floors the denominator's magnitude at 1 ft/s (a stopped B must not blow the ratio up)
        f["vel_ratio"] = va[-1] / (np.copysign(max(abs(vb[0]), 1.0), vb[0]) if v2 else vb[0] + 1e-6)
    else:
        f["vel_a_mean"] = f["vel_b_mean"] = f["vel_diff"] = 0.0
        f["vel_ratio"] = 1.0
    for dim in ("length", "width", "height"):
        ma, mb = (np.mean(d[dim]) if d.get(dim) is not None else None for d in (doc_a, doc_b))
        if dim == "height" and not v2 and (ma is None or mb is None):
            ma = mb = None
        ma, mb = ma or 0.0, mb or 0.0
        f[f"{dim}_a"], f[f"{dim}_b"], f[f"{dim}_diff"] = ma, mb, abs(ma - mb)
    ca, cb = _per_sample(doc_a, "detection_confidence", na), _per_sample(doc_b, "detection_confidence", nb)
    if not v2 and (ca is None or cb is None):
        ca = cb = None
    f["conf_a_mean"], f["conf_a_min"] = (1.0, 1.0) if ca is None else (ca.mean(), ca.min())
    f["conf_b_mean"], f["conf_b_min"] = (1.0, 1.0) if cb is None else (cb.mean(), cb.min())
    f["direction_match"] = float(da == db)

    tau0 = min(ta[0], tb[0])
    sa, sb = ta - tau0, tb - tau0
    if v2:
        m_a = int(np.sum(ta - ta[-1] >= -1.0 + 1e-3))
        m_b = int(np.sum(tb - tb[0] <= 1.0 - 1e-3))
    else:
        m_a, m_b = min(na, 25), min(nb, 25)
    w = np.linspace(1e-6, 1, m_a)
    ax, bx = _wls(sa[-m_a:], xa[-m_a:], w)
    ay, by = _wls(sa[-m_a:], ya[-m_a:], w)
    px, py = bx * sb[:m_b] + ax, by * sb[:m_b] + ay
    ex, ey = xb[:m_b] - px, yb[:m_b] - py
    f["projection_error_x_mean"] = ex.mean() * (da if v2 else 1)
    f["projection_error_x_std"], f["projection_error_x_max"] = ex.std(), np.abs(ex).max()
    f["projection_error_y_mean"], f["projection_error_y_std"] = ey.mean(), ey.std()
    f["projection_error_y_max"] = np.abs(ey).max()
    s1 = np.array([px.var() + 1e-6, py.var() + 1e-6])
    s2 = np.array([xb[:m_b].var() + 1e-6, yb[:m_b].var() + 1e-6])
    s = (s1 + s2) / 2
    dmu = np.array([px.mean() - xb[:m_b].mean(), py.mean() - yb[:m_b].mean()])
    d = 0.125 * np.sum(dmu ** 2 / s) + 0.5 * np.log(np.prod(s) / np.sqrt(np.prod(s1) * np.prod(s2)))
    if not np.isfinite(d) or d < -999:
        d = 999.0
    if v2:
        d = min(max(d, 0.0), 999.0)
    f["bhattacharyya_distance"] = d
    f["bhattacharyya_coeff"] = math.exp(-d) if d < 100 else 0.0
    f["velocity_fit_x"], f["velocity_fit_y"] = bx * (da if v2 else 1), by
    if nb > 1:
        k = min(m_b, nb - 1)
        vx = (np.diff(xb) / (np.diff(tb) + 1e-6))[:k].mean() * (db if v2 else 1)
        vy = (np.diff(yb) / (np.diff(tb) + 1e-6))[:k].mean()
        f["velocity_actual_x_mean"], f["velocity_actual_y_mean"] = vx, vy
        f["velocity_mismatch_x"] = abs(f["velocity_fit_x"] - vx)
        f["velocity_mismatch_y"] = abs(by - vy)
    else:
        for axis in ("x", "y"):
            f[f"velocity_actual_{axis}_mean"] = f[f"velocity_mismatch_{axis}"] = 0.0
    f["curvature_a_mean"], f["curvature_a_std"] = _curvature(xa, ya, ta - ta[0], v2)
    f["curvature_b_mean"], f["curvature_b_std"] = _curvature(xb, yb, tb - tb[0], v2)
    f["curvature_diff"] = abs(f["curvature_a_mean"] - f["curvature_b_mean"])
    return np.array([f[n] for n in FEATURE_NAMES], dtype=float)


# ------------------------------------------------------------------------------------------------
# Fragments like the I-24 tracker's, with every optional field present, absent or inconsistent.

@st.composite
def fragment_doc(draw, fid, start, n_min=1):
    n = draw(st.integers(n_min, 70))
    direction = draw(st.sampled_from([1, -1]))
    kind = draw(st.sampled_from(["moving", "moving", "crawling", "stationary", "frozen"]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    dt = draw(st.sampled_from([0.04, 0.04, 1 / 30, 0.1, 0.02]))
    t = EPOCH + start + np.cumsum(np.r_[0.0, dt * rng.uniform(0.7, 1.3, n - 1)])
    speed = {"moving": rng.uniform(20, 140), "crawling": rng.uniform(0, 3)}.get(kind, 0.0)
    noise = 0.0 if kind == "frozen" else rng.uniform(0, 1.0)
    x = 1000 + direction * speed * (t - t[0]) + rng.normal(0, noise, n)
    y = rng.uniform(0, 120) + rng.normal(0, noise / 3, n)
    doc = {"_id": fid, "timestamp": t.tolist(), "x_position": x.tolist(), "y_position": y.tolist(),
           "direction": direction}
    velocity = draw(st.sampled_from(["array", "absent", "mismatched"]))
    if velocity == "array":
        doc["velocity"] = (speed + rng.normal(0, 1, n)).tolist()
    elif velocity == "mismatched":
        doc["velocity"] = [speed] * (n + 3)
    if draw(st.booleans()):
        doc["detection_confidence"] = rng.uniform(0.2, 1.0, n).tolist()
    for dim, size in (("length", 15.0), ("width", 6.0), ("height", 5.0)):
        form = draw(st.sampled_from(["scalar", "array", "absent"]))
        if form == "scalar":
            doc[dim] = size
        elif form == "array":
            doc[dim] = (size + rng.uniform(0, 1, n)).tolist()
    if draw(st.booleans()):
        # The scalar fields, sometimes stale (v1 reads them, v2 never does).
        stale = draw(st.sampled_from([0.0, 0.5]))
        doc.update(first_timestamp=t[0] - stale, last_timestamp=t[-1], starting_x=x[0] + stale, ending_x=x[-1])
    return doc


@st.composite
def candidate_set(draw, n_min=1):
    k = draw(st.integers(1, 5))
    b = draw(fragment_doc("B", 30.0, n_min))
    candidates = []
    for i in range(k):
        a = draw(fragment_doc(f"A{i}", 0.0, n_min))
        shift = b["timestamp"][0] - a["timestamp"][-1] - draw(st.floats(-3.0, 15.0))
        a["timestamp"] = (np.array(a["timestamp"]) + shift).tolist()
        for key in ("first_timestamp", "last_timestamp"):
            if key in a:
                a[key] += shift
        candidates.append(a)
    return candidates, b


FAST = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(candidate_set(), st.sampled_from(SCHEMA_LIST))
def test_features_match_the_definitions_and_batch_equals_pairs(pairs, schema):
    candidates, b = pairs
    extractor = FeatureExtractor(schema, cache_size=8)
    rows = np.stack([extractor.pair(a, b) for a in candidates])
    assert np.isfinite(rows).all()
    batch = extractor.batch(candidates, b)
    np.testing.assert_allclose(batch, rows, rtol=1e-12, atol=1e-12)
    if schema == SCHEMA_V3:  # v2's definitions on documents without the tracker-specific fields
        candidates, b = [_without_tracker_fields(a) for a in candidates], _without_tracker_fields(b)
    reference = np.stack([_reference(a, b, schema != SCHEMA_V1) for a in candidates])
    np.testing.assert_allclose(rows, reference, rtol=1e-7, atol=1e-7)


@FAST
@given(candidate_set(), st.sampled_from(SCHEMA_LIST))
def test_features_finite_for_tiny_fragments(pairs, schema):
    # 1-3 samples, stationary and frozen vehicles included by the strategy's mix.
    candidates, b = pairs
    small = [dict(a, timestamp=a["timestamp"][-3:], x_position=a["x_position"][-3:],
                  y_position=a["y_position"][-3:]) for a in candidates]
    for doc in small:
        for key in ("velocity", "detection_confidence", "length", "width", "height"):
            if isinstance(doc.get(key), list):
                doc[key] = doc[key][-3:]
    extractor = FeatureExtractor(schema)
    rows = extractor.batch(small, b)
    assert np.isfinite(rows).all()
    np.testing.assert_allclose(rows, np.stack([extractor.pair(a, b) for a in small]), rtol=1e-12, atol=1e-12)


def _mirror(doc, fid):
    """The same fragment driven westbound: x reflected, direction -1, speeds unchanged."""
    out = dict(doc, _id=fid, direction=-doc["direction"])
    out["x_position"] = (2500.0 - np.array(doc["x_position"])).tolist()
    for key in ("starting_x", "ending_x"):
        if key in doc:
            out[key] = 2500.0 - doc[key]
    return out


@FAST
@given(candidate_set(n_min=2))
def test_v2_mirror_symmetry(pairs):
    candidates, b = pairs
    extractor = FeatureExtractor(SCHEMA_V2)
    original = extractor.batch(candidates, b)
    mirrored = extractor.batch([_mirror(a, a["_id"] + "m") for a in candidates], _mirror(b, "Bm"))
    np.testing.assert_allclose(mirrored, original, rtol=1e-9, atol=1e-7)


def _moving(fid, t0, n, x0, speed, direction, y=12.0, hz=25.0):
    t = EPOCH + t0 + np.arange(n) / hz
    x = x0 + direction * speed * (t - t[0])
    return {"_id": fid, "timestamp": t.tolist(), "x_position": x.tolist(), "y_position": [y] * n,
            "direction": direction}


@pytest.mark.parametrize("direction", [1, -1])
def test_v2_spatial_gap_is_the_gap_along_the_direction_of_travel(direction):
    a = _moving("a", 0.0, 50, 500.0, 60.0, direction)
    ahead = _moving("b", 3.0, 30, a["x_position"][-1] + direction * 80.0, 60.0, direction)
    behind = _moving("c", 3.0, 30, a["x_position"][-1] - direction * 20.0, 60.0, direction)
    i = FEATURE_NAMES.index("spatial_gap")
    v2 = FeatureExtractor(SCHEMA_V2)
    assert v2.pair(a, ahead)[i] == pytest.approx(80.0)
    assert v2.pair(a, behind)[i] == pytest.approx(-20.0)
    v1 = FeatureExtractor(SCHEMA_V1).pair(a, ahead)[i]
    if direction == 1:
        assert v1 == pytest.approx(80.0)
    else:  # D1: the builder's westbound span from A's start to B's end
        assert v1 == pytest.approx(a["x_position"][0] - ahead["x_position"][-1])


@pytest.mark.parametrize("hz, samples", [(25.0, 25), (50.0, 50), (10.0, 10), (30.0, 30)])
def test_v2_windows_are_one_second(hz, samples):
    doc = _moving("a", 0.0, 200, 0.0, 30.0, 1, hz=hz)
    assert FeatureExtractor(SCHEMA_V2).summarize(doc).head_m == samples
    assert FeatureExtractor(SCHEMA_V1).summarize(doc).head_m == 25
    single = _moving("s", 0.0, 1, 0.0, 30.0, 1)
    assert FeatureExtractor(SCHEMA_V2).summarize(single).head_m == 1


def test_missing_field_rules():
    a = dict(VECTOR_A, _id="a")
    b = dict(VECTOR_B, _id="b")
    del b["velocity"], b["height"], b["detection_confidence"]
    names = ["vel_a_mean", "vel_b_mean", "vel_diff", "vel_ratio", "height_a", "height_b", "height_diff",
             "conf_a_mean", "conf_b_mean", "conf_a_min", "conf_b_min"]
    v1 = dict(zip(names, FeatureExtractor(SCHEMA_V1, names).pair(a, b)))
    # D2/D3: the builder needs the field on both fragments.
    assert v1 == {"vel_a_mean": 0, "vel_b_mean": 0, "vel_diff": 0, "vel_ratio": 1, "height_a": 0,
                  "height_b": 0, "height_diff": 0, "conf_a_mean": 1, "conf_b_mean": 1, "conf_a_min": 1,
                  "conf_b_min": 1}
    v2 = dict(zip(names, FeatureExtractor(SCHEMA_V2, names).pair(a, b)))
    # Per fragment: B's speed from its own positions (2 ft per 0.04 s), confidence 1, height 0.
    assert v2["vel_a_mean"] == 50 and v2["vel_b_mean"] == pytest.approx(50.0)
    assert v2["vel_ratio"] == pytest.approx(1.0, rel=1e-6)
    assert (v2["height_a"], v2["height_b"], v2["height_diff"]) == (1.5, 0.0, 1.5)
    assert v2["conf_a_mean"] == pytest.approx(0.95) and v2["conf_b_mean"] == 1.0


def test_v2_vel_ratio_is_bounded_when_b_starts_stopped():
    a = dict(VECTOR_A)
    b = dict(VECTOR_B, velocity=[0.0, 0.0, 0.0])
    v1 = pair_features(a, b, SCHEMA_V1, ["vel_ratio"])[0]
    v2 = pair_features(a, b, SCHEMA_V2, ["vel_ratio"])[0]
    assert v1 == pytest.approx(50.0 / 1e-6)      # the reference's blow-up, reproduced in v1
    assert v2 == pytest.approx(50.0)             # 50 / max(0, 1 ft/s)


def test_stationary_vehicle_has_bounded_v2_curvature():
    rng = np.random.default_rng(3)
    t = EPOCH + 0.04 * np.arange(100)
    doc = {"_id": "parked", "timestamp": t.tolist(), "x_position": (500 + rng.normal(0, 0.01, 100)).tolist(),
           "y_position": (30 + rng.normal(0, 0.01, 100)).tolist(), "direction": 1}
    v1 = FeatureExtractor(SCHEMA_V1).summarize(doc)
    v2 = FeatureExtractor(SCHEMA_V2).summarize(doc)
    # Sub-pixel jitter (0.01 ft): v1's index curvature explodes (denominator ~1e-6), v2 is bounded by
    # |v x a| / (1 ft/s)^3 with the jitter's small speeds and accelerations.
    assert v1.curvature_mean > 10
    assert v2.curvature_mean < v1.curvature_mean / 10


@pytest.mark.parametrize("shape", ["noisy", "stationary", "collinear", "ties", "short"])
def test_projection_max_equals_brute_force(shape):
    # max_j |z_j - s u_j + mean| over a head window: by bisection on the hulls (one pair) and over
    # every sample (the batch path), against the plain maximum, for degenerate windows too.
    from runtime.features import _ArrayOps, _envelope_max, _head_envelopes

    rng = np.random.default_rng(["noisy", "stationary", "collinear", "ties", "short"].index(shape))
    for _ in range(200):
        m = int(rng.integers(1, 4)) if shape == "short" else int(rng.integers(3, 30))
        u = np.cumsum(rng.uniform(0.01, 0.05, m))
        u -= u.mean()
        z = {"noisy": rng.normal(0.0, 1.0, (2, m)), "short": rng.normal(0.0, 1.0, (2, m)),
             "stationary": np.zeros((2, m)), "collinear": np.stack((3.0 * u + 1.0, -2.0 * u)),
             "ties": np.round(rng.normal(0.0, 1.0, (2, m)), 1)}[shape]
        envelopes = _head_envelopes(u, z)

        class Head:
            head_u, head_z = u, z

        slopes, means = rng.normal(0.0, 5.0, (2, 8)), rng.normal(0.0, 3.0, (2, 8))
        batch = _ArrayOps.projection_max(Head, slopes[0], slopes[1], means[0], means[1])
        for d in range(2):
            for k in range(8):
                expected = np.abs(z[d] - slopes[d, k] * u + means[d, k]).max()
                assert _envelope_max(envelopes[d], slopes[d, k], means[d, k]) == pytest.approx(expected, abs=1e-12)
                assert batch[d][k] == pytest.approx(expected, abs=1e-12)


def test_names_subset_and_validation():
    names = ["bhattacharyya_coeff", "time_gap", "y_diff"]
    extractor = FeatureExtractor(SCHEMA_V2, names)
    full = FeatureExtractor(SCHEMA_V2).pair(VECTOR_A, VECTOR_B)
    selected = full[[FEATURE_NAMES.index(n) for n in names]]
    np.testing.assert_array_equal(extractor.pair(VECTOR_A, VECTOR_B), selected)
    assert extractor.batch([VECTOR_A] * 2, VECTOR_B).shape == (2, 3)
    assert extractor.batch([], VECTOR_B).shape == (0, 3)
    np.testing.assert_array_equal(pair_features(VECTOR_A, VECTOR_B, SCHEMA_V2, names), selected)
    with pytest.raises(ValueError, match="velocity_fit_z.*valid names: time_gap, duration_a"):
        FeatureExtractor(SCHEMA_V2, ["time_gap", "velocity_fit_z"])
    with pytest.raises(ValueError, match="unknown feature schema"):
        FeatureExtractor("i24-47-v9")
    with pytest.raises(ValueError, match="follows"):
        extractor.pair_from_summaries(FeatureExtractor(SCHEMA_V1).summarize(VECTOR_A),
                                      extractor.summarize(VECTOR_B))


def test_schema_hash():
    assert set(SCHEMAS) == {SCHEMA_V1, SCHEMA_V2, SCHEMA_V3}
    h1, h2, h3 = schema_hash(SCHEMA_V1), schema_hash(SCHEMA_V2), schema_hash(SCHEMA_V3)
    assert len(h1) == 64 and int(h1, 16) >= 0 and len({h1, h2, h3}) == 3
    assert schema_hash(SCHEMA_V2) == h2 == FeatureExtractor(SCHEMA_V2).schema_hash
    assert schema_hash(SCHEMA_V2, ["time_gap"]) != h2
    with pytest.raises(ValueError):
        schema_hash("v3")


@pytest.mark.parametrize("schema", SCHEMA_LIST)
def test_identical_timestamps_rejected_naming_the_field(schema):
    bad = dict(VECTOR_B, timestamp=[0.2, 0.2, 0.28])
    with pytest.raises(FragmentError) as err:
        FeatureExtractor(schema).pair(VECTOR_A, bad)
    assert err.value.field == "timestamp" and err.value.fragment_id == "B"
    with pytest.raises(FragmentError, match="'B'.*x_position"):
        FeatureExtractor(schema).batch([VECTOR_A], dict(VECTOR_B, x_position=[1.0, float("inf"), 2.0]))


def test_cache_new_entry_when_a_fragment_grows_and_lru_bound():
    extractor = FeatureExtractor(SCHEMA_V2, cache_size=3)
    long = _moving("a", 0.0, 60, 0.0, 40.0, 1)
    short = {k: (v[:30] if isinstance(v, list) else v) for k, v in long.items()}
    first = extractor.summarize(short)
    assert extractor.summarize(short) is first
    grown = extractor.summarize(long)
    assert grown is not first and grown.n == 60 and extractor.cache.misses == 2
    for i in range(5):
        extractor.summarize(_moving(f"c{i}", 0.0, 10, 0.0, 40.0, 1))
    assert len(extractor.cache) == 3


def _without_tracker_fields(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in TRACKER_FIELDS}


def _rescaled(doc: dict, seed: int) -> dict:
    """The tracker-specific fields of `doc` replaced by another tracker version's (noisier, rescaled)."""
    rng = np.random.default_rng(seed)
    out = dict(doc)
    n = len(doc["timestamp"])
    out["velocity"] = list(np.abs(rng.normal(60.0, 25.0, n)))
    out["detection_confidence"] = list(rng.uniform(0.05, 0.4, n))
    return out


def test_v3_never_reads_tracker_fields():
    """v3 equals v2 computed without velocity/confidence, whatever those fields hold, single and batch."""
    assert set(INPUT_FIELDS[SCHEMA_V3]) & set(TRACKER_FIELDS) == set()
    assert set(TRACKER_FIELDS) <= set(INPUT_FIELDS[SCHEMA_V2])
    docs_a = [VECTOR_A, _rescaled(VECTOR_A, 1)]
    for doc_a in docs_a:
        for doc_b in (VECTOR_B, _rescaled(VECTOR_B, 2)):
            v3 = FeatureExtractor(SCHEMA_V3, cache_size=1).pair(doc_a, doc_b)
            v2 = FeatureExtractor(SCHEMA_V2, cache_size=1).pair(_without_tracker_fields(doc_a),
                                                                 _without_tracker_fields(doc_b))
            np.testing.assert_array_equal(v3, v2)
            batch = FeatureExtractor(SCHEMA_V3, cache_size=1).batch([doc_a], doc_b)[0]
            np.testing.assert_allclose(batch, v3, rtol=1e-12, atol=1e-12)
    # ... while v2 does read them (the test would pass vacuously otherwise)
    full = FeatureExtractor(SCHEMA_V2, cache_size=1).pair(VECTOR_A, VECTOR_B)
    rescaled = FeatureExtractor(SCHEMA_V2, cache_size=1).pair(_rescaled(VECTOR_A, 1), _rescaled(VECTOR_B, 2))
    assert not np.array_equal(full, rescaled)
