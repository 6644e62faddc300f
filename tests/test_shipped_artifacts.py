"""The artifacts that ship (artifacts/<kind>/): checksums, the calibration contract, recorded parity, loading.

Every expected value is read from the artifact's own manifest, so a re-export keeps this test valid:
  - every file listed in the manifest has the recorded sha256 and size, and every graph is listed;
  - the calibration folded into the graph: the graph's own calibration nodes (the subgraph from the
    `logit` tensor to `cost`, cut out of the shipped graph) give cost == T at z* (z' = a z + b = z*),
    less above it, more below it, and the manifest's constants match the exported formula;
  - the parity figures recorded at export are within their recorded tolerance;
  - the artifact loads through `runtime` and scores real candidate pairs (finite, batch == single).
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from runtime.cost import INVALID_COST
from runtime.onnx_cost import MODEL_KINDS, OnnxCostFunction

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.path.join(REPO, "artifacts")
SHIPPED = [k for k in MODEL_KINDS if os.path.isfile(os.path.join(ARTIFACTS, k, "manifest.json"))]
pytestmark = pytest.mark.skipif(not SHIPPED, reason="no shipped artifact under artifacts/")


@pytest.fixture(scope="module", params=SHIPPED)
def shipped(request):
    folder = os.path.join(ARTIFACTS, request.param)
    with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as fh:
        return request.param, folder, json.load(fh)


def test_every_listed_file_matches_its_checksum(shipped):
    kind, folder, manifest = shipped
    assert manifest["model"] == kind
    files = manifest["files"]
    assert files, kind
    for name, info in files.items():
        with open(os.path.join(folder, name), "rb") as fh:
            data = fh.read()
        assert hashlib.sha256(data).hexdigest() == info["sha256"], f"{kind}/{name}: sha256 differs from the manifest"
        assert len(data) == info["bytes"], f"{kind}/{name}: size differs from the manifest"
    for graph in manifest["graphs"].values():
        assert graph["file"] in files
    on_disk = {n for n in os.listdir(folder) if n != "manifest.json"}
    assert on_disk == set(files), f"{kind}: files on disk but not in the manifest (or missing): {on_disk ^ set(files)}"


def _calibration_graph(folder: str, manifest: dict):
    """`run(z)`: the shipped graph's own calibration tail (`logit` -> `cost`) on raw logits z.

    Export may fold the map's linear step into the model's last layer (`fold_calibration`); the tensor
    named `logit` then holds v = v0 - v1 z already, and `feed` applies the manifest's v0, v1.
    """
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort

    for graph in manifest["graphs"].values():
        model = onnx.load(os.path.join(folder, graph["file"]))
        outputs = {o for n in model.graph.node for o in n.output}
        if not any(o.startswith("calibration/") for o in outputs):
            continue
        model = onnx.shape_inference.infer_shapes(model)
        sub = onnx.utils.Extractor(model).extract_model(["logit"], ["cost"])
        dtype = onnx.helper.tensor_dtype_to_np_dtype(sub.graph.input[0].type.tensor_type.elem_type)
        session = ort.InferenceSession(sub.SerializeToString(), providers=["CPUExecutionProvider"])
        folded = "calibration/z" not in outputs
        consts = manifest["calibration"]["graph_constants"]

        def feed(z, folded=folded, consts=consts, dtype=dtype):
            z = np.asarray(z, dtype=np.float64)
            return (consts["v0"] - consts["v1"] * z if folded else z).astype(dtype)

        def run(z, session=session, feed=feed):
            return session.run(None, {session.get_inputs()[0].name: feed(z)})[0]

        return run
    raise AssertionError(f"{folder}: no graph carries the calibration nodes (calibration/...)")


def test_the_manifest_constants_are_the_documented_map(shipped):
    """v0 = k (T - s (b - z*) - delta), v1 = k s a: the graph's constants say what the manifest's a, b, z*, s, T say."""
    kind, _, manifest = shipped
    cal = manifest["calibration"]
    consts = cal["graph_constants"]
    k, s = cal["k"], cal["s"]
    assert consts["v1"] == pytest.approx(k * s * cal["a"], rel=1e-9), kind
    assert consts["v0"] == pytest.approx(k * (cal["T"] - s * (cal["b"] - cal["z_star"]) - cal["delta"]), rel=1e-9)
    assert consts["ceiling"] == cal["ceiling"] and consts["inv_k"] == pytest.approx(1.0 / k)
    assert cal["delta"] == pytest.approx(-np.log1p(-np.exp(-k * cal["T"])) / k, rel=1e-9)


def test_cost_is_T_at_z_star_in_the_graphs_own_calibration_nodes(shipped):
    kind, folder, manifest = shipped
    cal = manifest["calibration"]
    a, b, z_star, T, s = cal["a"], cal["b"], cal["z_star"], cal["T"], cal["s"]
    tolerance = manifest["validation"]["operating_point"]["tolerance"]
    run = _calibration_graph(folder, manifest)
    raw = lambda zc: (zc - b) / a  # noqa: E731  (the raw logit whose calibrated value a z + b is zc)
    cost = run([raw(z_star), raw(z_star + 1.0), raw(z_star - 1.0), raw(z_star + 50.0), raw(z_star - 1e4)])
    assert cost[0] == pytest.approx(T, abs=tolerance), (kind, cost)
    # one nat of calibrated logit moves the cost by s, down above z* and up below it (the linear region)
    assert cost[1] == pytest.approx(T - s, abs=1e-3), (kind, cost)
    assert cost[2] == pytest.approx(T + s, abs=1e-3), (kind, cost)
    assert 0.0 <= cost[3] < cost[1] < cost[0] < cost[2] < cost[4] <= cal["ceiling"] + tolerance
    # the recorded operating point: the calibration pair at z* cost T when exported
    point = manifest["validation"]["operating_point"]
    assert point["cost_at_z_star"] == pytest.approx(T, abs=tolerance) and point["T"] == T
    assert manifest["thresholds"]["stitch_thresh"] == T


def test_the_python_formula_agrees_with_the_graph(shipped):
    """The manifest's calibration through export.calibration's formula gives the graph's costs."""
    from export.calibration import Calibration

    kind, folder, manifest = shipped
    fields = getattr(Calibration, "__dataclass_fields__", None)
    data = {k: v for k, v in manifest["calibration"].items() if fields is None or k in fields}
    calibration = Calibration.from_json(data)
    run = _calibration_graph(folder, manifest)
    z = (np.linspace(-40.0, 40.0, 81) - manifest["calibration"]["b"]) / manifest["calibration"]["a"]
    np.testing.assert_allclose(run(z), calibration.cost(z), atol=manifest["parity"]["tolerance"], rtol=1e-5)


def test_recorded_parity_is_within_its_tolerance(shipped):
    kind, _, manifest = shipped
    for where, parity in (("parity", manifest["parity"]), ("validation.parity", manifest["validation"]["parity"])):
        tolerance = parity["tolerance"]
        assert 0 < tolerance <= 1e-3, (kind, where)
        assert parity["pairs"] > 0, (kind, where)
        assert 0.0 <= parity["p99_abs_diff"] <= parity["max_abs_diff"], (kind, where, parity)
        # absolute where a cost can decide an edge; far above the thresholds the rule is relative (validate.py)
        assert parity.get("max_abs_diff_cost_le_2T", parity["max_abs_diff"]) <= tolerance, (kind, where, parity)
        assert parity.get("runtime_max_abs_diff", 0.0) <= tolerance, (kind, where, parity)
        if "embedding_max_abs_diff" in parity:
            assert parity["embedding_max_abs_diff"] <= tolerance, (kind, where, parity)
    runtime = manifest["validation"].get("runtime_parity")
    if runtime:
        assert runtime["max_abs_diff"] <= manifest["parity"]["tolerance"]
    operating = manifest["calibration"]["operating"]
    if operating.get("constraint_met") and manifest["calibration"]["strategy"] == "fpr_ceiling":
        assert operating["fpr"] <= manifest["calibration"]["target"]


def test_loads_through_runtime_and_scores_real_pairs(shipped):
    from benchmarks.gate import PARAM, gate_pairs

    kind, folder, manifest = shipped
    fn = OnnxCostFunction(folder)
    assert fn.manifest["files"] == manifest["files"]
    pairs, groups = gate_pairs(n_pairs=24, n_groups=2)
    single = np.array([fn.compute_cost(a, b, 15.0, PARAM) for a, b in pairs])
    assert np.isfinite(single).all() and (single >= 0).all() and (single != INVALID_COST).all(), kind
    assert (single <= manifest["calibration"]["ceiling"] + 1e-6).all()
    batch = fn.compute_costs([a for a, _ in pairs[:8]], pairs[0][1], 15.0, PARAM)
    alone = np.array([fn.compute_cost(a, pairs[0][1], 15.0, PARAM) for a, _ in pairs[:8]])
    np.testing.assert_allclose(batch, alone, rtol=1e-6, atol=manifest["parity"]["tolerance"])
    cands, later = groups[0]
    assert np.isfinite(fn.compute_costs(cands, later, 15.0, PARAM)).all()
