"""The I-24 Bhattacharyya stitch cost (the hand-made baseline), closed form, numpy only.

REFERENCE.md §2.1 with the per-dimension closed form of §2.2: a weighted-least-squares line through
the junction end of the longer fragment is projected across the gap inside a cone that widens with
time, and compared with the other fragment's first (or last) 25 samples. Everything that depends on
one fragment only (validation, windows, both fits) is computed once and cached; a pair costs a few
vector operations over <= 25 samples, and `compute_costs` scores all candidates of a new fragment in
one vectorised pass.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .cache import FragmentCache
from .cost import INVALID_COST, ConfigError, CostFunctionFactory, StitchCostFunction
from .fragment import Fragment

__all__ = [
    "BhattacharyyaCostFunction",
    "WINDOW_SAMPLES",
    "DEFAULT_CONE",
    "weighted_line_fit",
    "junction_weights",
    "cone_parameters",
    "summarize_fragment",
    "pair_cost",
    "batch_costs",
]

# The reference's dt = 0.04 s and window int(1 / dt): one second of samples at 25 Hz.
WINDOW_SAMPLES = 25
# Cone parameters of the reference `stitcher_args` (REFERENCE.md §2): widths in ft, growth per ft travelled.
DEFAULT_CONE = {"cx": 0.2, "mx": 0.1, "cy": 2.0, "my": 0.1}
# cost = D / n + TIME_COST * gap, hard-coded in the reference.
TIME_COST = 0.1
# The smallest WLS weight, at the end of the window farthest from the junction (REFERENCE.md §1.3).
MIN_WEIGHT = 1e-6


@functools.lru_cache(maxsize=256)
def junction_weights(m: int, at_end: bool) -> np.ndarray:
    """The WLS weights of an m-sample window, linspace(1e-6, 1, m), heaviest at the junction.

    Parameters
    ----------
    m : window length.
    at_end : True for a tail window (heaviest last), False for a head window (heaviest first).

    Returns a read-only array shared by all callers (the same few lengths recur for every fragment).
    """
    w = np.linspace(MIN_WEIGHT, 1.0, m) if at_end else np.linspace(1.0, MIN_WEIGHT, m)
    w.flags.writeable = False
    return w


def weighted_line_fit(t: np.ndarray, z: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """True weighted least squares of z ~ a + b t (weights multiply squared residuals, statsmodels WLS).

    Parameters
    ----------
    t : (n,) sample times, strictly increasing. Pass times relative to a nearby origin: epoch
        seconds (~1.6e9) would cost about seven digits; the fit itself is shift-invariant.
    z : (d, n) values, one row per fitted quantity (e.g. x and y).
    w : (n,) positive weights.

    Returns
    -------
    slope : (d,) fitted slopes b.
    t_mean : the weighted mean time t̄.
    z_mean : (d,) weighted means z̄; the line is z̄ + b (t - t̄).
        For n = 1 the slope is 0 and the line is the sample itself (statsmodels' minimum-norm
        solution when the sample sits at the time origin; see `features` for the general case).
    """
    sw = float(w.sum())
    t_mean = float(w @ t) / sw
    z_mean = (z @ w) / sw
    if t.shape[0] < 2:
        return np.zeros(z.shape[0]), t_mean, z_mean
    dt = t - t_mean
    wdt = w * dt
    slope = ((z - z_mean[:, None]) @ wdt) / float(wdt @ dt)
    return slope, t_mean, z_mean


def cone_parameters(param: Mapping[str, Any] | None) -> tuple[float, float, float, float]:
    """(cx, mx, cy, my) from a pp_lite `stitcher_args` dict, or from a parameters dict containing one.

    Missing keys take the reference defaults 0.2 / 0.1 / 2 / 0.1.

    Raises
    ------
    ConfigError
        A cone parameter that is not a finite number, or a width that is not positive.
    """
    if param is None:
        return DEFAULT_CONE["cx"], DEFAULT_CONE["mx"], DEFAULT_CONE["cy"], DEFAULT_CONE["my"]
    nested = param.get("stitcher_args")
    if isinstance(nested, Mapping):
        param = nested
    values = []
    for key in ("cx", "mx", "cy", "my"):
        value = param.get(key, DEFAULT_CONE[key])
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"stitcher_args.{key} must be a number, got {value!r:.40}") from None
        if not math.isfinite(value):
            raise ConfigError(f"stitcher_args.{key} must be finite, got {value}")
        values.append(value)
    if values[0] <= 0 or values[2] <= 0 or values[1] < 0 or values[3] < 0:
        raise ConfigError("stitcher_args: cone widths cx, cy must be positive and growth rates mx, my "
                          f"non-negative, got cx={values[0]}, mx={values[1]}, cy={values[2]}, my={values[3]}")
    return values[0], values[1], values[2], values[3]


class _Window:
    """One end of a fragment as the *measured* side of a pair.

    `offset[j]` >= 0 is the time distance of sample j from the junction (head: t - t[0]; tail:
    t[-1] - t), so the cone time of a pair is tau = gap + offset; index 0 is the earliest sample.
    `basis` (5, m) holds the rows [offset, 1, x, y, offset - offset[0]] that every pair's
    per-sample quantities are linear combinations of (see `_coefficient_matrices`). `padded`
    (1, 7, 25) is the batch path's block: the basis padded to WINDOW_SAMPLES with copies of sample 0 (finite, and
    masked out), row 5 the sample mask, row 6 starting with (offset[0], var y, m). `samples` holds
    (offset, offset - offset[0], x, y) per sample as Python floats for the single-pair path.
    """

    __slots__ = ("m", "offset_first", "var_y", "basis", "samples", "padded")

    def __init__(self, offset: np.ndarray, z: np.ndarray):
        m = self.m = int(offset.shape[0])
        self.offset_first = float(offset[0])
        self.var_y = float(z[1].var())
        basis = np.empty((5, m))
        basis[0] = offset
        basis[1] = 1.0
        basis[2:4] = z
        basis[4] = offset - offset[0]
        self.basis = basis
        self.samples = tuple(zip(*basis[[0, 4, 2, 3]].tolist()))
        padded = np.zeros((1, 7, WINDOW_SAMPLES))
        padded[0, :5, :m] = basis
        padded[0, :5, m:] = basis[:, :1]
        padded[0, 5, :m] = 1.0
        padded[0, 6, :3] = self.offset_first, self.var_y, m
        self.padded = padded


class _Projection:
    """One end of a fragment as the *anchor* of a pair: the line predicting the other fragment.

    The predicted mean at cone time tau is `intercept + slope * tau` (slope along tau: +b forward,
    -b backward; 0 for x where the fit runs against the direction of travel), and the cone widens
    with `abs_slope` = |b|, always the unclamped fit. Attributes are (x, y) pairs of floats; `row`
    holds them as a (1, 6) row for the batch path: slope x, y, intercept x, y, |b| x, y.
    """

    __slots__ = ("slope_x", "slope_y", "intercept_x", "intercept_y", "abs_x", "abs_y", "row")

    def __init__(self, t: np.ndarray, z: np.ndarray, w: np.ndarray, direction: int, forward: bool):
        # t is relative to the junction (0 there), which is also the origin of tau.
        b, t_mean, z_mean = weighted_line_fit(t, z, w)
        intercept = z_mean - b * t_mean
        slope = b if forward else -b
        if b[0] * direction < 0:
            # REFERENCE.md §2.1 step 7: a fit moving against the direction of travel predicts x
            # as the window's weighted mean, for the mean only; the cone keeps |b_x|.
            slope = slope.copy()
            intercept = intercept.copy()
            slope[0] = 0.0
            intercept[0] = z_mean[0]
        self.row = np.concatenate((slope, intercept, np.abs(b)))[None, :]
        self.slope_x, self.slope_y, self.intercept_x, self.intercept_y, self.abs_x, self.abs_y = \
            self.row[0].tolist()


class _Summary:
    """Everything the cost needs from one fragment, in either role."""

    __slots__ = ("n", "t_first", "t_last", "head", "tail", "forward", "backward")

    def __init__(self, fragment: Fragment):
        t, n = fragment.t, fragment.n
        self.n = n
        self.t_first = float(t[0])
        self.t_last = float(t[-1])
        m = min(n, WINDOW_SAMPLES)
        xy = fragment.xy
        # Times relative to the junction sample: exact differences of nearby epoch seconds.
        t_tail = t[n - m:] - t[-1]
        t_head = t[:m] - t[0]
        z_tail = np.ascontiguousarray(xy[:, n - m:])
        z_head = np.ascontiguousarray(xy[:, :m])
        self.tail = _Window(-t_tail, z_tail)
        self.head = _Window(t_head, z_head)
        # Forward: this fragment is the earlier one, its tail predicts ahead, heaviest at its end.
        self.forward = _Projection(t_tail, z_tail, junction_weights(m, True), fragment.direction, True)
        # Backward: this fragment is the later one, its head predicts back, heaviest at its start.
        self.backward = _Projection(t_head, z_head, junction_weights(m, False), fragment.direction, False)


def summarize_fragment(fragment: Fragment) -> _Summary:
    """Everything the cost needs from one validated fragment (its windows and both fits): per fragment, once."""
    return _Summary(fragment)


def _summarize(doc: Mapping[str, Any]) -> _Summary:
    return _Summary(Fragment.from_document(doc))


# The coefficient matrix of one pair maps a window's basis rows [offset, 1, x, y, offset - offset[0]]
# to the six per-sample rows that `_distance` needs:
#   mu_x - x           = slope_x offset + base_x - x
#   mu_y - y           = slope_y offset + base_y - y
#   sigma_x - scale_x  = growth_x (offset - offset[0])
#   sigma_y - scale_y  = growth_y offset + (width_y - scale_y)
#   2 sigma_x scale_x  = 2 scale_x growth_x offset + 2 scale_x width_x
#   2 sigma_y scale_y  = 2 scale_y growth_y offset + 2 scale_y width_y
# with growth = m |b| (cone growth), width = c + growth gap (cone width at the junction-side sample),
# base = intercept + slope gap, scale_x the predicted spread at the first measured sample and
# scale_y = max(std of the measured y, cy) (REFERENCE.md §2.1 steps 9-10). `_pair_coefficients`
# (floats, one pair) and `_coefficient_matrices` (arrays, many pairs) evaluate these with the same
# operations in the same order, so both paths start from the same coefficients; the distances then
# differ only by summation order and the matrix product's rounding (~1e-15 relative).
_MATRIX_TEMPLATE = np.zeros((1, 6, 5))
_MATRIX_TEMPLATE[0, 0, 2] = _MATRIX_TEMPLATE[0, 1, 3] = -1.0


def _pair_coefficients(fit: _Projection, window: _Window, gap: float, cx: float, mx: float, cy: float,
                       my: float) -> tuple:
    """The non-constant coefficients of one pair, as Python floats (see the table above)."""
    growth_x = fit.abs_x * mx
    growth_y = fit.abs_y * my
    width_x = cx + growth_x * gap
    width_y = cy + growth_y * gap
    scale_x = width_x + growth_x * window.offset_first
    scale_y = math.sqrt(max(window.var_y, cy * cy))
    two_x = scale_x + scale_x
    two_y = scale_y + scale_y
    return (fit.slope_x, fit.intercept_x + fit.slope_x * gap, fit.slope_y, fit.intercept_y + fit.slope_y * gap,
            growth_x, growth_y, width_y - scale_y, two_x * growth_x, two_x * width_x, two_y * growth_y,
            two_y * width_y)


def _coefficient_matrices(fits: np.ndarray, gap: np.ndarray, first: np.ndarray, var_y: np.ndarray,
                          cx: float, mx: float, cy: float, my: float) -> np.ndarray:
    """(K, 6, 5) coefficient matrices of K pairs, x and y computed side by side.

    fits : (K, 6) anchor rows (slope x, y, intercept x, y, |b| x, y); gap, first (offset[0] of the
    measured window), var_y (its y variance) : (K,).
    """
    k = gap.size
    column = gap[:, None]
    growth = fits[:, 4:6] * np.array((mx, my))
    width = np.array((cx, cy)) + growth * column
    scale = np.empty((k, 2))
    scale[:, 0] = width[:, 0] + growth[:, 0] * first
    scale[:, 1] = np.sqrt(np.maximum(var_y, cy * cy))
    two = scale + scale
    out = np.repeat(_MATRIX_TEMPLATE, k, axis=0)
    out[:, 0:2, 0] = fits[:, 0:2]
    out[:, 0:2, 1] = fits[:, 2:4] + fits[:, 0:2] * column
    out[:, 2, 4] = growth[:, 0]
    out[:, 3, 0] = growth[:, 1]
    out[:, 3, 1] = width[:, 1] - scale[:, 1]
    out[:, 4:6, 0] = two * growth
    out[:, 4:6, 1] = two * width
    return out


def _distance(coefficients: np.ndarray, basis: np.ndarray, mask: np.ndarray | None = None,
              one_by_one: bool = False) -> np.ndarray:
    """Closed-form Bhattacharyya distance of each pair (REFERENCE.md §2.2), summed over its samples.

    For each sample and dimension: predicted N(mu, sigma^2) with the cone sigma = width + growth *
    tau, against measured N(z, scale^2). With a = sigma^2, b = scale^2 the distance adds
    (mu - z)^2 / (4 (a + b)) + 1/2 log((a + b) / (2 sqrt(ab))), where the log's argument is
    1 + (sigma - scale)^2 / (2 sigma scale) >= 1: every term is >= 0, accurate when a is close to b,
    and nothing under- or overflows the way the reference's dense determinants do. The logs of a
    pair are taken as one log of their product (at most 50 factors >= 1), one call instead of 50.

    Parameters
    ----------
    coefficients : (K, 6, 5) from `_coefficient_matrices`.
    basis : (K, 5, m) window basis rows.
    mask : (K, 1, m) 1 for real samples, 0 for padding; None when there is no padding.
    one_by_one : sum the logs one by one instead of taking the log of their product, for the
        rare pairs whose product overflows (an infinite distance).

    Returns
    -------
    (K,) distances D.
    """
    # Every per-sample quantity is linear in the basis: one small matrix product gives them all.
    rows = coefficients @ basis
    squares = rows[..., :4, :] * rows[..., :4, :]
    # (sigma - scale)^2 + 2 sigma scale = a + b
    quad = squares[..., :2, :] / (squares[..., 2:, :] + rows[..., 4:, :])
    spread = squares[..., 2:, :] / rows[..., 4:, :]
    if mask is not None:
        quad *= mask
        spread *= mask
    quad_sum = quad.sum(axis=(-2, -1))
    if one_by_one:
        logs = np.log1p(spread).sum(axis=(-2, -1))
    else:
        spread += 1.0
        logs = np.log(spread.prod(axis=(-2, -1)))
    return 0.25 * quad_sum + 0.5 * logs


def _distance_of_pair(coefficients: tuple, samples: tuple) -> float:
    """`_distance` for one pair, in Python floats: cheaper than numpy calls on <= 25 samples.

    Same terms, from `_pair_coefficients` (the non-constant entries of the coefficient matrix).
    Python float arithmetic never raises here (every denominator is >= 2 cx^2 or 2 cy^2 > 0); an
    overflow becomes inf or nan, which the caller maps to 1e6.
    """
    (slope_x, base_x, slope_y, base_y, growth_x, growth_y, base_ey,
     rate_hx, base_hx, rate_hy, base_hy) = coefficients
    quad = 0.0
    product = 1.0
    for offset, relative, x, y in samples:
        dx = slope_x * offset + base_x - x
        dy = slope_y * offset + base_y - y
        ex = growth_x * relative
        ey = growth_y * offset + base_ey
        ex *= ex
        ey *= ey
        hx = rate_hx * offset + base_hx
        hy = rate_hy * offset + base_hy
        quad += dx * dx / (ex + hx) + dy * dy / (ey + hy)
        product *= (1.0 + ex / hx) * (1.0 + ey / hy)
    if product < math.inf:
        logs = math.log(product)
    else:  # absurd inputs only: the logs one by one
        logs = 0.0
        for offset, relative, _, _ in samples:
            ex = growth_x * relative
            ey = growth_y * offset + base_ey
            logs += math.log1p(ex * ex / (rate_hx * offset + base_hx)) + \
                math.log1p(ey * ey / (rate_hy * offset + base_hy))
    return 0.25 * quad + 0.5 * logs


def pair_cost(a: _Summary, b: _Summary, gap: float, cone: tuple[float, float, float, float]) -> float:
    """The cost of one pair from its two fragment summaries (`summarize_fragment`), gap inside the window."""
    cx, mx, cy, my = cone
    if a.n >= b.n:
        fit, window = a.forward, b.head
    else:
        fit, window = b.backward, a.tail
    distance = _distance_of_pair(_pair_coefficients(fit, window, gap, cx, mx, cy, my), window.samples)
    cost = distance / window.m + TIME_COST * gap
    return cost if math.isfinite(cost) else INVALID_COST


def batch_costs(summaries: Sequence[_Summary], b: _Summary, gaps: Sequence[float],
                cone: tuple[float, float, float, float]) -> np.ndarray:
    """Costs of K earlier fragments' summaries against the later `b`, gaps inside the window: (K,) float64.

    Elementwise equal to `pair_cost` up to rounding (~1e-15 relative).
    """
    cx, mx, cy, my = cone
    # Per pair: the anchor's projection and the measured window (REFERENCE.md §2.1 step 4).
    # Forward pairs measure the new fragment's head against the candidate's forward line,
    # backward pairs the candidate's tail against the new fragment's backward line; one padded,
    # masked pass scores both kinds.
    fits, windows = [], []
    head, backward = b.head.padded, b.backward.row
    for s in summaries:
        if s.n >= b.n:
            fits.append(s.forward.row)
            windows.append(head)
        else:
            fits.append(backward)
            windows.append(s.tail.padded)
    fits = np.concatenate(fits)
    windows = np.concatenate(windows)
    first, var_y, m = windows[:, 6, :3].T
    gap = np.asarray(gaps, dtype=np.float64)
    with np.errstate(all="ignore"):
        coefficients = _coefficient_matrices(fits, gap, first, var_y, cx, mx, cy, my)
        cost = _distance(coefficients, windows[:, :5], windows[:, 5:6]) / m + TIME_COST * gap
        finite = np.isfinite(cost)
        if not finite.all():
            # Absurd inputs only: a product of ratios overflowed; sum the logs one by one there.
            redo = ~finite
            cost[redo] = _distance(coefficients[redo], windows[redo, :5], windows[redo, 5:6],
                                   one_by_one=True) / m[redo] + TIME_COST * gap[redo]
            cost[~np.isfinite(cost)] = INVALID_COST
    return cost


def _raw_gap(track1: Mapping[str, Any], track2: Mapping[str, Any]) -> float | None:
    """t_B[0] - t_A[-1] straight from the documents, or None when they cannot be read cheaply.

    The gate needs nothing else, so pairs outside the window cost no validation or fitting. A
    document that cannot be read here goes through full validation, which names what is wrong.
    """
    try:
        gap = float(track2["timestamp"][0]) - float(track1["timestamp"][-1])
    except (KeyError, IndexError, TypeError, ValueError, OverflowError):
        return None
    # NaN/inf at a junction is corrupt data, not a gap outside the window: let validation name it.
    return gap if math.isfinite(gap) else None


@CostFunctionFactory.register("bhattacharyya", keys=("cache_size",))
def _build_from_config(config: Mapping[str, Any], base_dir: str | None = None) -> "BhattacharyyaCostFunction":
    cache_size = config.get("cache_size", 4096)
    if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 1:
        raise ConfigError(f"cost_function.cache_size must be a positive integer, got {cache_size!r:.40}")
    return BhattacharyyaCostFunction(cache_size=cache_size)


class BhattacharyyaCostFunction(StitchCostFunction):
    """The reference Bhattacharyya cost: `D / n + 0.1 * gap`, `1e6` outside `[0, TIME_WIN]`.

    Parameters
    ----------
    cache_size : how many per-fragment summaries (validated windows and both fits) to keep.

    Notes
    -----
    - The anchor is the fragment with more samples (ties: the earlier one, projecting forward).
    - Cone parameters `cx, mx, cy, my` come from `param` (a `stitcher_args` dict or one that
      contains it); the reference defaults otherwise.
    - A non-finite cost (overflow on absurd inputs) is `1e6`: no edge, as in the reference.
    - Invalid fragment documents raise `FragmentError` naming the `_id` and the field, unless the
      gate already rejected the pair.
    """

    name = "bhattacharyya"

    def __init__(self, cache_size: int = 4096):
        self._cache = FragmentCache(_summarize, cache_size)
        self._cone_memo = None

    @property
    def cache(self) -> FragmentCache:
        """The per-fragment summary cache (hits, misses, size)."""
        return self._cache

    def describe(self) -> dict:
        return {"type": self.name, "cache_size": self._cache.maxsize}

    def compute_cost(self, track1: Mapping[str, Any], track2: Mapping[str, Any], TIME_WIN: float,
                     param: Mapping[str, Any] | None = None) -> float:
        """Cost of linking the earlier fragment `track1` to the later `track2`.

        Parameters
        ----------
        track1, track2 : I-24 fragment documents, earlier and later.
        TIME_WIN : the stitcher's time window (s); pairs with gap outside [0, TIME_WIN] cost 1e6.
        param : `stitcher_args` (or a dict containing it) with cx, mx, cy, my.

        Returns
        -------
        float : `D / n + 0.1 * gap`, or exactly 1e6.
        """
        gap = _raw_gap(track1, track2)
        if gap is not None and not 0.0 <= gap <= TIME_WIN:
            return INVALID_COST
        a = self._cache.get(track1)
        b = self._cache.get(track2)
        if gap is None:
            gap = b.t_first - a.t_last
            if not 0.0 <= gap <= TIME_WIN:
                return INVALID_COST
        return pair_cost(a, b, gap, self._cone(param))

    def compute_costs(self, tracks1: Sequence[Mapping[str, Any]], track2: Mapping[str, Any],
                      TIME_WIN: float, param: Mapping[str, Any] | None = None) -> np.ndarray:
        """Costs of many earlier fragments against one new fragment `track2`, vectorised.

        Parameters
        ----------
        tracks1 : K earlier fragment documents (the stitcher's candidates).
        track2 : the new fragment, the later one of every pair.
        TIME_WIN, param : as in `compute_cost`.

        Returns
        -------
        (K,) float64 costs, elementwise equal to `compute_cost` up to rounding (~1e-15 relative).
        """
        k = len(tracks1)
        out = np.full(k, INVALID_COST)
        if k == 0:
            return out
        live, live_gaps, b, summaries = self._cache.candidates(tracks1, track2, TIME_WIN)
        if not live:
            return out
        out[live] = batch_costs(summaries, b, live_gaps, self._cone(param))
        return out

    def _cone(self, param: Mapping[str, Any] | None) -> tuple[float, float, float, float]:
        """`cone_parameters(param)`, re-validated only when the four raw values change."""
        if param is None:
            return cone_parameters(None)
        source = param.get("stitcher_args")
        if source is None or not isinstance(source, Mapping):
            source = param
        raw = (source.get("cx"), source.get("mx"), source.get("cy"), source.get("my"))
        memo = self._cone_memo
        if memo is not None and memo[0] == raw:
            return memo[1]
        values = cone_parameters(param)
        self._cone_memo = (raw, values)
        return values
