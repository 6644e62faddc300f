"""Export validation: a fixed sequence of named checks, each with its own error class.

Every export runs all of them on the artifact it is about to install; the first failure aborts the
export (nothing is installed). A check returns a JSON-able dict of what it measured, which goes into
the manifest's `validation` section.

    onnx_checker       onnx.checker (full check, with shape inference) on every graph
    graph_policy       what the runtime will accept: embedded weights only, standard op domains, pinned opset
    signature          input/output names, dtypes and shapes as declared; the batch axis really is dynamic
    parity             framework vs onnxruntime cost on >= 2,000 real test-split pairs, max |diff| <= tolerance
                       (sequence encoders also at several window lengths and mask patterns)
    operating_point    cost == T at the calibration pair that defines z*, and for the logit z with a z + b = z*
    calibration_rates  costs finite and >= 0; the operating point's FPR/TPR reproduced by the graph at T;
                       FPR/TPR/precision at 3 and 4, expected false edges and ECE on calibration and test
    runtime_parity     the installed runtime (`runtime.onnx_cost`) loading the artifact folder scores the
                       test pairs from their fragment documents exactly as the graphs do
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .calibration import MASTER_THRESH, Calibration, calibration_graph, calibration_report
from .specs import BATCH_DIM, OPSET, ExportSpec, GraphSignature

__all__ = [
    "ValidationError",
    "OnnxCheckerError",
    "GraphPolicyError",
    "SignatureError",
    "ParityError",
    "OperatingPointError",
    "CalibrationRatesError",
    "RuntimeParityError",
    "Candidate",
    "CHECKS",
    "run_checks",
    "OPERATING_POINT_ATOL",
    "MIN_PARITY_PAIRS",
]

OPERATING_POINT_ATOL = 1e-4
MIN_PARITY_PAIRS = 2000


class ValidationError(Exception):
    """A named export check failed; the message is one line and starts with the check's name."""

    check = "validation"

    def __init__(self, message: str):
        self.reason = message
        super().__init__(f"check '{self.check}' failed: {message}")


class OnnxCheckerError(ValidationError):
    check = "onnx_checker"


class GraphPolicyError(ValidationError):
    check = "graph_policy"


class SignatureError(ValidationError):
    check = "signature"


class ParityError(ValidationError):
    check = "parity"


class OperatingPointError(ValidationError):
    check = "operating_point"


class CalibrationRatesError(ValidationError):
    check = "calibration_rates"


class RuntimeParityError(ValidationError):
    check = "runtime_parity"


@dataclass
class Candidate:
    """An export about to be installed, and what it was made from: everything the checks look at.

    Attributes
    ----------
    graphs : role -> serialised ONNX model (the cost graph already ends in `cost`).
    cal_pairs : the calibration split, trainable pairs at the natural ratio (what the calibration saw).
    test_pairs : every candidate pair of the test split (labels 1, 0 and -1).
    artifact_dir : folder holding the graphs and a manifest, for the `runtime_parity` check (None skips it).
    """

    spec: ExportSpec
    model: Any
    graphs: dict
    signatures: dict
    calibration: Calibration
    cal_pairs: Any
    test_pairs: Any
    artifact_dir: str | None = None
    min_parity_pairs: int = MIN_PARITY_PAIRS
    time_win: float = 15.0
    _sessions: dict | None = field(default=None, repr=False)
    memo: dict = field(default_factory=dict, repr=False)

    def sessions(self) -> dict:
        """onnxruntime sessions with the runtime's own settings, so parity is measured as served."""
        if self._sessions is None:
            from runtime.onnx_cost import create_session

            self._sessions = {role: create_session(data) for role, data in self.graphs.items()}
        return self._sessions

    def graph_costs(self, split: str) -> np.ndarray:
        if split not in self.memo:
            pairs = self.cal_pairs if split == "cal" else self.test_pairs
            self.memo[split] = self.spec.graph_outputs(self.model, self.sessions(), pairs)
        return self.memo[split]

    def framework_logits(self, split: str) -> np.ndarray:
        key = f"logits_{split}"
        if key not in self.memo:
            pairs = self.cal_pairs if split == "cal" else self.test_pairs
            self.memo[key] = self.spec.framework_logits(self.model, pairs)
        return self.memo[key]

    def framework_costs(self, split: str) -> np.ndarray:
        return self.calibration.cost(self.framework_logits(split))


CHECKS: list[tuple[str, Callable[[Candidate], dict]]] = []


def _check(error: type[ValidationError]):
    def register(fn):
        CHECKS.append((error.check, fn))
        fn.error = error
        return fn
    return register


def run_checks(candidate: Candidate, say: Callable[[str], None] | None = None, *, only: tuple = (),
               skip: tuple = (), bar=None) -> dict:
    """Run the checks in order (all, or `only` those, minus `skip`); return name -> measured figures.

    Raises the first failing check's error. `runtime_parity` needs `candidate.artifact_dir` with a manifest.
    `bar`: a tqdm progress bar, advanced by one per check run (its postfix names the running check).
    """
    unknown = (set(only) | set(skip)) - {name for name, _ in CHECKS}
    if unknown:
        raise ValueError(f"unknown check(s) {sorted(unknown)}; known: {[name for name, _ in CHECKS]}")
    results = {}
    for name, fn in CHECKS:
        if (only and name not in only) or name in skip:
            continue
        if name == "runtime_parity" and candidate.artifact_dir is None:
            continue
        if bar is not None:
            bar.set_postfix_str(name)
        results[name] = fn(candidate)
        if bar is not None:
            bar.update(1)
        if say:
            say(f"  check {name}: ok")
    return results


# ------------------------------------------------------------------------------------------------------

@_check(OnnxCheckerError)
def check_onnx(c: Candidate) -> dict:
    import onnx

    for role, data in c.graphs.items():
        try:
            onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
        except Exception as exc:  # checker and shape-inference errors have several classes
            raise OnnxCheckerError(f"{role} graph: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    return {"graphs": sorted(c.graphs)}


@_check(GraphPolicyError)
def check_graph_policy(c: Candidate) -> dict:
    from runtime.onnx_cost import UnsupportedGraphError, inspect_model

    out = {}
    for role, data in c.graphs.items():
        try:
            facts = inspect_model(data, role)
        except UnsupportedGraphError as exc:
            raise GraphPolicyError(str(exc)) from None
        if facts.opsets.get("", None) != OPSET:
            raise GraphPolicyError(f"{role} graph imports opset {facts.opsets.get('')}, expected {OPSET}")
        out[role] = {"opsets": facts.opsets, "bytes": len(data)}
    return out


def _declared(sig_tensor, got) -> str | None:
    want_type = {"float32": "tensor(float)", "float64": "tensor(double)"}[sig_tensor.dtype]
    if got.type != want_type:
        return f"{got.name}: type {got.type}, expected {want_type}"
    shape = list(got.shape)
    if len(shape) != len(sig_tensor.shape):
        return f"{got.name}: rank {len(shape)}, expected {len(sig_tensor.shape)}"
    for axis, (g, w) in enumerate(zip(shape, sig_tensor.shape)):
        if axis == 0:
            if g != BATCH_DIM:
                return f"{got.name}: batch axis is {g!r}, expected the symbolic {BATCH_DIM!r}"
        elif g != w:
            return f"{got.name}: axis {axis} is {g!r}, expected {w}"
    return None


def _zeros_feed(sig: GraphSignature, batch: int) -> dict:
    dtypes = {"float32": np.float32, "float64": np.float64}
    feed = {}
    for t in sig.inputs:
        arr = np.zeros((batch, *t.shape[1:]), dtype=dtypes[t.dtype])
        if t.name == "mask":
            arr[:, 0] = 1.0  # a window always has its junction row
        feed[t.name] = arr
    return feed


@_check(SignatureError)
def check_signature(c: Candidate) -> dict:
    sessions = c.sessions()
    for role, sig in c.signatures.items():
        sess = sessions[role]
        got_in, got_out = sess.get_inputs(), sess.get_outputs()
        if [t.name for t in got_in] != [t.name for t in sig.inputs]:
            raise SignatureError(f"{role} graph inputs {[t.name for t in got_in]}, expected {[t.name for t in sig.inputs]}")
        if [t.name for t in got_out] != [t.name for t in sig.outputs]:
            raise SignatureError(f"{role} graph outputs {[t.name for t in got_out]}, expected "
                                 f"{[t.name for t in sig.outputs]}")
        for want, got in zip(sig.inputs + sig.outputs, list(got_in) + list(got_out)):
            problem = _declared(want, got)
            if problem:
                raise SignatureError(f"{role} graph {problem}")
        for batch in (1, 3):  # a batch axis traced as a constant fails here
            outs = sess.run([t.name for t in sig.outputs], _zeros_feed(sig, batch))
            for want, arr in zip(sig.outputs, outs):
                expected = (batch, *want.shape[1:])
                if tuple(arr.shape) != expected:
                    raise SignatureError(f"{role} graph output {want.name} has shape {arr.shape} for batch {batch}, "
                                         f"expected {expected}")
    return {role: sig.to_json() for role, sig in c.signatures.items()}


@_check(ParityError)
def check_parity(c: Candidate) -> dict:
    n = len(c.test_pairs)
    if n < c.min_parity_pairs:
        raise ParityError(f"the test split has {n} candidate pairs, parity needs at least {c.min_parity_pairs}")
    graph = c.graph_costs("test")
    ref = c.framework_costs("test")
    if not np.isfinite(ref).all():
        raise ParityError(f"{int((~np.isfinite(ref)).sum())} non-finite framework costs on the test split")
    diff = np.abs(graph - ref)
    worst = float(np.nanmax(diff)) if np.isfinite(diff).all() else float("inf")
    tol = c.spec.parity_atol
    scaled = _beyond_threshold_scaled(diff, ref, c.calibration.T)
    worst_scaled = float(np.nanmax(scaled)) if np.isfinite(scaled).all() else float("inf")
    if not worst_scaled <= tol:
        k = int(np.nanargmax(np.where(np.isfinite(scaled), scaled, np.inf)))
        raise ParityError(f"max |cost_onnx - cost_framework| = {diff[k]:.3g} > {tol:g} x max(1, cost / T) over {n} "
                          f"test pairs (worst pair {k}: onnx {graph[k]:.6g}, framework {ref[k]:.6g})")
    extra = c.spec.extra_parity(c.model, c.sessions(), c.test_pairs)
    for name, value in extra.items():
        if name.endswith("max_abs_diff") and not value <= tol:
            raise ParityError(f"{name.replace('_max_abs_diff', '')}: max |onnx - framework| = {value:.3g} > {tol:g}")
    near = ref <= 2.0 * c.calibration.T
    return {"pairs": n, "max_abs_diff": worst, "p99_abs_diff": float(np.quantile(diff, 0.99)),
            "max_abs_diff_cost_le_2T": float(diff[near].max()) if near.any() else 0.0,
            "tolerance": tol, "tolerance_rule": "|diff| <= tolerance x max(1, cost / T)", "split": "test", **extra}


def _beyond_threshold_scaled(diff: np.ndarray, ref: np.ndarray, T: float) -> np.ndarray:
    """`diff` divided by max(1, |ref| / T): the parity tolerance is absolute wherever a cost can decide an
    edge (up to T and the master threshold) and relative far above it, where a float32 graph's rounding
    of a cost of ~50 (1e-4 or more) cannot change any decision."""
    return diff / np.maximum(1.0, np.abs(ref) / T)


@_check(OperatingPointError)
def check_operating_point(c: Candidate) -> dict:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    cal = c.calibration
    # end to end: the calibration pair whose calibrated logit defines z*
    idx = int(cal.operating["index"])
    one = np.zeros(len(c.cal_pairs), dtype=bool)
    one[idx] = True
    pair_cost = float(c.spec.graph_outputs(c.model, c.sessions(), c.cal_pairs.select(one))[0])
    if not abs(pair_cost - cal.T) <= OPERATING_POINT_ATOL:
        raise OperatingPointError(f"cost {pair_cost:.6g} at the operating-point pair (calibration pair {idx}), "
                                  f"expected {cal.T} within {OPERATING_POINT_ATOL:g}")
    # the calibration nodes alone, fed the logit with a z + b == z*
    nodes, inits = calibration_graph(cal, "logit")
    graph = helper.make_graph(nodes, "calibration", [helper.make_tensor_value_info("logit", TensorProto.DOUBLE, ["N"])],
                              [helper.make_tensor_value_info("cost", TensorProto.DOUBLE, ["N"])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    z = np.array([cal.logit_at_operating_point()], dtype=np.float64)
    node_cost = float(sess.run(["cost"], {"logit": z})[0][0])
    if not abs(node_cost - cal.T) <= OPERATING_POINT_ATOL:
        raise OperatingPointError(f"calibration nodes give {node_cost:.6g} at z*, expected {cal.T}")
    return {"pair_index": idx, "pair_cost": pair_cost, "cost_at_z_star": node_cost, "T": cal.T,
            "tolerance": OPERATING_POINT_ATOL}


@_check(CalibrationRatesError)
def check_calibration_rates(c: Candidate) -> dict:
    cal = c.calibration
    out = {}
    trainable = c.test_pairs.label >= 0
    for split, labels, costs, logits in (
            ("calibration", c.cal_pairs.label, c.graph_costs("cal"), c.framework_logits("cal")),
            ("test", c.test_pairs.label[trainable], c.graph_costs("test")[trainable],
             c.framework_logits("test")[trainable])):
        if not np.isfinite(costs).all():
            raise CalibrationRatesError(f"{int((~np.isfinite(costs)).sum())} non-finite costs on the {split} split")
        if (costs < 0).any():
            raise CalibrationRatesError(f"negative cost {costs.min():.4g} on the {split} split")
        out[split] = calibration_report(costs, labels, cal.probability(logits), (cal.T, MASTER_THRESH))
    # the graph at T must reproduce the operating point chosen on the calibration split; pairs whose
    # cost lies within rounding of T may fall either side
    costs = c.graph_costs("cal")
    y = c.cal_pairs.label
    ties = int((np.abs(costs - cal.T) <= c.spec.parity_atol).sum())
    at_t = out["calibration"]["at"][f"{cal.T:g}"]
    op = cal.operating
    if abs(at_t["expected_false_edges"] - op["fp"]) > ties or abs(at_t["true_edges"] - op["tp"]) > ties:
        raise CalibrationRatesError(f"at cost <= {cal.T:g} the graph gives {at_t['true_edges']} true / "
                                    f"{at_t['expected_false_edges']} false edges on the calibration split, the "
                                    f"operating point has {op['tp']} / {op['fp']} ({ties} pairs within rounding of T)")
    if cal.strategy == "fpr_ceiling" and op.get("constraint_met"):
        limit = cal.target + ties / max(at_t["n_neg"], 1)
        if at_t["fpr"] > limit:
            raise CalibrationRatesError(f"calibration FPR at T is {at_t['fpr']:.4g} > max_fpr {cal.target:g}")
    if cal.strategy == "precision_floor" and op.get("constraint_met") and at_t["precision"] is not None \
            and at_t["precision"] < cal.target - ties / max(at_t["true_edges"] + at_t["expected_false_edges"], 1):
        raise CalibrationRatesError(f"calibration precision at T is {at_t['precision']:.4g} < {cal.target:g}")
    out["calibration"]["ties_at_T"] = ties
    return out


@_check(RuntimeParityError)
def check_runtime_parity(c: Candidate) -> dict:
    from runtime.onnx_cost import ArtifactError, OnnxCostFunction

    try:
        fn = OnnxCostFunction(c.artifact_dir, cache_size=max(16, len(c.test_pairs.docs) + 1))
    except ArtifactError as exc:
        raise RuntimeParityError(f"the runtime refuses the artifact: {exc}") from None
    pairs = c.test_pairs
    docs = pairs.docs
    got = np.empty(len(pairs), dtype=np.float64)
    order = np.argsort(pairs.b, kind="stable")
    bounds = np.flatnonzero(np.diff(pairs.b[order])) + 1
    for rows in np.split(order, bounds):  # the stitcher's access pattern: one new fragment, many earlier
        if rows.size:
            got[rows] = fn.compute_costs([docs[i] for i in pairs.a[rows]], docs[pairs.b[rows[0]]], c.time_win)
    graph = c.graph_costs("test")
    diff = np.abs(got - graph)
    worst = float(diff.max()) if np.isfinite(diff).all() else float("inf")
    scaled = _beyond_threshold_scaled(diff, graph, c.calibration.T)
    if not float(scaled.max()) <= c.spec.parity_atol:
        k = int(np.argmax(np.where(np.isfinite(scaled), scaled, np.inf)))
        raise RuntimeParityError(f"runtime cost differs from the graph by {worst:.3g} (pair {k}: runtime {got[k]:.6g}, "
                                 f"graph {graph[k]:.6g}); the runtime's features or windows drifted from training's")
    return {"pairs": len(pairs), "max_abs_diff": worst}
