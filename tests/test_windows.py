"""runtime.windows: the junction windows both training and the ONNX runtime feed the encoders."""
from __future__ import annotations

import numpy as np
import pytest

from runtime.fragment import Fragment
from runtime.windows import (CHANNELS, DEFAULT_DIMENSIONS, HEAD, N_CHANNELS, TAIL, WINDOW_LENGTH, fragment_windows,
                             windows_for_fragments)

T0 = 1_623_877_175.0  # an I-24 epoch: float32 cannot hold it, so relative times must be formed in float64


def _doc(n, *, direction=1, seed=0, uniform=True, velocity=True, confidence=True, dims=True):
    rng = np.random.default_rng(seed)
    steps = np.full(n - 1, 0.04) if uniform else rng.uniform(0.02, 0.07, n - 1)
    t = T0 + np.concatenate(([0.0], np.cumsum(steps)))
    x = 500.0 + direction * np.cumsum(rng.uniform(1.0, 3.0, n))
    doc = {"_id": f"frag-{n}-{seed}", "timestamp": t.tolist(), "x_position": x.tolist(),
           "y_position": (12.0 + rng.normal(0.0, 0.3, n)).tolist(), "direction": direction}
    if velocity:
        doc["velocity"] = rng.uniform(40.0, 60.0, n).tolist()
    if confidence:
        doc["detection_confidence"] = rng.uniform(0.3, 1.0, n).tolist()
    if dims:
        doc.update(length=rng.uniform(14.0, 16.0, n).tolist(), width=6.5, height=rng.uniform(4.0, 6.0, n).tolist())
    return doc


def _expected(fragment: Fragment, L: int) -> tuple[np.ndarray, np.ndarray]:
    """The windows written out the slow, obvious way (float64)."""
    n, m = fragment.n, min(fragment.n, L)
    speed = fragment.velocity if fragment.velocity is not None else (
        np.gradient(fragment.x, fragment.t) if n > 1 else np.zeros(1))
    columns = [fragment.t, fragment.x, fragment.y, np.abs(speed)]
    for name in ("length", "width", "height"):
        value = getattr(fragment, name)
        columns.append(np.full(n, DEFAULT_DIMENSIONS[name]) if value is None else value)
    columns.append(np.ones(n) if fragment.confidence is None else fragment.confidence)
    samples = np.stack(columns, axis=1)
    out = np.zeros((2, L, N_CHANNELS))
    masks = np.zeros((2, L))
    for role, rows in ((TAIL, samples[::-1][:m]), (HEAD, samples[:m])):
        rows = rows.copy()
        rows[:, :3] -= rows[0, :3]
        rows[:, 1] *= fragment.direction
        out[role, :m] = rows
        masks[role, :m] = 1.0
    return out, masks


def test_channel_contract():
    assert WINDOW_LENGTH == 64
    assert CHANNELS == ("time_from_junction", "forward_x", "lateral_y", "speed", "length", "width", "height",
                        "confidence")
    windows, masks = fragment_windows(Fragment.from_document(_doc(100)))
    assert windows.shape == (2, 64, 8) and windows.dtype == np.float32
    assert masks.shape == (2, 64) and masks.dtype == np.float32


@pytest.mark.parametrize("n", [1, 2, 3, 5, 63, 64, 65, 66, 129, 130, 131, 400])
@pytest.mark.parametrize("direction", [1, -1])
def test_windows_match_the_obvious_computation(n, direction):
    for kwargs in ({}, {"velocity": False}, {"velocity": False, "uniform": False},
                   {"confidence": False, "dims": False}):
        fragment = Fragment.from_document(_doc(n, direction=direction, seed=n, **kwargs))
        windows, masks = fragment_windows(fragment)
        expected, expected_masks = _expected(fragment, WINDOW_LENGTH)
        np.testing.assert_array_equal(masks, expected_masks)
        np.testing.assert_allclose(windows, expected, rtol=2e-6, atol=2e-5, err_msg=str(kwargs))


def test_ordering_and_padding_of_a_short_fragment():
    fragment = Fragment.from_document(_doc(5, velocity=False))
    windows, masks = fragment_windows(fragment, L=8)
    np.testing.assert_array_equal(masks, [[1, 1, 1, 1, 1, 0, 0, 0]] * 2)
    assert (windows[:, 5:] == 0).all()
    # Row 0 is the junction in both roles; time runs backwards along a tail window.
    np.testing.assert_allclose(windows[TAIL, :5, 0], [0.0, -0.04, -0.08, -0.12, -0.16], atol=1e-5)
    np.testing.assert_allclose(windows[HEAD, :5, 0], [0.0, 0.04, 0.08, 0.12, 0.16], atol=1e-5)
    assert (windows[:, 0, :3] == 0).all()
    # A fragment shorter than the window: both windows hold all its samples, in opposite orders.
    np.testing.assert_allclose(windows[TAIL, :5, 3], windows[HEAD, 4::-1, 3], rtol=1e-6)


def test_single_sample_fragment():
    doc = _doc(1, velocity=False, confidence=False, dims=False)
    windows, masks = fragment_windows(Fragment.from_document(doc))
    np.testing.assert_array_equal(masks[:, :2], [[1, 0], [1, 0]])
    np.testing.assert_array_equal(windows[:, 0], [[0, 0, 0, 0, 15, 6, 5, 1]] * 2)
    assert (windows[:, 1:] == 0).all()


def test_forward_x_follows_the_direction_of_travel():
    for direction in (1, -1):
        windows, _ = fragment_windows(Fragment.from_document(_doc(100, direction=direction)))
        assert (windows[HEAD, 1:, 1] > 0).all()  # ahead of the start along the direction of travel
        assert (windows[TAIL, 1:, 1] < 0).all()  # behind the end


def test_defaults_and_signed_velocity():
    doc = _doc(20, confidence=False, dims=False)
    doc["velocity"] = (-np.asarray(doc["velocity"])).tolist()  # a source storing signed velocity
    windows, _ = fragment_windows(Fragment.from_document(doc))
    assert (windows[:, :20, 3] > 0).all()
    np.testing.assert_array_equal(windows[:, :20, 4:], np.broadcast_to([15.0, 6.0, 5.0, 1.0], (2, 20, 4)))


def test_mismatched_velocity_falls_back_to_position_speed():
    doc = _doc(30)
    doc["velocity"] = doc["velocity"][:10]  # not resampled with the positions: means "absent"
    fragment = Fragment.from_document(doc)
    windows, _ = fragment_windows(fragment)
    np.testing.assert_allclose(windows[HEAD, :30, 3], np.abs(np.gradient(fragment.x, fragment.t)), rtol=1e-5)


def test_batch_helper_stacks_fragment_windows():
    fragments = [Fragment.from_document(_doc(n, seed=n, velocity=n % 2 == 0)) for n in (1, 7, 64, 90)]
    tails, tail_masks, heads, head_masks = windows_for_fragments(fragments, L=32)
    assert tails.shape == heads.shape == (4, 32, 8) and tail_masks.shape == head_masks.shape == (4, 32)
    for f, fragment in enumerate(fragments):
        windows, masks = fragment_windows(fragment, L=32)
        np.testing.assert_array_equal(tails[f], windows[TAIL])
        np.testing.assert_array_equal(heads[f], windows[HEAD])
        np.testing.assert_array_equal(tail_masks[f], masks[TAIL])
        np.testing.assert_array_equal(head_masks[f], masks[HEAD])
    empty = windows_for_fragments([], L=16)
    assert empty[0].shape == (0, 16, 8)


def test_rejects_a_bad_window_length():
    with pytest.raises(ValueError, match="window length"):
        fragment_windows(Fragment.from_document(_doc(3)), L=0)


def test_v3_windows_never_read_tracker_fields():
    """Under i24-47-v3 (training's sequence_pairs and the runtime both go through schema_fragment) the
    speed channel comes from positions and confidence is 1, whatever the document's fields hold."""
    from runtime.features import SCHEMA_V2, SCHEMA_V3, schema_fragment

    doc = _doc(80, seed=3)
    full = Fragment.from_document(doc)
    bare = Fragment.from_document({k: v for k, v in doc.items() if k not in ("velocity", "detection_confidence")})
    w3, m3 = fragment_windows(schema_fragment(full, SCHEMA_V3))
    w0, m0 = fragment_windows(bare)
    np.testing.assert_array_equal(w3, w0)
    np.testing.assert_array_equal(m3, m0)
    assert (w3[..., CHANNELS.index("confidence")][m3 > 0] == 1.0).all()
    # v2 keeps the fields, and the test would notice if v3 did too
    w2, _ = fragment_windows(schema_fragment(full, SCHEMA_V2))
    assert not np.array_equal(w2, w3)
    assert schema_fragment(full, SCHEMA_V2) is full
