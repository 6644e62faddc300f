"""Junction windows of one fragment: the per-sample input of the sequence encoders (FEATURES.md §3).

Training (`training.sequence_data`) and the ONNX runtime both call `fragment_windows`, so the encoder
is served exactly the preprocessing it was trained on (the reference's D9/B2 bugs cannot recur).

Ordering convention, for both roles: index 0 is the junction sample and index k is the k-th sample
away from it, valid samples first and zero padding (mask 0) at the end.
- TAIL window (the fragment as the *earlier* one of a pair): junction = its last sample, so row k
  holds sample n-1-k (time runs backwards along the window; the time channel is <= 0).
- HEAD window (the fragment as the *later* one): junction = its first sample, row k holds sample k
  (the time channel is >= 0).
Every channel is relative to the fragment itself, never to a pair, so each window (and its
embedding) is computed once per fragment and cached.
"""
from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from .fragment import Fragment

__all__ = [
    "WINDOW_LENGTH",
    "CHANNELS",
    "N_CHANNELS",
    "TAIL",
    "HEAD",
    "DEFAULT_DIMENSIONS",
    "fragment_windows",
    "windows_for_fragments",
]

# 64 samples at 25 Hz = 2.56 s on each side of a junction.
WINDOW_LENGTH = 64
CHANNELS = (
    "time_from_junction",     # s; t - t_junction (<= 0 in a tail window, >= 0 in a head window)
    "forward_x",              # ft; direction * (x - x_junction): distance along the direction of travel
    "lateral_y",              # ft; y - y_junction
    "speed",                  # ft/s; the velocity field, else |dx/dt| from the fragment's positions
    "length",                 # ft; field or 15
    "width",                  # ft; field or 6
    "height",                 # ft; field or 5
    "confidence",             # detection_confidence field, else 1
)
N_CHANNELS = len(CHANNELS)
TAIL, HEAD = 0, 1
# The I-24 defaults for missing dimension fields (REFERENCE.md §3.0).
DEFAULT_DIMENSIONS = {"length": 15.0, "width": 6.0, "height": 5.0}

_T, _X, _Y, _SPEED, _LENGTH, _WIDTH, _HEIGHT, _CONF = range(N_CHANNELS)
_DEFAULTS = {_LENGTH: DEFAULT_DIMENSIONS["length"], _WIDTH: DEFAULT_DIMENSIONS["width"],
             _HEIGHT: DEFAULT_DIMENSIONS["height"], _CONF: 1.0}


@functools.lru_cache(maxsize=1024)
def _sample_index(L: int, rows: int) -> np.ndarray:
    """(2, rows) sample index of each window row: HEAD row k -> sample k, TAIL row k -> sample -1-k.

    Negative indices reach the last samples without knowing n, so one table serves every fragment
    with the same number of gathered rows. Contiguous (fancy indexing with a strided index array
    is several times slower) and read-only, since it is shared.
    """
    k = np.arange(rows)
    table = np.empty((2, rows), dtype=np.intp)
    table[HEAD] = k
    table[TAIL] = -1 - k
    table.flags.writeable = False
    return table


def _window_speed(t: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """dx/dt along gathered window rows, equal up to sign to `np.gradient(x, t)` at those samples.

    Parameters
    ----------
    t, x : (2, r) contiguous, relative to each row's junction; rows are consecutive samples from
        the junction outwards (time runs backwards in the TAIL row, which changes no slope).
    out : (2, r) contiguous, receives the signed slope (the caller takes the absolute value).

    Inside a row: the second-order non-uniform central difference of `np.gradient`, written as the
    spacing-weighted mean of the two neighbouring slopes (h_right * s_left + h_left * s_right) /
    (h_left + h_right); at the first and last row entry, the one-sided slope (exact at the
    fragment's ends; the last entry is discarded when it is only the neighbour gathered for the one
    before it). A single sample has speed 0. Both rows are processed as one flat array (fewer numpy
    calls on the hot path); the entries next to the seam between them are then overwritten.
    """
    r = t.shape[1]
    if r == 1:
        out[:] = 0.0
        return
    tf, xf, gf = t.reshape(-1), x.reshape(-1), out.reshape(-1)
    h = tf[1:] - tf[:-1]
    slope = (xf[1:] - xf[:-1]) / h
    if r > 2:
        # Across the seam the TAIL row ends at time -a (a > 0) and the HEAD row starts at 0, so h
        # there is a > 0 and every h_left + h_right is non-zero once r > 2 (no division warning).
        hl, hr = h[:-1], h[1:]
        np.divide(hr * slope[:-1] + hl * slope[1:], hl + hr, out=gf[1:-1])
    gf[0] = slope[0]          # TAIL junction: the fragment's last sample
    gf[r - 1] = slope[r - 2]  # TAIL far end
    gf[r] = slope[r]          # HEAD junction: the fragment's first sample
    gf[-1] = slope[-1]        # HEAD far end


def _write_windows(fragment: Fragment, windows: np.ndarray, masks: np.ndarray) -> None:
    """Fill zeroed `windows` (2, L, C) and `masks` (2, L) for one fragment, in place.

    Hot path (once per new fragment), so it is written for few numpy calls whatever n is: one
    gather per field serves both roles into a channel-major float64 buffer (relative times of epoch
    seconds need float64), then a single transposed, casting write fills the float32 windows.
    """
    L = windows.shape[1]
    n = fragment.n
    m = min(n, L)
    # One row beyond the window when the fragment has it: the speed of row L-1 needs its neighbour.
    rows = min(n, L + 1)
    idx = _sample_index(L, rows)
    buf = np.empty((N_CHANNELS, 2, rows))
    buf[_T] = fragment.t[idx]
    buf[_X] = fragment.x[idx]
    buf[_Y] = fragment.y[idx]
    # Column 0 is the junction sample of each role; copy it so the subtraction never reads its output.
    buf[:_SPEED] -= buf[:_SPEED, :, :1].copy()
    if fragment.direction != 1:
        buf[_X] *= fragment.direction
    if fragment.velocity is not None:
        buf[_SPEED] = fragment.velocity[idx]
    else:
        _window_speed(buf[_T], buf[_X], out=buf[_SPEED])
    # The I-24 field is an unsigned speed; abs() keeps a source that stores signed velocity alike.
    np.abs(buf[_SPEED], out=buf[_SPEED])
    for channel, values in ((_LENGTH, fragment.length), (_WIDTH, fragment.width),
                            (_HEIGHT, fragment.height), (_CONF, fragment.confidence)):
        buf[channel] = _DEFAULTS[channel] if values is None else values[idx]
    windows[:, :m] = buf[:, :, :m].transpose(1, 2, 0)
    masks[:, :m] = 1.0


def fragment_windows(fragment: Fragment, L: int = WINDOW_LENGTH) -> tuple[np.ndarray, np.ndarray]:
    """The tail and head junction windows of one fragment.

    Parameters
    ----------
    fragment : a validated `Fragment` (at least one sample).
    L : window length in samples (64 = 2.56 s at 25 Hz).

    Returns
    -------
    windows : (2, L, C) float32, C = len(CHANNELS). `windows[TAIL]` is the window of the last
        min(n, L) samples (used when the fragment is the earlier one of a pair), `windows[HEAD]`
        the first min(n, L) samples (the later one). Row 0 of each is the junction sample; padded
        rows are zero.
    masks : (2, L) float32, 1 for valid rows, 0 for padding. Row 0 is always valid, so a mask is
        never all zero.
    """
    if L < 1:
        raise ValueError(f"window length must be >= 1, got {L}")
    windows = np.zeros((2, L, N_CHANNELS), dtype=np.float32)
    masks = np.zeros((2, L), dtype=np.float32)
    _write_windows(fragment, windows, masks)
    return windows, masks


def windows_for_fragments(fragments: Sequence[Fragment], L: int = WINDOW_LENGTH
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`fragment_windows` for many fragments, stacked.

    Parameters
    ----------
    fragments : F validated fragments.
    L : window length in samples.

    Returns
    -------
    tails : (F, L, C) float32; tail_masks : (F, L) float32;
    heads : (F, L, C) float32; head_masks : (F, L) float32. Row f belongs to `fragments[f]`.
    """
    if L < 1:
        raise ValueError(f"window length must be >= 1, got {L}")
    windows = np.zeros((2, len(fragments), L, N_CHANNELS), dtype=np.float32)
    masks = np.zeros((2, len(fragments), L), dtype=np.float32)
    for f, fragment in enumerate(fragments):
        _write_windows(fragment, windows[:, f], masks[:, f])
    return windows[TAIL], masks[TAIL], windows[HEAD], masks[HEAD]
