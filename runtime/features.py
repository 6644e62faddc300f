"""The 47 engineered stitch-pair features, defined once for training and serving (FEATURES.md §1).

Two versioned schemas share the names and order of `training_dataset_advanced.npz`:

- ``i24-47-v1`` reproduces the reference dataset builder bug for bug (REFERENCE.md §1.2-§1.5), for
  models trained on that npz.
- ``i24-47-v2`` (the default) applies FEATURES.md §1's corrections; see `FeatureExtractor`.

Everything that depends on one fragment (validation, windows, the WLS fit of its tail, moments and
convex hulls of its head, curvature, means) is computed once per fragment and cached
(`FragmentFeatures`); a pair costs Python arithmetic on those numbers plus a maximum over a few hull
points, and `FeatureExtractor.batch` runs the same arithmetic on columns for many candidates at once.
"""
from __future__ import annotations

import hashlib
import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .bhattacharyya import WINDOW_SAMPLES, junction_weights, weighted_line_fit
from .cache import FragmentCache
from .fragment import Fragment

__all__ = [
    "FEATURE_NAMES",
    "BASIC_FEATURES",
    "SCHEMA_V1",
    "SCHEMA_V2",
    "SCHEMA_V3",
    "DEFAULT_SCHEMA",
    "TRACKER_FIELDS",
    "INPUT_FIELDS",
    "schema_fragment",
    "SCHEMAS",
    "FEATURE_CODE_VERSION",
    "schema_hash",
    "FragmentFeatures",
    "FeatureExtractor",
    "pair_features",
]

# REFERENCE.md §1.1: the column order of training_dataset_advanced.npz; must never change.
FEATURE_NAMES = (
    "time_gap", "duration_a", "duration_b", "duration_ratio", "spatial_gap",
    "y_mean_a", "y_mean_b", "y_diff", "y_std_a", "y_std_b",
    "vel_a_mean", "vel_b_mean", "vel_diff", "vel_ratio",
    "length_a", "length_b", "length_diff", "width_a", "width_b", "width_diff",
    "height_a", "height_b", "height_diff",
    "conf_a_mean", "conf_b_mean", "conf_a_min", "conf_b_min", "direction_match",
    "projection_error_x_mean", "projection_error_x_std", "projection_error_x_max",
    "projection_error_y_mean", "projection_error_y_std", "projection_error_y_max",
    "bhattacharyya_distance", "bhattacharyya_coeff",
    "velocity_fit_x", "velocity_fit_y", "velocity_actual_x_mean", "velocity_actual_y_mean",
    "velocity_mismatch_x", "velocity_mismatch_y",
    "curvature_a_mean", "curvature_a_std", "curvature_b_mean", "curvature_b_std", "curvature_diff",
)
BASIC_FEATURES = FEATURE_NAMES[:28]

SCHEMA_V1 = "i24-47-v1"
SCHEMA_V2 = "i24-47-v2"
# v3 = v2 computed from positions, times and dimensions only: the tracker-specific per-sample fields
# (`velocity`, `detection_confidence`) are never read, as if every fragment lacked them. Their scale
# and presence change between tracker versions, and a model that leans on them does not transfer.
SCHEMA_V3 = "i24-47-v3"
DEFAULT_SCHEMA = SCHEMA_V2
SCHEMAS: dict[str, tuple[str, ...]] = {SCHEMA_V1: FEATURE_NAMES, SCHEMA_V2: FEATURE_NAMES, SCHEMA_V3: FEATURE_NAMES}
# Document fields whose meaning belongs to one tracker version.
TRACKER_FIELDS = ("velocity", "detection_confidence")
_BASE_FIELDS = ("_id", "timestamp", "x_position", "y_position", "direction", "length", "width", "height")
# The fragment-document fields each schema reads (manifests list them as the model's input fields).
INPUT_FIELDS: dict[str, tuple[str, ...]] = {
    SCHEMA_V1: _BASE_FIELDS + TRACKER_FIELDS + ("first_timestamp", "last_timestamp", "starting_x", "ending_x"),
    SCHEMA_V2: _BASE_FIELDS + TRACKER_FIELDS,
    SCHEMA_V3: _BASE_FIELDS,
}
# Part of every schema hash: bump it when the code of a schema changes in any way that alters a
# value (which FEATURES.md says must instead become a new schema), so stale manifests are caught.
FEATURE_CODE_VERSION = "2"  # 2: v2 vel_ratio speed floor (artifacts from "1" are refused)

_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}
# v2 windows: the last / first WINDOW_SECONDS of a fragment. The tolerance keeps the sample exactly
# 1 s away out (25 samples at 25 Hz) despite epoch-second rounding (~2e-7 s), and is far below any
# sampling interval.
WINDOW_SECONDS = 1.0
WINDOW_TOLERANCE = 1e-3
# v2 curvature: speeds below this (ft/s) do not shrink the denominator further.
CURVATURE_SPEED_FLOOR = 1.0
VEL_RATIO_SPEED_FLOOR = 1.0  # ft/s, v2 only: vel_ratio = v_A,end / sign(v)max(|v_B,start|, 1)
# REFERENCE.md §1.3: sentinel and cut-off of the projection-block distance.
DISTANCE_SENTINEL = 999.0
COEFF_CUTOFF = 100.0
# Additive guards of the reference formulas (ratios, variances, speeds, curvature).
EPS = 1e-6


def schema_hash(schema: str, names: Sequence[str] | None = None) -> str:
    """sha256 (hex) identifying a feature schema, for model manifests.

    Parameters
    ----------
    schema : a key of `SCHEMAS`.
    names : the feature subset a model consumes, in its order; all of the schema's by default.

    Returns
    -------
    str : sha256 of the schema name, the feature names and `FEATURE_CODE_VERSION`.
    """
    if schema not in SCHEMAS:
        raise ValueError(f"unknown feature schema {schema!r}; known: {', '.join(SCHEMAS)}")
    names = SCHEMAS[schema] if names is None else tuple(names)
    text = "\n".join((schema, ",".join(names), FEATURE_CODE_VERSION))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_names(names: Sequence[str] | None) -> tuple[str, ...]:
    if names is None:
        return FEATURE_NAMES
    if isinstance(names, str):
        raise ValueError("names must be a sequence of feature names, not one string")
    names = tuple(names)
    unknown = [n for n in names if n not in _INDEX]
    if unknown:
        raise ValueError(f"unknown feature name(s) {', '.join(map(repr, unknown))}; "
                         f"valid names: {', '.join(FEATURE_NAMES)}")
    if not names:
        raise ValueError("names selects no feature")
    return names


# Quantities of a fragment in the role of A (the earlier fragment); the batch path stacks them.
_A_FIELDS = (
    "gap_end", "t_end", "duration", "direction", "start_x", "end_x", "y_mean", "y_std",
    "has_velocity", "vel_mean", "vel_last", "length", "width", "height", "has_height",
    "has_confidence", "conf_mean", "conf_min",
    "tail_single", "tail_x", "tail_y", "slope_x", "slope_y", "tail_lag",
    "curvature_mean", "curvature_std",
)


class FragmentFeatures:
    """Per-fragment quantities of one feature schema; a pair's features are arithmetic on two of these.

    Built by `FeatureExtractor.summarize` (cached by fragment identity). Attributes are floats
    (indicators are 1.0 / 0.0) unless noted.

    Attributes
    ----------
    schema, id : the schema these values follow and the fragment `_id`.
    n, direction : sample count and +1 / -1.
    t_start, t_end : first and last timestamp from the arrays (epoch s).
    gap_start, gap_end, duration : the times behind time_gap and durations (v1: the stored scalar
        fields, v2: the arrays).
    start_x, end_x : x at the ends (v1: stored fields, v2: arrays).
    y_mean, y_std : of the whole fragment (population std).
    has_velocity, vel_mean, vel_first, vel_last, vel_den : speed statistics; vel_den is the vel_ratio
        denominator: v1 vel_first + 1e-6 (inf where that is 0, making the ratio 0 and finite), v2
        vel_first with its magnitude floored at 1 ft/s.
    length, width, height, has_height : mean dimensions (0 when absent).
    has_confidence, conf_mean, conf_min : detection confidence (1 when absent).
    tail_single, tail_x, tail_y, slope_x, slope_y, tail_lag : the WLS line through the tail window
        (as A): slopes, weighted mean values, and t_end minus the weighted mean time (>= 0).
        tail_single = 1 for a one-sample window, whose line depends on the pair (REFERENCE.md §1.3).
    head_m, head_u_mean, head_u_var, head_x_mean, head_x_var, head_y_mean, head_y_var,
    head_x_own, head_y_own, head_x_resvar, head_y_resvar, head_log_var : moments of the head window
        (as B), times u relative to t_start: own least-squares slopes and residual variances, and
        log(var x + 1e-6) + log(var y + 1e-6).
    head_u, head_z : the head window's centred times (m,) and centred x, y (2, m).
    head_envelopes : the samples that can hold the largest projection error of any line (the
        vertices of their convex hulls), per dimension as lists for bisection (`_head_envelopes`);
        None until a scalar pair first needs them. The batch paths take the maximum over every head
        sample instead (a few numpy operations for K pairs), so a fragment's first call, which
        pays for this summary, builds no hull.
    has_vact, vact_x, vact_y : mean finite-difference velocity at the start (as B).
    curvature_mean, curvature_std : curvature statistics of the whole fragment.
    a_row : (1, len(_A_FIELDS)) array of the A-role quantities, for the v1 batch path (None in v2).
    a_block, b_role : the v2 batch path's A-role column and B-role constants (None in v1); see `_batch_v2`.
    """

    __slots__ = _A_FIELDS + (
        "schema", "id", "n", "t_start", "gap_start", "vel_first", "vel_den",
        "head_m", "head_u_mean", "head_u_var", "head_x_mean", "head_x_var", "head_y_mean", "head_y_var",
        "head_x_own", "head_y_own", "head_x_resvar", "head_y_resvar", "head_log_var",
        "head_u", "head_z", "head_envelopes", "has_vact", "vact_x", "vact_y", "a_row", "a_block", "b_role",
    )

    def __repr__(self) -> str:
        return f"FragmentFeatures(schema={self.schema!r}, id={self.id!r}, n={self.n})"


def _mean(a: np.ndarray) -> float:
    """`float(a.mean())` of a 1-D float64 array, bit for bit, without ndarray.mean's Python layers
    (a fragment's first call takes a dozen of these)."""
    return float(_add_reduce(a)) / a.shape[0]


def _mean_std(a: np.ndarray) -> tuple[float, float]:
    """`(a.mean(), a.std())` of a 1-D float64 array as floats, bit for bit (population std)."""
    mean = _mean(a)
    d = a - mean
    d *= d
    return mean, math.sqrt(float(_add_reduce(d)) / a.shape[0])


_add_reduce = np.add.reduce


def _gradient(z: np.ndarray, spacing: np.ndarray | None, spans: np.ndarray | None = None) -> np.ndarray:
    """`np.gradient` of each row of z (d, n >= 2) in one pass: second-order central differences
    inside (the spacing-weighted mean of the neighbouring slopes), one-sided at the ends.

    spacing : (n - 1,) steps of the coordinate (time), or None for unit steps (index derivatives).
    spans : spacing[:-1] + spacing[1:], when the caller has it already (curvature differentiates twice).
    """
    slope = z[:, 1:] - z[:, :-1]
    if spacing is not None:
        slope /= spacing
    out = np.empty_like(z)
    out[:, 0] = slope[:, 0]
    out[:, -1] = slope[:, -1]
    if z.shape[1] > 2:
        inner = out[:, 1:-1]
        if spacing is None:
            np.add(slope[:, :-1], slope[:, 1:], out=inner)
            inner *= 0.5
        else:
            # (right * left slope + left * right slope) / (left + right)
            np.multiply(spacing[1:], slope[:, :-1], out=inner)
            inner += spacing[:-1] * slope[:, 1:]
            inner /= spacing[:-1] + spacing[1:] if spans is None else spans
    return out


def _curvature(fragment: Fragment, v2: bool) -> tuple[float, float]:
    """(mean, std) of the curvature of the whole fragment; (0, 0) below 3 samples (REFERENCE.md §1.4).

    v1: index-based derivatives and (speed^3 + 1e-6) in the denominator, as the reference.
    v2: time-based derivatives (1/ft) and max(speed, 1 ft/s)^3, so near-stationary vehicles and
    the sampling rate do not blow it up.
    """
    if fragment.n < 3:
        return 0.0, 0.0
    t = fragment.t
    spacing = spans = None
    if v2:
        spacing = t[1:] - t[:-1]
        spans = spacing[:-1] + spacing[1:]
    first = _gradient(fragment.xy, spacing, spans)
    second = _gradient(first, spacing, spans)
    products = first * second[::-1]  # rows x' y'', y' x''
    cross = products[0] - products[1]
    np.abs(cross, out=cross)
    first *= first
    speed2 = first[0] + first[1]
    if v2:
        np.maximum(speed2, CURVATURE_SPEED_FLOOR ** 2, out=speed2)
        kappa = cross / (speed2 * np.sqrt(speed2))
    else:
        kappa = cross / (speed2 * np.sqrt(speed2) + EPS)
    return _mean_std(kappa)


def _hulls(u: list, z: list) -> tuple[list, list]:
    """Vertex indices of the upper and lower convex hulls of the points (u_j, z_j), u increasing.

    Andrew's monotone chain, both hulls in one pass; collinear points are dropped (a turn must be
    strictly clockwise on the upper hull, counter-clockwise on the lower one).
    """
    upper: list = []
    lower: list = []
    for j in range(len(u)):
        uj, zj = u[j], z[j]
        while len(upper) >= 2:
            i1, i2 = upper[-2], upper[-1]
            if (u[i2] - u[i1]) * (zj - z[i1]) - (z[i2] - z[i1]) * (uj - u[i1]) >= 0.0:
                upper.pop()
            else:
                break
        upper.append(j)
        while len(lower) >= 2:
            i1, i2 = lower[-2], lower[-1]
            if (u[i2] - u[i1]) * (zj - z[i1]) - (z[i2] - z[i1]) * (uj - u[i1]) <= 0.0:
                lower.pop()
            else:
                break
        lower.append(j)
    return upper, lower


def _head_envelopes(u: np.ndarray, z: np.ndarray) -> tuple:
    """The head samples that can hold a pair's largest projection error |e_j|, e_j = z_j - s u_j + mean,
    arranged for bisection (the scalar path, `_envelope_max`).

    For every slope s, max_j (z_j - s u_j) is attained on the upper convex hull of the points
    (u_j, z_j) and min_j on the lower one, so only hull vertices matter: 2 for a straight track, a
    handful for a noisy one.

    Parameters
    ----------
    u : (m,) increasing (centred) times; z : (2, m) centred x and y.

    Returns
    -------
    Per dimension, `(upper_z, upper_u, upper_keys, lower_z, lower_u, lower_keys)`: the vertices in
    increasing u, the lower hull negated, and the bisection keys (the upper hull's edge slopes negated,
    the lower hull's edge slopes; both increasing along a convex chain).
    """
    ul = u.tolist()
    envelopes = []
    for zl in z.tolist():
        upper, lower = _hulls(ul, zl)
        upper_z, upper_u = [zl[j] for j in upper], [ul[j] for j in upper]
        lower_z, lower_u = [-zl[j] for j in lower], [-ul[j] for j in lower]
        # Lower-hull slopes from the negated points are the same numbers: (-dz) / (-du).
        upper_keys = [(upper_z[i] - upper_z[i + 1]) / (upper_u[i + 1] - upper_u[i]) for i in range(len(upper) - 1)]
        lower_keys = [(lower_z[i + 1] - lower_z[i]) / (lower_u[i + 1] - lower_u[i]) for i in range(len(lower) - 1)]
        envelopes.append((upper_z, upper_u, upper_keys, lower_z, lower_u, lower_keys))
    return tuple(envelopes)


def _envelope_max(envelope: tuple, s: float, mean: float) -> float:
    """max_j |z_j - s u_j + mean| over one dimension's head samples, by bisection on the hulls' edges.

    Along the upper hull z_j - s u_j rises while the edge slope exceeds s, so the maximum sits at the
    vertex whose index is the number of edge slopes above s; the lower hull likewise for the minimum.
    """
    upper_z, upper_u, upper_keys, lower_z, lower_u, lower_keys = envelope
    i = bisect_left(upper_keys, -s)
    j = bisect_left(lower_keys, s)
    return max(upper_z[i] - s * upper_u[i] + mean, lower_z[j] - s * lower_u[j] - mean)


def schema_fragment(fragment: Fragment, schema: str) -> Fragment:
    """`fragment` as `schema` sees it: under v3 without the tracker-specific per-sample fields.

    Features and (sequence models) encoder windows both go through this, in training and serving,
    so a v3 model can never read `velocity` or `detection_confidence`, whatever the input holds.
    """
    if schema != SCHEMA_V3 or (fragment.velocity is None and fragment.confidence is None):
        return fragment
    return fragment.without_tracker_fields()


def _summarize(fragment: Fragment, schema: str) -> FragmentFeatures:
    """Compute a fragment's `FragmentFeatures` for one schema (the cache's miss path)."""
    v2 = schema != SCHEMA_V1
    fragment = schema_fragment(fragment, schema)
    s = FragmentFeatures()
    t, x, y, n = fragment.t, fragment.x, fragment.y, fragment.n
    s.schema, s.id, s.n = schema, fragment.id, n
    s.direction = float(fragment.direction)
    s.t_start, s.t_end = float(t[0]), float(t[-1])
    if v2:
        # One clock for everything: the arrays, which the stitcher's gate also reads.
        s.gap_start, s.gap_end = s.t_start, s.t_end
        s.start_x, s.end_x = float(x[0]), float(x[-1])
    else:
        s.gap_start, s.gap_end = fragment.first_timestamp_field, fragment.last_timestamp_field
        s.start_x, s.end_x = fragment.starting_x_field, fragment.ending_x_field
    s.duration = s.gap_end - s.gap_start
    s.y_mean, s.y_std = _mean_std(y)

    speed = fragment.velocity
    if speed is None and v2:
        # FEATURES.md: a missing or mismatched speed field is replaced by |dx/dt| from the
        # fragment's own positions, |np.gradient(x, t)| (the definition `windows` uses too).
        speed = np.abs(_gradient(x[None, :], np.diff(t))[0]) if n > 1 else np.zeros(1)
    s.has_velocity = 0.0 if speed is None else 1.0
    if speed is None:
        s.vel_mean = s.vel_first = s.vel_last = 0.0
    else:
        s.vel_mean, s.vel_first, s.vel_last = _mean(speed), float(speed[0]), float(speed[-1])
    if v2:
        # The same 1 ft/s floor as curvature: a (nearly) stopped B would otherwise make vel_ratio
        # explode (~1e7 in stop-and-go traffic) and drive a linear model's logit with it.
        s.vel_den = math.copysign(max(abs(s.vel_first), VEL_RATIO_SPEED_FLOOR), s.vel_first)
    else:
        den = s.vel_first + EPS
        s.vel_den = den if den != 0.0 else math.inf

    s.length = _mean(fragment.length) if fragment.length is not None else 0.0
    s.width = _mean(fragment.width) if fragment.width is not None else 0.0
    s.has_height = 0.0 if fragment.height is None else 1.0
    s.height = _mean(fragment.height) if fragment.height is not None else 0.0
    conf = fragment.confidence
    s.has_confidence = 0.0 if conf is None else 1.0
    s.conf_mean, s.conf_min = (1.0, 1.0) if conf is None else (_mean(conf), float(np.minimum.reduce(conf)))

    # Windows: v1 the last / first 25 samples, v2 the last / first second of the fragment.
    if v2:
        m_tail = n - int(np.searchsorted(t - t[-1], WINDOW_TOLERANCE - WINDOW_SECONDS, side="left"))
        m_head = int(np.searchsorted(t - t[0], WINDOW_SECONDS - WINDOW_TOLERANCE, side="right"))
    else:
        m_tail = m_head = min(n, WINDOW_SAMPLES)
    m_tail, m_head = max(m_tail, 1), max(m_head, 1)

    # As A: true WLS through the tail, heaviest at the end, times relative to the last sample.
    t_tail = t[n - m_tail:] - t[-1]
    slope, t_mean, z_mean = weighted_line_fit(t_tail, fragment.xy[:, n - m_tail:], junction_weights(m_tail, True))
    s.tail_single = 1.0 if m_tail == 1 else 0.0
    s.slope_x, s.slope_y = float(slope[0]), float(slope[1])
    s.tail_x, s.tail_y = float(z_mean[0]), float(z_mean[1])
    s.tail_lag = -t_mean

    # As B: moments of the head window, centred so variances do not cancel catastrophically.
    u = t[:m_head] - t[0]
    zh = fragment.xy[:, :m_head]
    s.head_m = m_head
    s.head_u_mean = _mean(u)
    head_mean = _add_reduce(zh, axis=1) / m_head
    s.head_x_mean, s.head_y_mean = head_mean.tolist()
    uc = u - s.head_u_mean
    centred = zh - head_mean[:, None]
    xc, yc = centred
    s.head_u_var = float(uc @ uc) / m_head
    s.head_x_var = float(xc @ xc) / m_head
    s.head_y_var = float(yc @ yc) / m_head
    # The variance of a pair's projection errors is var(zc - s uc) = r + var_u (s - s*)^2, with s*
    # the head's own least-squares slope and r its residual variance (computed from the residuals):
    # two non-negative terms, where var_z - 2 s cov + s^2 var_u would cancel catastrophically.
    for axis, zc in (("x", xc), ("y", yc)):
        own = float(uc @ zc) / float(uc @ uc) if m_head > 1 else 0.0
        residual = zc - own * uc
        setattr(s, f"head_{axis}_own", own)
        setattr(s, f"head_{axis}_resvar", float(residual @ residual) / m_head)
    s.head_log_var = math.log(s.head_x_var + EPS) + math.log(s.head_y_var + EPS)
    s.head_u, s.head_z = uc, centred
    s.head_envelopes = None  # built on the first scalar pair that needs it (`_ScalarOps`)
    # REFERENCE.md §1.3 (39-40): per-step velocities over the whole fragment, the first
    # min(m_head, n - 1) of them averaged; the +1e-6 is the reference's.
    s.has_vact = 1.0 if n > 1 else 0.0
    if n > 1:
        k = min(m_head, n - 1)
        dt = t[1:k + 1] - t[:k] + EPS
        xy = fragment.xy
        step = xy[:, 1:k + 1] - xy[:, :k]
        step /= dt
        s.vact_x, s.vact_y = (_add_reduce(step, axis=1) / k).tolist()
    else:
        s.vact_x = s.vact_y = 0.0
    if v2:
        s.vact_x *= s.direction
    s.curvature_mean, s.curvature_std = _curvature(fragment, v2)
    if v2:
        s.a_row = None
        slots = _linear_slots(s)
        s.a_block = _a_block(s, slots[0])
        s.b_role = _BRole(s, slots)
    else:
        s.a_row = np.array([[getattr(s, f) for f in _A_FIELDS]], dtype=np.float64)
        s.a_block = s.b_role = None
    return s


class _ScalarOps:
    """Math for one pair: A's quantities are Python floats."""

    sqrt = staticmethod(math.sqrt)
    log = staticmethod(math.log)
    maximum = staticmethod(max)
    any = staticmethod(bool)

    @staticmethod
    def projection_max(b: FragmentFeatures, slope_x, slope_y, mean_x, mean_y):
        envelopes = b.head_envelopes
        if envelopes is None:  # idempotent, so a race between threads is harmless
            envelopes = b.head_envelopes = _head_envelopes(b.head_u, b.head_z)
        x_envelope, y_envelope = envelopes
        return _envelope_max(x_envelope, slope_x, mean_x), _envelope_max(y_envelope, slope_y, mean_y)

    @staticmethod
    def distance(d, v2: bool):
        if not math.isfinite(d) or d < -DISTANCE_SENTINEL:
            return DISTANCE_SENTINEL
        return min(max(d, 0.0), DISTANCE_SENTINEL) if v2 else d

    @staticmethod
    def coefficient(d):
        return math.exp(-d) if d < COEFF_CUTOFF else 0.0


class _ArrayOps:
    """Math for many pairs against one B: A's quantities are (K,) arrays."""

    sqrt = staticmethod(np.sqrt)
    log = staticmethod(np.log)
    maximum = staticmethod(np.maximum)
    any = staticmethod(np.any)

    @staticmethod
    def projection_max(b: FragmentFeatures, slope_x, slope_y, mean_x, mean_y):
        peaks = []
        for z, slope, mean in zip(b.head_z, (slope_x, slope_y), (mean_x, mean_y)):
            e = z - slope[:, None] * b.head_u  # (K, m): |z_j - s u_j + mean|
            e += mean[:, None]
            peaks.append(np.abs(e, out=e).max(axis=1))
        return peaks[0], peaks[1]

    @staticmethod
    def distance(d, v2: bool):
        bad = ~np.isfinite(d) | (d < -DISTANCE_SENTINEL)
        if v2:
            d = np.clip(d, 0.0, DISTANCE_SENTINEL)
        return np.where(bad, DISTANCE_SENTINEL, d)

    @staticmethod
    def coefficient(d):
        return np.where(d < COEFF_CUTOFF, np.exp(-np.minimum(d, COEFF_CUTOFF)), 0.0)


def _pair_values(a, b: FragmentFeatures, ops, v2: bool) -> list:
    """The 47 features in `FEATURE_NAMES` order for A (floats or (K,) columns) against one B.

    Only arithmetic that works on floats and arrays alike, plus `ops`; conditions on A are written
    as products with 0/1 indicators, conditions on B (one fragment) as plain branches.
    """
    # 1-5: times and the gap along the road.
    duration_ratio = a.duration / (b.duration + EPS)
    if v2:
        spatial_gap = a.direction * (b.start_x - a.end_x)
    else:
        # D1: the builder's westbound formula spans A's start to B's end.
        eastbound = (a.direction + 1.0) * 0.5
        spatial_gap = eastbound * (b.start_x - a.end_x) + (1.0 - eastbound) * (a.start_x - b.end_x)
    values = [b.gap_start - a.gap_end, a.duration, b.duration, duration_ratio, spatial_gap,
              a.y_mean, b.y_mean, abs(b.y_mean - a.y_mean), a.y_std, b.y_std]

    # 11-14: speeds. v1 (D2): all four need the field on both fragments, else 0, 0, 0, 1.
    if v2:
        values += [a.vel_mean, b.vel_mean, abs(a.vel_last - b.vel_first), a.vel_last / b.vel_den]
    elif b.has_velocity:
        both = a.has_velocity
        values += [both * a.vel_mean, both * b.vel_mean, both * abs(a.vel_last - b.vel_first),
                   both * (a.vel_last / b.vel_den) + (1.0 - both)]
    else:
        values += [0.0, 0.0, 0.0, 1.0]

    # 15-27: dimensions and confidence. v1 (D3): height and confidence need both fragments.
    values += [a.length, b.length, abs(a.length - b.length), a.width, b.width, abs(a.width - b.width)]
    if v2:
        values += [a.height, b.height, abs(a.height - b.height),
                   a.conf_mean, b.conf_mean, a.conf_min, b.conf_min]
    else:
        if b.has_height:
            both = a.has_height
            values += [both * a.height, both * b.height, both * abs(a.height - b.height)]
        else:
            values += [0.0, 0.0, 0.0]
        if b.has_confidence:
            both = a.has_confidence
            rest = 1.0 - both
            values += [both * a.conf_mean + rest, both * b.conf_mean + rest,
                       both * a.conf_min + rest, both * b.conf_min + rest]
        else:
            values += [1.0, 1.0, 1.0, 1.0]
    values.append(1.0 - abs(a.direction - b.direction) * 0.5)

    # 29-42: A's tail line projected onto B's head (REFERENCE.md §1.3), times u from B's start.
    # at = the line's value at u = 0; the projection errors are e = z - (at + slope u).
    gap = b.t_start - a.t_end
    lead = gap + a.tail_lag
    at_x = a.tail_x + a.slope_x * lead
    at_y = a.tail_y + a.slope_y * lead
    if ops.any(a.tail_single):
        # A one-sample window has statsmodels' minimum-norm line through (lag, z), lag = the
        # sample's time after tau0 = min(tA0, tB0): nonzero only when B starts before A.
        lag = a.tail_single * ops.maximum(-gap, 0.0)
        q = 1.0 / (1.0 + lag * lag)
        slope_x = a.slope_x + a.tail_x * lag * q
        slope_y = a.slope_y + a.tail_y * lag * q
        at_x = at_x * q
        at_y = at_y * q
    else:  # the same numbers with lag = 0, q = 1, without the arithmetic
        slope_x, slope_y = a.slope_x, a.slope_y
    mean_x = b.head_x_mean - at_x - slope_x * b.head_u_mean
    mean_y = b.head_y_mean - at_y - slope_y * b.head_u_mean
    off_x = slope_x - b.head_x_own
    off_y = slope_y - b.head_y_own
    var_x = b.head_x_resvar + b.head_u_var * (off_x * off_x)
    var_y = b.head_y_resvar + b.head_u_var * (off_y * off_y)
    max_x, max_y = ops.projection_max(b, slope_x, slope_y, mean_x, mean_y)
    # Two 2-D diagonal Gaussians: the projected points (variance = slope^2 var u) and B's points.
    pred_x = slope_x * slope_x * b.head_u_var + EPS
    pred_y = slope_y * slope_y * b.head_u_var + EPS
    pooled_x = (pred_x + (b.head_x_var + EPS)) * 0.5
    pooled_y = (pred_y + (b.head_y_var + EPS)) * 0.5
    log = ops.log
    distance = ops.distance(
        0.125 * (mean_x * mean_x / pooled_x + mean_y * mean_y / pooled_y)
        + 0.5 * (log(pooled_x) + log(pooled_y) - 0.5 * (log(pred_x) + log(pred_y) + b.head_log_var)), v2)
    if v2:
        # Direction-normalised x motion: westbound pairs look like eastbound ones.
        fit_x, error_x = a.direction * slope_x, a.direction * mean_x
    else:
        fit_x, error_x = slope_x, mean_x
    values += [error_x, ops.sqrt(var_x), max_x, mean_y, ops.sqrt(var_y), max_y,
               distance, ops.coefficient(distance), fit_x, slope_y, b.vact_x, b.vact_y]
    if b.has_vact:
        values += [abs(fit_x - b.vact_x), abs(slope_y - b.vact_y)]
    else:
        values += [0.0, 0.0]

    # 43-47: curvature.
    values += [a.curvature_mean, a.curvature_std, b.curvature_mean, b.curvature_std,
               abs(a.curvature_mean - b.curvature_mean)]
    return values


class _Columns:
    """A's quantities for many candidates as attribute columns, mirroring `FragmentFeatures`."""

    __slots__ = _A_FIELDS

    def __init__(self, rows: np.ndarray):
        for name, column in zip(_A_FIELDS, np.ascontiguousarray(rows.T)):
            setattr(self, name, column)


# ------------------------------------------------------------------------------------------------------
# The v2 batch path: a few numpy operations on (K, w) blocks instead of ~150 on (K,) columns.
#
# Each fragment stores, once, an A-role row (`a_block`) and B-role vectors (`b_block`) laid out so that
# most features of K pairs come out of one multiply and one subtract: slot j of the "linear" block is
# a_j * m_j - s_j with (a_j, m_j, s_j) chosen so that the result is, operation for operation, the
# scalar definition in `_pair_values` (IEEE rounding is symmetric under negation, and products with
# 1, 0 and +-0.5 are exact): copies of A (a, 1, 0), constants of B (0, 1, -b), time_gap (-a.gap_end,
# 1, -b.gap_start), differences (a, 1, b) whose absolute value is taken next, direction_match
# (a.direction, b.direction / 2, -1/2). The remaining features (ratios, spatial gap, the projection
# block) follow `_pair_values` operation for operation on (K, 2) x/y blocks, so every value equals the
# single-pair path bit for bit except the logs and exps (numpy's vs libm's, ~1e-16 relative).

def _linear_slots(s: "FragmentFeatures") -> tuple[list, list, list]:
    """The linear block of `s`: (A-role slot values, B-role multipliers, B-role subtrahends), in the
    order of `_LINEAR_NAMES`: copies of A (a, 1, 0), constants of B (0, 1, -b), time_gap
    (-gap_end, 1, -gap_start), direction_match (direction, direction / 2, -1/2), the projection gap
    (-t_end, 1, -t_start), then differences (a, 1, b)."""
    a_copies = [s.duration, s.y_mean, s.y_std, s.vel_mean, s.length, s.width, s.height, s.conf_mean,
                s.conf_min, s.curvature_mean, s.curvature_std]
    a_part, mul, sub = [], [], []
    for value in a_copies[:9]:  # copy of A, then the same quantity as a constant of B
        a_part += (value, 0.0)
        sub += (0.0, -value)
    a_part += (0.0, 0.0)  # velocity_actual_x_mean, velocity_actual_y_mean (B only)
    sub += (-s.vact_x, -s.vact_y)
    for value in a_copies[9:]:
        a_part += (value, 0.0)
        sub += (0.0, -value)
    mul += [1.0] * len(a_part)
    a_part += (-s.gap_end, s.direction, -s.t_end, s.end_x)
    mul += (1.0, 0.5 * s.direction, 1.0, 1.0)
    sub += (-s.gap_start, -0.5, -s.t_start, s.start_x)
    a_part += (s.y_mean, s.vel_last, s.length, s.width, s.height, s.curvature_mean)
    mul += (1.0,) * 6
    sub += (s.y_mean, s.vel_first, s.length, s.width, s.height, s.curvature_mean)
    return a_part, mul, sub


_LINEAR_NAMES = (
    "duration_a", "duration_b", "y_mean_a", "y_mean_b", "y_std_a", "y_std_b", "vel_a_mean", "vel_b_mean",
    "length_a", "length_b", "width_a", "width_b", "height_a", "height_b", "conf_a_mean", "conf_b_mean",
    "conf_a_min", "conf_b_min", "velocity_actual_x_mean", "velocity_actual_y_mean",
    "curvature_a_mean", "curvature_b_mean", "curvature_a_std", "curvature_b_std",
    "time_gap", "direction_match", "<gap>", "<end_x - start_x>",
    "y_diff", "vel_diff", "length_diff", "width_diff", "height_diff", "curvature_diff",
)
_N_LINEAR = len(_LINEAR_NAMES)
_ABS = slice(_LINEAR_NAMES.index("y_diff"), _N_LINEAR)
_GAP = _LINEAR_NAMES.index("<gap>")
_END_MINUS_START = _LINEAR_NAMES.index("<end_x - start_x>")
# After the linear block: computed columns, x/y pairs adjacent where one operation makes both.
_COMPUTED_NAMES = (
    "duration_ratio", "vel_ratio", "spatial_gap",
    "projection_error_x_mean", "projection_error_y_mean", "projection_error_x_std",
    "projection_error_y_std", "projection_error_x_max", "projection_error_y_max",
    "velocity_fit_x", "velocity_fit_y", "velocity_mismatch_x", "velocity_mismatch_y",
    "bhattacharyya_distance", "bhattacharyya_coeff",
)
_WORK_NAMES = _LINEAR_NAMES + _COMPUTED_NAMES
_W = {name: i for i, name in enumerate(_WORK_NAMES)}
assert set(FEATURE_NAMES) <= set(_WORK_NAMES)
# A-role row after the linear slots: the ratio numerators, -direction, then the projection inputs.
_A_RATIO = slice(_N_LINEAR, _N_LINEAR + 2)
_A_NEGDIR = _N_LINEAR + 2
_A_LAG = _N_LINEAR + 3
_A_TAIL = slice(_N_LINEAR + 4, _N_LINEAR + 6)
_A_SLOPE = slice(_N_LINEAR + 6, _N_LINEAR + 8)
_A_DIR = _N_LINEAR + 8
_A_DIR_ONE = slice(_N_LINEAR + 8, _N_LINEAR + 10)  # rows direction, 1: scales x by direction, y by 1
_A_SINGLE = _N_LINEAR + 10


class _BRole:
    """The v2 batch path's constants of one fragment as the later one (B) of every pair, as columns
    that broadcast against (rows, K) blocks."""

    __slots__ = ("mul", "sub", "ratio_den", "head_mean", "u_mean", "u_var", "own", "resvar", "var_eps",
                 "log_var", "head_z", "head_u", "vact", "has_vact")

    def __init__(self, s: "FragmentFeatures", slots: tuple):
        # `slots`: `_linear_slots(s)`, shared with `_a_block`. One array for all of them (the cold path
        # builds one of these per new fragment), sliced into (rows, 1) columns.
        _, mul, sub = slots
        column = np.array(mul + sub + [
            s.duration + EPS, s.vel_den, s.head_x_mean, s.head_y_mean, s.head_x_own, s.head_y_own,
            s.head_x_resvar, s.head_y_resvar, s.head_x_var + EPS, s.head_y_var + EPS, s.vact_x, s.vact_y,
        ])[:, None]
        n = len(mul)
        self.mul, self.sub = column[:n], column[n:2 * n]
        (self.ratio_den, self.head_mean, self.own, self.resvar, self.var_eps, self.vact) = \
            (column[i:i + 2] for i in range(2 * n, 2 * n + 12, 2))
        self.u_mean, self.u_var, self.log_var = s.head_u_mean, s.head_u_var, s.head_log_var
        self.head_z = s.head_z[:, :, None]  # (2, m, 1): centred x and y of the head samples
        self.head_u = s.head_u[:, None]     # (m, 1): their centred times
        self.has_vact = bool(s.has_vact)


def _a_block(s: "FragmentFeatures", linear: list) -> np.ndarray:
    """The v2 batch path's (w, 1) column of one fragment as the earlier one (A) of a pair (`linear`: the
    A-role values of `_linear_slots(s)`); K of them side by side make the contiguous (w, K) block."""
    return np.array(linear + [s.duration, s.vel_last, -s.direction, s.tail_lag, s.tail_x,
                              s.tail_y, s.slope_x, s.slope_y, s.direction, 1.0, s.tail_single])[:, None]


def _batch_v2(a: np.ndarray, b: _BRole, any_single: bool) -> np.ndarray:
    """v2 features of K pairs as a (len(_WORK_NAMES), K) block, rows in `_WORK_NAMES` order.

    `a` is the (w, K) block of the `_a_block` columns side by side (contiguous: every quantity of A is a
    contiguous row, so each operation below is one numpy call on a contiguous (K,) or (2, K) block),
    `b` the later fragment, `any_single` whether some A has a one-sample tail window.
    """
    k = a.shape[1]
    work = np.empty((len(_WORK_NAMES), k))
    linear = work[:_N_LINEAR]
    np.multiply(a[:_N_LINEAR], b.mul, out=linear)
    linear -= b.sub
    np.abs(work[_ABS], out=work[_ABS])
    np.divide(a[_A_RATIO], b.ratio_den, out=work[_W["duration_ratio"]:_W["vel_ratio"] + 1])
    np.multiply(work[_END_MINUS_START], a[_A_NEGDIR], out=work[_W["spatial_gap"]])

    # 29-42, as `_pair_values` (x and y as two rows).
    gap = work[_GAP]
    lead = gap + a[_A_LAG]
    slope = a[_A_SLOPE]
    at = slope * lead
    at += a[_A_TAIL]
    if any_single:
        lag = a[_A_SINGLE] * np.maximum(-gap, 0.0)
        q = 1.0 / (1.0 + lag * lag)
        slope = slope + a[_A_TAIL] * lag * q
        at = at * q
    # mean = B's head mean - at - slope * u_mean, written where projection_error_*_mean go
    mean = work[_W["projection_error_x_mean"]:_W["projection_error_y_mean"] + 1]
    np.subtract(b.head_mean, at, out=mean)
    mean -= slope * b.u_mean
    var = work[_W["projection_error_x_std"]:_W["projection_error_y_std"] + 1]
    np.subtract(slope, b.own, out=var)
    var *= var
    var *= b.u_var
    var += b.resvar
    np.sqrt(var, out=var)
    # The largest |projection error| |z_j - s u_j + mean| over B's head samples, x and y at once: (2, m, K).
    errors = slope[:, None, :] * b.head_u
    np.subtract(b.head_z, errors, out=errors)
    errors += mean[:, None, :]
    np.abs(errors, out=errors)
    errors.max(axis=1, out=work[_W["projection_error_x_max"]:_W["projection_error_y_max"] + 1])
    # rows pooled x, y, pred x, y; logged in one call
    logs = np.empty((4, k))
    pred = logs[2:]
    np.multiply(slope, slope, out=pred)
    pred *= b.u_var
    pred += EPS
    pooled = logs[:2]
    np.add(pred, b.var_eps, out=pooled)
    pooled *= 0.5
    quad = mean * mean
    quad /= pooled
    np.log(logs, out=logs)
    sums = logs[0::2] + logs[1::2]  # log pooled_x + log pooled_y, log pred_x + log pred_y
    inner = sums[1]
    inner += b.log_var
    inner *= 0.5
    outer = sums[0]
    outer -= inner
    outer *= 0.5
    distance = work[_W["bhattacharyya_distance"]]
    np.add(quad[0], quad[1], out=distance)
    distance *= 0.125
    distance += outer
    # distance(): 999 where not finite or < -999, else clipped to [0, 999]; fmin maps NaN to 999 too.
    np.fmin(distance, DISTANCE_SENTINEL, out=distance)
    values = distance.tolist()
    low = min(values) < -DISTANCE_SENTINEL
    if low:
        distance[distance < -DISTANCE_SENTINEL] = DISTANCE_SENTINEL
    np.maximum(distance, 0.0, out=distance)
    # coefficient(): exp(-d) below the cut-off, else 0
    coefficient = work[_W["bhattacharyya_coeff"]]
    np.negative(distance, out=coefficient)
    np.exp(coefficient, out=coefficient)
    if low or max(values) >= COEFF_CUTOFF:
        coefficient[distance >= COEFF_CUTOFF] = 0.0
    # Direction-normalised x: error_x, fit_x = direction * (mean_x, slope_x); y times 1.
    direction_one = a[_A_DIR_ONE]
    mean *= direction_one
    fit = work[_W["velocity_fit_x"]:_W["velocity_fit_y"] + 1]
    np.multiply(slope, direction_one, out=fit)
    mismatch = work[_W["velocity_mismatch_x"]:_W["velocity_mismatch_y"] + 1]
    if b.has_vact:
        np.subtract(fit, b.vact, out=mismatch)
        np.abs(mismatch, out=mismatch)
    else:
        mismatch[...] = 0.0
    return work

class FeatureExtractor:
    """Engineered pair features of one schema, with per-fragment work cached.

    Parameters
    ----------
    schema : "i24-47-v2" (default), "i24-47-v3" or "i24-47-v1"; the manifest of a model names the one
        it needs.
    names : the features to emit, in this order (default: all 47 in `FEATURE_NAMES` order).
    cache_size : how many `FragmentFeatures` to keep (bounded LRU keyed by fragment identity).

    Schemas
    -------
    v1, the reference dataset builder bug for bug (REFERENCE.md §1.2-§1.5):
      time_gap and durations from the stored first/last_timestamp fields; spatial_gap and the
      x ends from the stored starting_x/ending_x, westbound A.starting_x - B.ending_x (D1);
      velocity features need the field on both fragments, else 0, 0, 0 and vel_ratio 1 (D2);
      height and confidence need both, else 0 / 1 (D3); missing length/width count 0;
      25-sample windows; true WLS (not polyfit, D7); anchor always A; index-based curvature;
      bhattacharyya_distance = 999 when not finite, otherwise unclipped (the npz holds values up
      to 7e4). A velocity array of another length than the timestamps counts as missing.
    v2, FEATURES.md §1's corrections, nothing else:
      every time and x end from the arrays (the gate's clock); spatial_gap = direction *
      (B.x[0] - A.x[-1]); per-fragment defaults (speed missing or mismatched -> |dx/dt| from
      np.gradient of the fragment's own positions, confidence -> 1, dimensions -> 0);
      x motion direction-normalised (velocity_fit_x, velocity_actual_x_mean and
      projection_error_x_mean are multiplied by direction; the stored speed field is already
      unsigned); curvature from time derivatives with max(speed, 1 ft/s)^3 below; windows are
      the last / first 1.0 s (samples within 1 s - 1 ms of the end / start, at least one);
      bhattacharyya_distance clipped to [0, 999].
    v3, v2 computed as if no fragment had `velocity` or `detection_confidence` (`TRACKER_FIELDS`):
      speed always |dx/dt| from positions, confidence always 1. Values equal v2's on documents
      without those two fields.
    All: every feature is finite for valid fragments of any length (1-3 samples, stationary
    vehicles, repeated positions); vel_ratio is 0 when B's first speed is exactly -1e-6.
    """

    def __init__(self, schema: str = DEFAULT_SCHEMA, names: Sequence[str] | None = None,
                 cache_size: int = 4096):
        if schema not in SCHEMAS:
            raise ValueError(f"unknown feature schema {schema!r}; known: {', '.join(SCHEMAS)}")
        self.schema = schema
        self.names = _check_names(names)
        self._v2 = schema != SCHEMA_V1
        self._index = [_INDEX[n] for n in self.names]
        self._all = self.names == FEATURE_NAMES
        self._perm = np.array([_W[n] for n in self.names], dtype=np.intp)
        self._cache = FragmentCache(self._build, cache_size)

    def _build(self, doc: Mapping[str, Any]) -> FragmentFeatures:
        return _summarize(Fragment.from_document(doc), self.schema)

    @property
    def cache(self) -> FragmentCache:
        """The per-fragment summary cache (hits, misses, size)."""
        return self._cache

    @property
    def schema_hash(self) -> str:
        """`schema_hash(schema, names)` of this extractor, for manifests."""
        return schema_hash(self.schema, self.names)

    def summarize(self, doc: Mapping[str, Any]) -> FragmentFeatures:
        """The cached per-fragment quantities of `doc` (validated once; `FragmentError` if invalid)."""
        return self._cache.get(doc)

    def summarize_fragment(self, fragment: Fragment) -> FragmentFeatures:
        """The per-fragment quantities of an already validated `Fragment`, uncached.

        For callers that validate a document once and derive several things from it (a sequence
        model's windows and features); `summarize(doc)` is the cached, validating entry point.
        """
        return _summarize(fragment, self.schema)

    def _check(self, summary: FragmentFeatures) -> None:
        if summary.schema != self.schema:
            raise ValueError(f"summary of {summary.id!r} follows {summary.schema!r}, "
                             f"this extractor {self.schema!r}")

    def pair_from_summaries(self, sa: FragmentFeatures, sb: FragmentFeatures) -> np.ndarray:
        """Features of the pair (A = `sa` earlier, B = `sb` later) as a float64 vector of len(names)."""
        self._check(sa)
        self._check(sb)
        values = _pair_values(sa, sb, _ScalarOps, self._v2)
        if self._all:
            return np.array(values, dtype=np.float64)
        return np.array([values[i] for i in self._index], dtype=np.float64)

    def pair_into(self, sa: FragmentFeatures, sb: FragmentFeatures, out: np.ndarray) -> None:
        """`pair_from_summaries(sa, sb)` written into `out` (a float vector of len(names), e.g. a bound
        graph input), without an intermediate array: the single-pair hot path."""
        if sa.schema != self.schema:
            self._check(sa)
        if sb.schema != self.schema:
            self._check(sb)
        values = _pair_values(sa, sb, _ScalarOps, self._v2)
        out[:] = values if self._all else [values[i] for i in self._index]

    def batch_from_summaries(self, list_sa: Sequence[FragmentFeatures], sb: FragmentFeatures) -> np.ndarray:
        """Features of many earlier fragments against one later fragment: (K, len(names)) float64.

        Row k equals `pair_from_summaries(list_sa[k], sb)` (to rounding of log/exp, ~1e-15).
        """
        self._check(sb)
        k = len(list_sa)
        if k == 0:
            return np.empty((0, len(self.names)))
        if self._v2:
            return self._batch_v2(list_sa, sb).take(self._perm, axis=0).T
        for sa in list_sa:
            self._check(sa)
        out = np.empty((k, len(self.names)))
        columns = _Columns(np.concatenate([sa.a_row for sa in list_sa]))
        with np.errstate(all="ignore"):
            values = _pair_values(columns, sb, _ArrayOps, self._v2)
        # Features that depend on A are arrays, those of B alone are numbers: two assignments.
        varying, constant = [], []
        for j, i in enumerate(self._index):
            (varying if isinstance(values[i], np.ndarray) else constant).append(j)
        if constant:
            out[:, constant] = [values[self._index[j]] for j in constant]
        if varying:
            out[:, varying] = np.array([values[self._index[j]] for j in varying]).T
        return out

    def _batch_v2(self, list_sa: Sequence[FragmentFeatures], sb: FragmentFeatures) -> np.ndarray:
        """`_batch_v2` of non-empty `list_sa` against `sb` (checked): (len(_WORK_NAMES), K)."""
        schema, any_single = self.schema, False
        for sa in list_sa:
            if sa.schema != schema:
                self._check(sa)
            if sa.tail_single:
                any_single = True
        a = np.concatenate([sa.a_block for sa in list_sa], axis=1)
        with np.errstate(all="ignore"):
            return _batch_v2(a, sb.b_role, any_single)

    def pair(self, doc_a: Mapping[str, Any], doc_b: Mapping[str, Any]) -> np.ndarray:
        """Features of the pair `doc_a` (earlier) -> `doc_b` (later): float64 vector of len(names).

        Raises `FragmentError` (naming `_id` and field) for an invalid document.
        """
        return self.pair_from_summaries(self._cache.get(doc_a), self._cache.get(doc_b))

    def batch(self, docs_a: Sequence[Mapping[str, Any]], doc_b: Mapping[str, Any]) -> np.ndarray:
        """Features of K earlier fragments against one later fragment: (K, len(names)) float64."""
        return self.batch_from_summaries(self._cache.get_many(docs_a), self._cache.get(doc_b))


def pair_features(doc_a: Mapping[str, Any], doc_b: Mapping[str, Any], schema: str = DEFAULT_SCHEMA,
                  names: Sequence[str] | None = None) -> np.ndarray:
    """One pair's features without keeping an extractor (no caching across calls; for one-off use).

    Parameters
    ----------
    doc_a, doc_b : the earlier and the later fragment documents.
    schema, names : as for `FeatureExtractor`.

    Returns
    -------
    float64 vector of len(names) (47 by default).
    """
    return FeatureExtractor(schema, names, cache_size=2).pair(doc_a, doc_b)
