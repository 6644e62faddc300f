"""runtime.onnx_cost: serving exported artifacts, and refusing every artifact it cannot vouch for."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from runtime import INVALID_COST, ConfigError, FragmentError, load_cost_function
from runtime.files import sha256_file
from runtime.onnx_cost import (ArtifactError, ArtifactMissingError, ChecksumError, ManifestError, OnnxCostFunction,
                               SchemaError, SignatureMismatchError, UnsafePathError, UnsupportedGraphError,
                               inspect_model)

sys.path.insert(0, os.path.dirname(__file__))
from test_export import tiny_artifacts  # noqa: E402  (one tiny training + export per test session)

TIME_WIN = 15.0
KINDS = ("lr", "mlp", "tcn")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return tiny_artifacts(tmp_path_factory.getbasetemp() / "export_tiny", KINDS)


@pytest.fixture(scope="module")
def test_pairs(built):
    from export.export import dataset_spec_of_run
    from training.pairs import load_dataset

    spec, folder, _ = dataset_spec_of_run(str(built["runs"]["lr"]))
    return load_dataset(spec, folder, progress=False)["test"]


def _copy(built, kind, tmp_path) -> Path:
    dest = tmp_path / kind
    shutil.copytree(built["artifacts"][kind], dest)
    return dest


def _edit_manifest(folder: Path, edit) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def _rehash(folder: Path, name: str) -> None:
    _edit_manifest(folder, lambda m: m["files"][name].update(sha256=sha256_file(folder / name)))


def _direct_costs(art: Path, pairs) -> np.ndarray:
    """The artifact's graphs run straight in onnxruntime on the pairs' mined features (and windows)."""
    import onnxruntime as ort

    from runtime.features import schema_fragment
    from runtime.fragment import Fragment
    from runtime.windows import HEAD, TAIL, fragment_windows

    manifest = json.loads((art / "manifest.json").read_text())
    if "model" in manifest["graphs"]:
        sess = ort.InferenceSession(str(art / "model.onnx"), providers=["CPUExecutionProvider"])
        dtype = np.float64 if manifest["graphs"]["model"]["inputs"][0]["dtype"] == "float64" else np.float32
        x = pairs.features
        if manifest["inputs"].get("extra_inputs"):  # the LR: the pair's Bhattacharyya cost after the features
            x = np.hstack([x, pairs.bhat[:, None]])
        return sess.run(["cost"], {"features": x.astype(dtype)})[0]
    enc = ort.InferenceSession(str(art / "encoder.onnx"), providers=["CPUExecutionProvider"])
    head = ort.InferenceSession(str(art / "head.onnx"), providers=["CPUExecutionProvider"])
    L = manifest["inputs"]["window_length"]
    schema = manifest["feature_schema"]  # v3 windows never read velocity / detection_confidence
    wins = {i: fragment_windows(schema_fragment(Fragment.from_document(pairs.docs[i]), schema), L)
            for i in set(pairs.a) | set(pairs.b)}
    emb_a = enc.run(None, {"window": np.stack([wins[i][0][TAIL] for i in pairs.a]),
                           "mask": np.stack([wins[i][1][TAIL] for i in pairs.a])})[0]
    emb_b = enc.run(None, {"window": np.stack([wins[i][0][HEAD] for i in pairs.b]),
                           "mask": np.stack([wins[i][1][HEAD] for i in pairs.b])})[0]
    return head.run(None, {"emb_a": emb_a, "emb_b": emb_b, "features": pairs.features.astype(np.float32)})[0]


# ---- serving ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_runtime_cost_equals_the_graph_run_directly(built, test_pairs, kind):
    art = built["artifacts"][kind]
    fn = OnnxCostFunction(str(art))
    rows = np.random.default_rng(0).choice(len(test_pairs), size=300, replace=False)
    pairs = test_pairs.select(np.isin(np.arange(len(test_pairs)), rows))
    got = np.array([fn.compute_cost(pairs.docs[a], pairs.docs[b], TIME_WIN) for a, b in zip(pairs.a, pairs.b)])
    np.testing.assert_allclose(got, _direct_costs(art, pairs), rtol=0, atol=1e-6)
    assert fn.kind == kind and fn.describe()["calibration"]["T"] == 3.0


@pytest.mark.parametrize("kind", KINDS)
def test_compute_costs_equals_compute_cost(built, test_pairs, kind):
    fn = OnnxCostFunction(str(built["artifacts"][kind]))
    docs = test_pairs.docs
    groups = {}
    for a, b in zip(test_pairs.a, test_pairs.b):
        groups.setdefault(int(b), []).append(int(a))
    busiest = sorted(groups, key=lambda b: -len(groups[b]))[:15]
    for b in busiest:
        # candidates in the window, plus ones too late (negative gap) and too early (gap > TIME_WIN)
        late = [i for i in range(len(docs)) if docs[i]["timestamp"][-1] > docs[b]["timestamp"][0]][:3]
        early = [i for i in range(len(docs)) if docs[i]["timestamp"][-1] < docs[b]["timestamp"][0] - TIME_WIN][:3]
        cands = groups[b] + late + early
        batch = fn.compute_costs([docs[i] for i in cands], docs[b], TIME_WIN)
        single = np.array([fn.compute_cost(docs[i], docs[b], TIME_WIN) for i in cands])
        assert batch.dtype == np.float64 and batch.shape == (len(cands),)
        np.testing.assert_allclose(batch, single, rtol=0, atol=1e-9)
        n_live = len(groups[b])
        assert (batch[n_live:] == INVALID_COST).all() and (batch[:n_live] < INVALID_COST).all()
    assert fn.compute_costs([], docs[busiest[0]], TIME_WIN).shape == (0,)


def _doc(fid, t0, n=40, x0=100.0, speed=60.0, direction=1):
    t = t0 + 0.04 * np.arange(n)
    return {"_id": fid, "timestamp": t.tolist(), "x_position": (x0 + direction * speed * (t - t0)).tolist(),
            "y_position": [12.0] * n, "direction": direction, "length": 15.0, "width": 6.0, "height": 5.0}


def test_gap_outside_the_window_is_invalid_before_any_graph_call(built):
    fn = OnnxCostFunction(str(built["artifacts"]["tcn"]))

    def no_graph(*_):
        raise AssertionError("graph called for a pair outside the time window")

    fn._cost.run = no_graph
    fn._encoder.run = no_graph
    a = _doc("a", 1000.0)
    assert fn.compute_cost(a, _doc("before", 1000.5), TIME_WIN) == INVALID_COST        # gap < 0
    assert fn.compute_cost(a, _doc("late", 1001.6 + TIME_WIN + 0.1), TIME_WIN) == INVALID_COST
    out = fn.compute_costs([a, _doc("a2", 990.0)], _doc("b", 1030.0), TIME_WIN)
    assert (out == INVALID_COST).all()
    assert len(fn.cache) == 0  # not even summarised


def test_non_finite_output_is_invalid(built, monkeypatch):
    fn = OnnxCostFunction(str(built["artifacts"]["mlp"]))
    a, b = _doc("a", 1000.0), _doc("b", 1003.0, x0=280.0)
    assert np.isfinite(fn.compute_cost(a, b, TIME_WIN)) and fn.compute_cost(a, b, TIME_WIN) < INVALID_COST
    def nan_into(sa, sb, out):
        out[:] = np.nan
    monkeypatch.setattr(fn._extractor, "pair_into", nan_into)
    monkeypatch.setattr(fn._extractor, "batch_from_summaries", lambda sas, sb: np.full((len(sas), 47), np.nan))
    assert fn.compute_cost(a, b, TIME_WIN) == INVALID_COST
    assert (fn.compute_costs([a, a], b, TIME_WIN) == INVALID_COST).all()


def test_the_bhattacharyya_input_uses_the_artifacts_cone_not_the_callers(built, test_pairs):
    """The LR's extra input is the Bhattacharyya cost at the cone recorded at export: a caller's stitcher_args
    (thresholds, or other cone parameters for its own Bhattacharyya cost) change nothing."""
    from runtime.bhattacharyya import BhattacharyyaCostFunction

    fn = OnnxCostFunction(str(built["artifacts"]["lr"]))
    assert fn.describe()["extra_inputs"] == [{"name": "bhattacharyya_cost", "transform": "log", "eps": 1e-3,
                                              "cone": {"cx": 0.2, "mx": 0.1, "cy": 2.0, "my": 0.1}}]
    docs, a, b = test_pairs.docs, test_pairs.a[:200], test_pairs.b[:200]
    other = {"stitcher_args": {"cx": 2.0, "mx": 0.5, "cy": 6.0, "my": 0.5, "stitch_thresh": 3}}
    plain = np.array([fn.compute_cost(docs[i], docs[j], TIME_WIN) for i, j in zip(a, b)])
    with_other = np.array([fn.compute_cost(docs[i], docs[j], TIME_WIN, other) for i, j in zip(a, b)])
    np.testing.assert_array_equal(plain, with_other)
    # what it feeds the graph is that cost: the one the pair miner stored (training.pairs.BHAT_PARAM)
    bhat = BhattacharyyaCostFunction()
    fed = np.array([bhat.compute_cost(docs[i], docs[j], TIME_WIN, fn.describe()["extra_inputs"][0]["cone"])
                    for i, j in zip(a, b)])
    np.testing.assert_allclose(fed, test_pairs.bhat[:200], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("extra, message", [
    ([{"name": "speed_ratio", "transform": "log", "cone": {}}], "not served by this runtime"),
    ([{"name": "bhattacharyya_cost", "transform": "sqrt", "cone": {"cx": 0.2, "mx": 0.1, "cy": 2.0, "my": 0.1}}],
     "transform 'log'"),
    ([{"name": "bhattacharyya_cost", "transform": "log", "cone": {"cx": -1.0, "mx": 0.1, "cy": 2.0, "my": 0.1}}],
     "cone widths"),
    ([{"name": "bhattacharyya_cost", "transform": "log", "cone": {"cx": 0.2}}], "cx, mx, cy, my"),
    ("bhattacharyya_cost", "not served"),
])
def test_unknown_or_malformed_extra_inputs_are_refused(built, tmp_path, extra, message):
    art = _copy(built, "lr", tmp_path)
    _edit_manifest(art, lambda m: m["inputs"].update(extra_inputs=extra))
    with pytest.raises(SchemaError, match=message):
        OnnxCostFunction(str(art))


def test_an_lr_graph_without_its_extra_input_in_the_manifest_is_refused(built, tmp_path):
    """Dropping `extra_inputs` from the manifest leaves a 48-column graph the runtime would feed 47: refused."""
    art = _copy(built, "lr", tmp_path)
    _edit_manifest(art, lambda m: m["inputs"].pop("extra_inputs"))
    with pytest.raises(SignatureMismatchError, match="features"):
        OnnxCostFunction(str(art))


def test_invalid_fragment_inside_the_window_names_the_fragment(built):
    fn = OnnxCostFunction(str(built["artifacts"]["lr"]))
    bad = _doc("bad-one", 1000.0)
    bad["y_position"] = bad["y_position"][:-1]
    with pytest.raises(FragmentError, match="bad-one.*y_position"):
        fn.compute_cost(bad, _doc("b", 1003.0), TIME_WIN)
    with pytest.raises(FragmentError, match="bad-one"):
        fn.compute_costs([_doc("ok", 999.0), bad], _doc("b", 1003.0), TIME_WIN)


def test_sequence_embeddings_are_computed_once_per_fragment_in_one_encoder_call(built):
    from runtime.fragment import Fragment
    from runtime.windows import fragment_windows

    fn = OnnxCostFunction(str(built["artifacts"]["tcn"]))
    calls = []
    run = fn._encoder.run
    fn._encoder.run = lambda bound: (calls.append(1), run(bound))
    docs = [_doc(f"f{i}", 1000.0 + 3 * i, x0=100 + 180 * i) for i in range(5)]
    for i in range(1, 5):
        fn.compute_costs(docs[:i], docs[i], TIME_WIN)
    assert len(calls) == 5  # one batched (tail + head) call per fragment, never per pair
    entry = fn.cache.get(docs[2])
    windows, masks = fragment_windows(Fragment.from_document(docs[2]), 64)
    import onnxruntime as ort

    enc = ort.InferenceSession(str(built["artifacts"]["tcn"] / "encoder.onnx"), providers=["CPUExecutionProvider"])
    emb = enc.run(None, {"window": windows, "mask": masks})[0]
    np.testing.assert_allclose(entry.tail, emb[0], atol=1e-6)
    np.testing.assert_allclose(entry.head, emb[1], atol=1e-6)


def test_concurrent_callers_get_the_sequential_results(built, test_pairs):
    fn = OnnxCostFunction(str(built["artifacts"]["mlp"]), cache_size=64)
    docs = test_pairs.docs
    jobs = [(docs[int(a)], docs[int(b)]) for a, b in zip(test_pairs.a[:400], test_pairs.b[:400])]
    expected = [fn.compute_cost(a, b, TIME_WIN) for a, b in jobs]
    results = [None] * 4

    def worker(k):
        results[k] = [fn.compute_cost(a, b, TIME_WIN) for a, b in jobs[k::4]]

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        np.testing.assert_allclose(results[k], expected[k::4], rtol=0, atol=1e-12)


# ---- refusing artifacts -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["model.onnx", "calibration.png"])
def test_one_changed_byte_is_refused(built, tmp_path, name):
    art = _copy(built, "mlp", tmp_path)
    data = bytearray((art / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (art / name).write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=f"{name} has sha256 .* the manifest says"):
        OnnxCostFunction(str(art))


def test_missing_files_are_refused(built, tmp_path):
    art = _copy(built, "tcn", tmp_path)
    (art / "encoder.onnx").unlink()
    with pytest.raises(ArtifactMissingError, match="'encoder.onnx' listed in the manifest is missing"):
        OnnxCostFunction(str(art))
    (art / "manifest.json").unlink()
    with pytest.raises(ArtifactMissingError, match="no manifest.json"):
        OnnxCostFunction(str(art))
    with pytest.raises(ArtifactMissingError, match="does not exist"):
        OnnxCostFunction(str(tmp_path / "nowhere"))
    assert issubclass(ArtifactMissingError, ArtifactError) and issubclass(ArtifactMissingError, FileNotFoundError)


@pytest.mark.parametrize("bad", ["../model.onnx", "/etc/passwd", "sub/../../x.onnx", "a\\..\\..\\b", "C:evil"])
def test_paths_leaving_the_folder_are_refused(built, tmp_path, bad):
    art = _copy(built, "lr", tmp_path)
    _edit_manifest(art, lambda m: m["files"].update({bad: {"sha256": "0" * 64, "bytes": 1}}))
    with pytest.raises(UnsafePathError):
        OnnxCostFunction(str(art))


def test_a_symlink_leading_out_of_the_folder_is_refused(built, tmp_path):
    art = _copy(built, "lr", tmp_path)
    outside = tmp_path / "outside.onnx"
    shutil.move(art / "model.onnx", outside)
    os.symlink(outside, art / "model.onnx")
    with pytest.raises(UnsafePathError, match="outside the artifact folder"):
        OnnxCostFunction(str(art))


@pytest.mark.parametrize("edit, error, message", [
    (lambda m: m.update(schema_hash="0" * 64), SchemaError, "differs from this runtime"),
    (lambda m: m.update(feature_schema="i24-47-v9"), SchemaError, "i24-47-v9"),
    (lambda m: m["inputs"].update(feature_names=["time_gap", "no_such_feature"]), SchemaError, "feature names"),
    (lambda m: m.update(artifact_version=2), ManifestError, "artifact_version 2"),
    (lambda m: m.update(format="something-else"), ManifestError, "format"),
    (lambda m: m.update(model="xgboost"), ManifestError, "xgboost"),
    (lambda m: m.update(external_data=["weights.bin"]), UnsupportedGraphError, "external data"),
    (lambda m: m["graphs"]["model"]["inputs"][0].update(dtype="float64"), SignatureMismatchError, "features"),
    (lambda m: m["graphs"]["model"].update(file="elsewhere.onnx"), ManifestError, "elsewhere.onnx"),
])
def test_manifest_mismatches_are_refused(built, tmp_path, edit, error, message):
    art = _copy(built, "mlp", tmp_path)
    _edit_manifest(art, edit)
    with pytest.raises(error, match=message):
        OnnxCostFunction(str(art))


def test_malformed_manifest_is_refused(built, tmp_path):
    art = _copy(built, "lr", tmp_path)
    (art / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        OnnxCostFunction(str(art))


def test_a_wrong_window_layout_is_refused(built, tmp_path):
    art = _copy(built, "tcn", tmp_path)
    _edit_manifest(art, lambda m: m["inputs"].update(channels=["t", "x"]))
    with pytest.raises(SchemaError, match="channels"):
        OnnxCostFunction(str(art))


def test_graphs_with_custom_ops_or_external_data_are_refused(built, tmp_path):
    import onnx
    from onnx import helper

    art = _copy(built, "mlp", tmp_path)
    model = onnx.load(str(art / "model.onnx"))
    facts = inspect_model(model.SerializeToString())
    assert facts.opsets[""] >= 17 and facts.node_domains <= {"", "ai.onnx.ml"} and not facts.external_tensors
    custom = onnx.ModelProto()
    custom.CopyFrom(model)
    custom.graph.node.append(helper.make_node("Mystery", ["cost"], ["unused"], domain="com.example"))
    custom.opset_import.append(helper.make_opsetid("com.example", 1))
    (art / "model.onnx").write_bytes(custom.SerializeToString())
    _rehash(art, "model.onnx")
    with pytest.raises(UnsupportedGraphError, match="com.example"):
        OnnxCostFunction(str(art))
    # weights moved to a side file: refused from the bytes alone, before onnxruntime could open it
    onnx.save_model(model, str(art / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    _rehash(art, "model.onnx")
    with pytest.raises(UnsupportedGraphError, match="external data"):
        OnnxCostFunction(str(art))
    with pytest.raises(UnsupportedGraphError, match="not a well-formed ONNX model|not an ONNX model"):
        inspect_model(b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "junk")


# ---- the factory -------------------------------------------------------------------------------------

def test_factory_builds_onnx_costs_and_resolves_paths(built, tmp_path, monkeypatch):
    mlp = built["artifacts"]["mlp"]
    assert isinstance(load_cost_function({"type": "onnx", "artifact": str(mlp)}), OnnxCostFunction)
    # a parameters file beside an artifacts folder: relative paths resolve against the file's folder
    shutil.copytree(mlp, tmp_path / "artifacts" / "mlp")
    params = tmp_path / "parameters_MLP.json"
    params.write_text(json.dumps({"cost_function": {"type": "mlp", "cache_size": 128}}))
    monkeypatch.chdir(built["artifacts"]["lr"])  # anywhere else
    fn = load_cost_function(str(params))
    assert fn.kind == "mlp" and fn.cache.maxsize == 128 and fn.artifact_dir == str(tmp_path / "artifacts" / "mlp")
    monkeypatch.chdir(tmp_path)  # the shorthand also resolves against the working directory
    assert load_cost_function({"type": "mlp"}).artifact_dir == str(tmp_path / "artifacts" / "mlp")
    with pytest.raises(ConfigError, match="is a 'mlp' model"):
        load_cost_function({"type": "lr", "artifact": str(mlp)})
    with pytest.raises(ConfigError, match="artifact is required"):
        load_cost_function({"type": "onnx"})
    with pytest.raises(ConfigError, match="not found.*looked in"):
        load_cost_function({"type": "onnx", "artifact": "artifacts/none"})
    with pytest.raises(ConfigError, match="cache_size"):
        load_cost_function({"type": "onnx", "artifact": str(mlp), "cache_size": 0})


def test_serving_imports_neither_torch_nor_sklearn_nor_onnx(built, test_pairs):
    a, b = test_pairs.docs[int(test_pairs.a[0])], test_pairs.docs[int(test_pairs.b[0])]
    code = f"""
import json, sys
for name in ("torch", "sklearn", "onnx", "skl2onnx", "training", "export"):
    sys.modules[name] = None  # importing any of them now fails
from runtime import load_cost_function
docs = json.loads(sys.stdin.read())
for art in {[str(built["artifacts"][k]) for k in KINDS]!r}:
    fn = load_cost_function({{"type": "onnx", "artifact": art}})
    print(fn.compute_cost(docs[0], docs[1], {TIME_WIN}))
"""
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps([a, b]), capture_output=True, text=True,
                          cwd=str(Path(__file__).resolve().parents[1]))
    assert proc.returncode == 0, proc.stderr
    costs = [float(v) for v in proc.stdout.split()]
    expected = [OnnxCostFunction(str(built["artifacts"][k])).compute_cost(a, b, TIME_WIN) for k in KINDS]
    np.testing.assert_allclose(costs, expected, rtol=0, atol=1e-12)


def test_bound_call_falls_back_to_the_public_method():
    # Without the compiled session under the wrapper (another onnxruntime build), or when its method takes
    # other arguments, the binding runs through InferenceSession.run_with_iobinding with the same binding.
    from runtime.onnx_cost import _Binding

    calls = []

    class PublicOnly:
        def run_with_iobinding(self, binding, run_options=None):
            calls.append(("public", binding))

    class OtherSignature(PublicOnly):
        class _sess:
            @staticmethod
            def run_with_iobinding(binding):  # one argument fewer than this runtime passes
                calls.append(("compiled", binding))

    class Binding:
        _iobinding = "raw"

    marker = Binding()
    _Binding(PublicOnly(), marker, [], run_options="unused").call()
    assert calls == [("public", marker)]
    calls.clear()
    bound = _Binding(OtherSignature(), marker, [], run_options="options")
    bound.call()
    bound.call()
    assert calls == [("public", marker), ("public", marker)]


def test_bound_call_uses_the_compiled_session_when_it_fits(built):
    from runtime.onnx_cost import _Binding

    fn = OnnxCostFunction(str(built["artifacts"]["mlp"]))
    _, _, bound = fn._cost.buffers(3)
    assert isinstance(bound, _Binding)
    bound.call()
    assert bound.call == bound._compiled  # switched after a first call that worked
