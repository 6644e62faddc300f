"""The cost contract of FEATURES.md §5: fit Platt scaling, the operating point and the cost scale on the
calibration split, and fold the resulting logit -> cost map into an ONNX graph as plain nodes.

With z the model logit:

    z'   = a z + b                                   Platt scaling (calibration split, natural ratio)
    c    = T - s (z' - z*)                           T = 3, z* the operating point, s cost units per nat
    f    = softplus_k(c - delta),  softplus_k(u) = log(1 + exp(k u)) / k,  k = 4      (the floor)
    delta = -log(1 - exp(-k T)) / k                  (about 1.5e-6 for T = 3, k = 4)
    cost = C - softplus_k(C - f),  C = 100                                            (the ceiling)

`delta` is the exact horizontal shift that makes softplus_k(T - delta) == T, so f == T exactly at
z' = z*. The floor keeps costs >= 0: f is strictly decreasing in z' and differs from c by less
than 4e-6 wherever c >= T and 1e-4 wherever c >= 2; it bends away from c only well below every
threshold, approaching 0 instead of going negative (FEATURES.md §5.4).

The ceiling is this project's addition to §5.4: costs saturate smoothly below C = 100 instead of
growing with the logit. It changes nothing that matters (cost == f to within exp(-k (C - f)) / k,
below 1e-150 for f <= 10, and exactly T at z*), but it keeps every cost far from the 1e6 "no edge"
sentinel and makes float32 models verifiable: an outlier pair with logit -4e6 has a float32
rounding error near 0.5 in its (meaningless) uncapped cost of 3e6, which no parity tolerance on
the cost scale could accept. In float64 both bounds are exact: 0 <= cost <= C.

Here (numpy, the reference) each softplus is evaluated in the overflow-free form
max(u, 0) + log(1 + exp(-k|u|)) / k; the graph computes the same map in float64 with the constants
folded and the two softplus merged into one exp and one log (`graph_constants`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from training.metrics import CalibrationFitError, _check_inputs, fit_platt  # shared with training's plots

from .fold import prune_unused, push_affine  # one way: fold never imports calibration

__all__ = [
    "REFERENCE_THRESH",
    "SOFTPLUS_K",
    "COST_CEILING",
    "SCALE_RANGE",
    "STRATEGIES",
    "Calibration",
    "CalibrationFitError",
    "fit_platt",
    "operating_point",
    "cost_scale",
    "fit_calibration",
    "softplus_shift",
    "threshold_rates",
    "calibration_report",
    "fold_calibration",
    "calibration_graph",
    "graph_constants",
]

REFERENCE_THRESH = 3.0  # T: the stitcher's stitch_thresh the costs are scaled to
MASTER_THRESH = 4.0     # master_stitch_thresh, reported alongside T
SOFTPLUS_K = 4.0
FIT_FENCE = 10.0  # the Platt fit leaves out logits beyond this many interquartile ranges from the quartiles
COST_CEILING = 100.0  # C: costs saturate smoothly below it (see the module docstring)
SCALE_RANGE = (0.1, 10.0)
STRATEGIES = ("fpr_ceiling", "precision_floor")
DEFAULT_MAX_FPR = 0.005
DEFAULT_MIN_PRECISION = 0.99


def softplus_shift(T: float = REFERENCE_THRESH, k: float = SOFTPLUS_K) -> float:
    """delta with softplus_k(T - delta) == T exactly: delta = -log(1 - exp(-k T)) / k (needs k T > 0)."""
    if not (T > 0 and k > 0):
        raise ValueError(f"the softplus floor needs T > 0 and k > 0, got T={T}, k={k}")
    return -math.log1p(-math.exp(-k * T)) / k


def _softplus(u: np.ndarray, k: float) -> np.ndarray:
    return np.maximum(u, 0.0) + np.log1p(np.exp(-k * np.abs(u))) / k


@dataclass(frozen=True)
class Calibration:
    """The fitted logit -> cost map and how it was chosen. JSON round-trips through `to_json`/`from_json`."""

    a: float
    b: float
    z_star: float
    s: float
    T: float = REFERENCE_THRESH
    k: float = SOFTPLUS_K
    ceiling: float = COST_CEILING
    strategy: str = "fpr_ceiling"
    target: float = DEFAULT_MAX_FPR          # max_fpr (fpr_ceiling) or min_precision (precision_floor)
    s_unclipped: float = float("nan")
    median_bhattacharyya_pos: float = float("nan")
    median_calibrated_logit_pos: float = float("nan")
    operating: dict = field(default_factory=dict)  # tpr, fpr, precision, pair index on the calibration split
    platt_fit_range: tuple = ()                     # raw logits outside it are left out of the Platt fit
    platt_fit_excluded: int = 0                     # how many calibration pairs that left out

    @property
    def delta(self) -> float:
        return softplus_shift(self.T, self.k)

    def calibrated_logit(self, z: np.ndarray) -> np.ndarray:
        return self.a * np.asarray(z, dtype=np.float64) + self.b

    def probability(self, z: np.ndarray) -> np.ndarray:
        """Calibrated P(same vehicle) = sigmoid(z')."""
        zc = self.calibrated_logit(z)
        return 0.5 * (1.0 + np.tanh(0.5 * zc))

    def linear_cost(self, z: np.ndarray) -> np.ndarray:
        """c = T - s (z' - z*), before the floor."""
        return self.T - self.s * (self.calibrated_logit(z) - self.z_star)

    def cost(self, z: np.ndarray) -> np.ndarray:
        """The exported cost for logits `z` (float64), the reference the ONNX graph is checked against."""
        floor = _softplus(self.linear_cost(z) - self.delta, self.k)
        return self.ceiling - _softplus(self.ceiling - floor, self.k)

    def logit_at_operating_point(self) -> float:
        """The raw logit z with a z + b == z*."""
        return (self.z_star - self.b) / self.a

    def to_json(self) -> dict:
        out = asdict(self)
        out["delta"] = self.delta
        out["graph_constants"] = graph_constants(self)
        out["cost_formula"] = ("f = softplus_k(T - s*(a*z + b - z_star) - delta); cost = ceiling - softplus_k(ceiling - f); "
                               "softplus_k(u) = log(1+exp(k*u))/k; delta = -log(1-exp(-k*T))/k")
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}

    @classmethod
    def from_json(cls, data: dict) -> "Calibration":
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: (float("nan") if v is None and k in ("s_unclipped", "median_bhattacharyya_pos",
                                                            "median_calibrated_logit_pos") else v)
                      for k, v in data.items() if k in names})


def _roc_points(scores: np.ndarray, y: np.ndarray):
    """Distinct thresholds (descending) with TP and FP counts of the rule `score >= threshold`."""
    order = np.argsort(-scores, kind="mergesort")
    s, lab = scores[order], y[order]
    tp = np.cumsum(lab)
    fp = np.cumsum(1 - lab)
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]  # the last row of each tie group
    return s[last], tp[last], fp[last], order[last]


def operating_point(zc: np.ndarray, y: np.ndarray, strategy: str = "fpr_ceiling", max_fpr: float = DEFAULT_MAX_FPR,
                    min_precision: float = DEFAULT_MIN_PRECISION) -> dict:
    """The calibrated-logit threshold z* (edge iff z' >= z*) on the calibration split (REFERENCE.md §5.3).

    fpr_ceiling: the highest TPR among thresholds with FPR <= max_fpr (if none, the smallest FPR).
    precision_floor: the highest TPR with precision >= min_precision (if none, the highest precision).
    Ties in TPR go to the lower FPR. Thresholds are calibration scores themselves (never +inf), so the
    pair at `index` has z' == z* exactly. Youden's J is deliberately not offered.

    Returns a dict with z_star, tpr, fpr, precision, tp, fp, n_pos, n_neg and index (row in `zc`).
    """
    zc, y = _check_inputs(zc, y)
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    thr, tp, fp, rows = _roc_points(zc, y)
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    tpr, fpr = tp / n_pos, fp / n_neg
    precision = tp / np.maximum(tp + fp, 1)
    if strategy == "fpr_ceiling":
        ok = fpr <= max_fpr
        pick = _best(tpr, fpr, ok) if ok.any() else int(np.argmin(np.where(fp > 0, fpr, np.inf))
                                                         if (fp > 0).any() else 0)
    else:
        ok = precision >= min_precision
        pick = _best(tpr, fpr, ok) if ok.any() else int(np.lexsort((-tpr, -precision))[0])
    return {"z_star": float(thr[pick]), "tpr": float(tpr[pick]), "fpr": float(fpr[pick]),
            "precision": float(precision[pick]), "tp": int(tp[pick]), "fp": int(fp[pick]),
            "n_pos": n_pos, "n_neg": n_neg, "index": int(rows[pick]), "constraint_met": bool(ok.any())}


def _best(tpr: np.ndarray, fpr: np.ndarray, ok: np.ndarray) -> int:
    cand = np.flatnonzero(ok)
    return int(cand[np.lexsort((fpr[cand], -tpr[cand]))[0]])


def cost_scale(zc_pos: np.ndarray, bhat_pos: np.ndarray, z_star: float, T: float = REFERENCE_THRESH,
               bounds: tuple[float, float] = SCALE_RANGE) -> dict:
    """s = (T - m_B) / (m_z - z*) clipped to `bounds` (FEATURES.md §5.3).

    m_B is the median Bhattacharyya cost and m_z the median calibrated logit over calibration positives,
    so a typical true link costs what it costs under Bhattacharyya. A ratio that is undefined or not
    positive (the typical positive is not inside the operating point, or Bhattacharyya's typical true
    link already costs more than T) falls to the lower bound; the raw ratio is kept for the manifest.
    """
    zc_pos = np.asarray(zc_pos, dtype=np.float64)
    bhat_pos = np.asarray(bhat_pos, dtype=np.float64)
    if zc_pos.size == 0:
        raise CalibrationFitError("no calibration positives to set the cost scale")
    m_b = float(np.median(bhat_pos))
    m_z = float(np.median(zc_pos))
    num, den = T - m_b, m_z - z_star
    raw = num / den if den != 0 else (math.copysign(math.inf, num) if num != 0 else math.nan)
    s = float(np.clip(raw, *bounds)) if math.isfinite(raw) and raw > 0 else (bounds[1] if raw == math.inf else bounds[0])
    return {"s": s, "s_unclipped": float(raw), "median_bhattacharyya_pos": m_b, "median_calibrated_logit_pos": m_z}


def fit_calibration(logits: np.ndarray, labels: np.ndarray, bhat: np.ndarray, strategy: str = "fpr_ceiling",
                    max_fpr: float = DEFAULT_MAX_FPR, min_precision: float = DEFAULT_MIN_PRECISION,
                    T: float = REFERENCE_THRESH, k: float = SOFTPLUS_K) -> Calibration:
    """Fit the whole cost contract on calibration-split logits (trainable pairs at the natural ratio).

    Parameters
    ----------
    logits : (N,) model logits of the calibration pairs.
    labels : (N,) 0/1.
    bhat : (N,) Bhattacharyya cost of the same pairs.
    strategy, max_fpr, min_precision : how the operating point z* is chosen (see `operating_point`).
    """
    z, y = _check_inputs(logits, labels)
    bhat = np.asarray(bhat, dtype=np.float64).ravel()
    if bhat.shape != z.shape:
        raise CalibrationFitError(f"{bhat.size} Bhattacharyya costs for {z.size} pairs")
    # Platt's fit is a likelihood over every pair, so a few absurd logits (a feature far outside the
    # training range, e.g. vel_ratio = 4e7 when B's first speed is ~0, sends a linear model to z = 1e7)
    # would flatten the slope to ~0; clipping them is not enough (a cluster of negatives at the top
    # still flattens it). The fit leaves out logits beyond 10 interquartile ranges from the quartiles
    # (a healthy model's logits never get there); the operating point, the scale, the metrics and the
    # graph use every pair.
    q25, q75 = (float(q) for q in np.quantile(z, (0.25, 0.75)))
    lo, hi = q25 - FIT_FENCE * (q75 - q25), q75 + FIT_FENCE * (q75 - q25)
    inside = (z >= lo) & (z <= hi)
    if not 0 < int(y[inside].sum()) < int(inside.sum()):
        inside[:] = True
    a, b = fit_platt(z[inside], y[inside])
    zc = a * z + b
    op = operating_point(zc, y, strategy, max_fpr, min_precision)
    scale = cost_scale(zc[y == 1], bhat[y == 1], op["z_star"], T)
    target = max_fpr if strategy == "fpr_ceiling" else min_precision
    return Calibration(platt_fit_range=(lo, hi), platt_fit_excluded=int((~inside).sum()),
                       a=a, b=b, z_star=op.pop("z_star"), s=scale["s"], T=float(T), k=float(k), strategy=strategy,
                       target=float(target), s_unclipped=scale["s_unclipped"],
                       median_bhattacharyya_pos=scale["median_bhattacharyya_pos"],
                       median_calibrated_logit_pos=scale["median_calibrated_logit_pos"], operating=op)


def threshold_rates(costs: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """What the stitcher would do at `threshold` (edge iff cost <= threshold), at the split's natural ratio.

    expected_false_edges = FPR x N_neg (the number of negative candidate pairs that become edges).
    """
    c = np.asarray(costs, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    edge = c <= threshold
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    tp, fp = int((edge & (y == 1)).sum()), int((edge & (y == 0)).sum())
    return {"threshold": float(threshold), "tpr": tp / n_pos if n_pos else None, "fpr": fp / n_neg if n_neg else None,
            "precision": tp / (tp + fp) if tp + fp else None, "true_edges": tp,
            "expected_false_edges": fp, "n_pos": n_pos, "n_neg": n_neg,
            "neg_per_pos": round(n_neg / n_pos, 2) if n_pos else None}


def calibration_report(costs: np.ndarray, labels: np.ndarray, probability: np.ndarray,
                       thresholds: Sequence[float] = (REFERENCE_THRESH, MASTER_THRESH)) -> dict:
    """Rates at each threshold plus the ECE of the calibrated probability, for one split."""
    from training.metrics import expected_calibration_error

    y = np.asarray(labels).astype(np.int64)
    return {"n": int(y.size), "n_pos": int(y.sum()), "n_neg": int(y.size - y.sum()),
            "at": {f"{t:g}": threshold_rates(costs, y, t) for t in thresholds},
            "ece": expected_calibration_error(y, probability)}


# ------------------------------------------------------------------------------------------------------
# ONNX: the same map as nodes.

def graph_constants(calibration: Calibration) -> dict:
    """The folded constants the graph uses.

    v = k (c - delta) = v0 - v1 z    with v0 = k (T - delta + s z* - s b), v1 = k s a
    E = exp(min(v, v_max))           (v_max = k (C + 50): beyond it the cost is C to the last bit
                                      anyway, so clipping changes nothing while keeping E finite)
    cost = C + log((1 + E) / (K + E)) / k,   K = 1 + exp(k C)

    The last line is C - softplus_k(C - softplus_k(c - delta)) rewritten with one exp and one log:
    with F = log(1 + E), C k - log(1 + exp(C k - F)) = C k + F - log(1 + E + exp(C k)). onnxruntime has
    no float64 Softplus kernel and expands each into exp, add and log (plus a cast of its constant on
    every call), so the nested form runs 13 kernels where this one runs 8.
    """
    k, cal = calibration.k, calibration
    return {"v0": k * (cal.T - cal.delta + cal.s * cal.z_star - cal.s * cal.b), "v1": k * cal.s * cal.a,
            "v_max": k * (cal.ceiling + 50.0), "one": 1.0, "exp_kc_plus_one": 1.0 + math.exp(k * cal.ceiling),
            "inv_k": 1.0 / k, "ceiling": cal.ceiling}


def calibration_graph(calibration: Calibration, logit: str, cost: str = "cost", prefix: str = "calibration/",
                      linear_folded: bool = False):
    """Nodes and initializers computing `cost` (float64, shape (N,)) from the tensor named `logit`.

    The logit may be float32 or float64; it is cast to float64 first so the map adds no rounding of its
    own. Eleven nodes (see `graph_constants`): the map runs on every pair, so it is kept short.
    `linear_folded`: the tensor already holds v = v0 - v1 z (`fold_calibration` moved that step into the
    model's last layer), so the map starts from it: nine nodes.
    Returns (nodes, initializers).
    """
    from onnx import TensorProto, helper, numpy_helper

    p = prefix
    consts = graph_constants(calibration)
    inits = [numpy_helper.from_array(np.asarray(v, dtype=np.float64), p + name) for name, v in consts.items()]

    def n(op, ins, out):
        return helper.make_node(op, [i if i == logit else p + i for i in ins], [p + out], name=p + out)

    if linear_folded:
        head = [helper.make_node("Cast", [logit], [p + "v"], name=p + "v", to=TensorProto.DOUBLE)]
        inits = [i for i in inits if i.name not in (p + "v0", p + "v1")]
    else:
        head = [
            helper.make_node("Cast", [logit], [p + "z"], name=p + "z", to=TensorProto.DOUBLE),
            n("Mul", ["z", "v1"], "v1_z"),
            n("Sub", ["v0", "v1_z"], "v"),              # v = k (c - delta), c = T - s (a z + b - z*)
        ]
    nodes = head + [
        n("Min", ["v", "v_max"], "v_clipped"),
        n("Exp", ["v_clipped"], "e"),                   # E
        n("Add", ["e", "one"], "num"),                  # 1 + E
        n("Add", ["e", "exp_kc_plus_one"], "den"),      # K + E
        n("Div", ["num", "den"], "ratio"),
        n("Log", ["ratio"], "log_ratio"),               # k (cost - C)
        n("Mul", ["log_ratio", "inv_k"], "below_ceiling"),
        helper.make_node("Add", [p + "below_ceiling", p + "ceiling"], [cost], name=p + "cost"),
    ]
    return nodes, inits


def fold_calibration(model, logit: str, calibration: Calibration, cost: str = "cost", batch_dim: str = "N",
                     into_layers: bool = True):
    """A copy of `model` whose single output is `cost` (float64, (N,)) computed from its tensor `logit`.

    Every other graph output is dropped, and nodes that no longer feed the cost are pruned, so the
    artifact holds exactly the logit graph plus the calibration nodes. With `into_layers`, the map's
    linear step v = v0 - v1 z is computed by the model's last layer(s) where the graph allows it
    (`export.fold.push_affine`: scaled weights and biases), two nodes fewer on every call.
    """
    import onnx
    from onnx import TensorProto, helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    del graph.output[:]  # the logit is no longer an output (push_affine leaves graph outputs alone)
    prune_unused(graph, keep=(logit,))  # e.g. skl2onnx's label branch, which also reads the scores
    consts = graph_constants(calibration)
    folded = into_layers and push_affine(graph, logit, -consts["v1"], consts["v0"])
    nodes, inits = calibration_graph(calibration, logit, cost, linear_folded=folded)
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    graph.output.append(helper.make_tensor_value_info(cost, TensorProto.DOUBLE, [batch_dim]))
    prune_unused(graph)
    # e.g. ai.onnx.ml, once skl2onnx's label branch is gone
    used = {n.domain for n in graph.node} | {""}
    keep = [o for o in out.opset_import if o.domain in used]
    del out.opset_import[:]
    out.opset_import.extend(keep)
    return out
