"""Put fragment documents on the pipeline's exact 25 Hz time grid.

The I-24 pipeline stitches fragments sampled at 25 Hz (REFERENCE.md §7.3) while RAW tracker
fragments carry their own sample times. Training and pp_lite both call `resample_document`, so a
model is trained on exactly what it is served (REFERENCE.md D6).
"""
from __future__ import annotations

import copy
import math
from typing import Any, Mapping

import numpy as np

__all__ = ["DEFAULT_HZ", "GRID_TOLERANCE_S", "RESAMPLED_FIELDS", "needs_resample", "resample_document"]

DEFAULT_HZ = 25.0
# Timestamps within 1 ms of a grid point count as on it: float noise in epoch seconds (~1e-7 s)
# and rounding in stored files are far below this, a 30 Hz tracker clock is far above it.
GRID_TOLERANCE_S = 1e-3
# Fields interpolated when they hold one value per sample; a scalar is kept as it is.
RESAMPLED_FIELDS = ("x_position", "y_position", "length", "width", "height", "velocity",
                    "detection_confidence")
# Without them a fragment has no per-sample information to carry over; the I-24 pipeline
# neither filters nor resamples them (§7.3), so an array of another length means "absent".
_OPTIONAL_FIELDS = ("velocity", "detection_confidence")


def _grid_indices(t: np.ndarray, hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Nearest grid index of every timestamp and its distance to that grid point in seconds."""
    scaled = t * hz
    k = np.rint(scaled)
    return k, np.abs(scaled - k) / hz


def needs_resample(doc: Mapping[str, Any], hz: float = DEFAULT_HZ) -> bool:
    """Whether `doc` is off the exact 1/hz grid.

    Parameters
    ----------
    doc : an I-24 fragment document with a `timestamp` array (epoch seconds).
    hz : grid rate; grid points are the multiples of 1/hz in absolute epoch time.

    Returns
    -------
    bool
        False only when every timestamp is within 1 ms of a grid point and consecutive samples are
        exactly one grid step apart (no missing grid points), i.e. when resampling would not change
        the samples. A fragment of one sample on the grid does not need resampling.
    """
    t = np.asarray(doc["timestamp"], dtype=np.float64)
    if t.size == 0:
        return False
    k, off = _grid_indices(t, hz)
    if not (off <= GRID_TOLERANCE_S).all():
        return True
    return bool(t.size > 1 and not (np.diff(k) == 1).all())


def resample_document(doc: Mapping[str, Any], hz: float = DEFAULT_HZ) -> dict:
    """A copy of `doc` linearly interpolated onto every 1/hz grid point its time span covers.

    Parameters
    ----------
    doc : a valid I-24 fragment document (strictly increasing finite `timestamp`).
    hz : grid rate in Hz (default 25: multiples of 0.04 s in absolute epoch time).

    Returns
    -------
    dict
        A new document: `timestamp` is the grid (first grid point at or after the first sample
        up to the last grid point at or before the last sample, 1 ms tolerance at both ends);
        per-sample `x_position`, `y_position`, `length`, `width`, `height`, `velocity`,
        `detection_confidence` are interpolated onto it (scalars kept; a `velocity` or
        `detection_confidence` array of another length than `timestamp` is dropped, as it already
        meant "absent"); `first_timestamp`, `last_timestamp`, `starting_x`, `ending_x` are reset;
        every other field is deep-copied. A fragment too short to contain a grid point keeps one
        sample at the grid point nearest to its midpoint (values taken from its nearest end).
        Arrays are plain lists, so the result is JSON-ready.
    """
    if not (hz > 0 and math.isfinite(hz)):
        raise ValueError(f"hz must be a positive finite rate, got {hz!r}")
    t = np.asarray(doc["timestamp"], dtype=np.float64)
    n = t.size
    if n == 0:
        raise ValueError("cannot resample a fragment with no samples")
    tol = GRID_TOLERANCE_S * hz  # tolerance in grid steps
    k_first = math.ceil(t[0] * hz - tol)
    k_last = math.floor(t[-1] * hz + tol)
    if k_last >= k_first:
        grid_k = np.arange(k_first, k_last + 1, dtype=np.float64)
    else:
        grid_k = np.array([float(np.rint(0.5 * (t[0] + t[-1]) * hz))])
    grid = grid_k / hz
    # np.interp clamps outside [t0, t-1]; the tolerance lets the end points lie up to 1 ms outside.

    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key == "timestamp" or key in RESAMPLED_FIELDS:
            continue
        out[key] = copy.deepcopy(value)
    out["timestamp"] = grid.tolist()
    for field in RESAMPLED_FIELDS:
        if field not in doc:
            continue
        value = doc[field]
        if value is None or isinstance(value, (int, float, np.integer, np.floating)):
            out[field] = value
            continue
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim == 1 and arr.size == n:
            out[field] = np.interp(grid, t, arr).tolist()
        elif field in _OPTIONAL_FIELDS:
            continue
        else:
            raise ValueError(f"field '{field}': length {arr.size} != timestamp length {n}")
    out["first_timestamp"] = float(grid[0])
    out["last_timestamp"] = float(grid[-1])
    x = out.get("x_position")
    if isinstance(x, list) and x:
        out["starting_x"] = float(x[0])
        out["ending_x"] = float(x[-1])
    return out
