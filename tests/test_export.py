"""export-onnx end to end on tiny trained models: manifest, parity, operating point, refusals, atomic install."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from runtime.files import sha256_file

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Scenario ii (snow) only, 20 s: about 5,000 candidate pairs per split, over 4,000 in the test split.
TINY = dict(presets=("ii",), duration=20, train_seeds=(1,), val_seeds=(2,), cal_seeds=(3,), test_seeds=(4,))
SMALL = {
    "lr": ({}, {}),
    "mlp": ({"hidden": (16,)}, {"epochs": 3}),
    "tcn": ({"channels": (8, 8), "head_hidden": (16,)}, {"epochs": 2, "batch_size": 128}),
}


def tiny_artifacts(root: Path, kinds=("lr", "mlp")) -> dict:
    """Train and export one tiny model per kind under `root`, once per test session (reused when present).

    Returns {"data": data folder, "runs": {kind: run folder}, "artifacts": {kind: artifact folder}}.
    """
    from export.export import export_artifact
    from training.pairs import DatasetSpec
    from training.train import load_splits, train_run

    root = Path(root)
    data, runs, arts = root / "data", {}, {}
    spec = DatasetSpec(**TINY)
    splits = None
    for kind in kinds:
        run, art = root / "runs" / kind, root / "artifacts" / kind
        if not (art / "manifest.json").exists():
            if not (run / "metrics.json").exists():
                import torch

                torch.set_num_threads(1)
                splits = splits or load_splits(spec, str(data), progress=False)
                model, train = SMALL[kind]
                train_run(kind, str(run), spec, str(data), model_overrides=model, train_overrides=train,
                          max_neg_per_pos=8 if kind == "tcn" else None, progress=False, splits=splits)
            export_artifact(kind, str(run), str(art))
        runs[kind], arts[kind] = run, art
    return {"data": data, "runs": runs, "artifacts": arts}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    # shared with tests/test_onnx_runtime.py through the session's base temp folder
    return tiny_artifacts(tmp_path_factory.getbasetemp() / "export_tiny", ("lr", "mlp", "tcn"))


@pytest.fixture(scope="module")
def cal_and_test(built):
    from export.export import dataset_spec_of_run
    from training.pairs import load_dataset

    spec, folder, _ = dataset_spec_of_run(str(built["runs"]["lr"]))
    splits = load_dataset(spec, folder, progress=False)
    return splits["cal"].select(splits["cal"].trainable), splits["test"]


def _manifest(art: Path) -> dict:
    return json.loads((art / "manifest.json").read_text())


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# ---- what an export writes ------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["lr", "mlp", "tcn"])
def test_manifest_describes_the_artifact(built, kind):
    from runtime.features import FEATURE_NAMES, schema_hash

    art = built["artifacts"][kind]
    m = _manifest(art)
    assert m["format"] == "i24-stitch-cost-onnx" and m["artifact_version"] == 1 and m["model"] == kind
    assert m["feature_schema"] == "i24-47-v3"  # what training defaults to: no tracker-specific field read
    assert m["schema_hash"] == schema_hash("i24-47-v3", m["inputs"]["feature_names"])
    assert m["inputs"]["document_fields"] == ["_id", "timestamp", "x_position", "y_position", "direction",
                                              "length", "width", "height"]
    assert m["inputs"]["feature_names"] == list(FEATURE_NAMES)
    if kind == "lr":  # train-lr's default inputs: the pair's Bhattacharyya cost after the features
        assert m["inputs"]["extra_inputs"] == [{"name": "bhattacharyya_cost", "transform": "log", "eps": 1e-3,
                                                "cone": {"cx": 0.2, "mx": 0.1, "cy": 2.0, "my": 0.1}}]
    else:
        assert "extra_inputs" not in m["inputs"]
    assert m["opset"] >= 17 and m["external_data"] == []
    cal = m["calibration"]
    for key in ("a", "b", "z_star", "s", "T", "k", "ceiling", "strategy", "target", "delta", "operating"):
        assert key in cal
    assert cal["T"] == 3.0 and cal["k"] == 4.0 and cal["strategy"] == "fpr_ceiling" and cal["target"] == 0.005
    assert 0.1 <= cal["s"] <= 10.0 and cal["a"] > 0
    assert m["thresholds"] == {"stitch_thresh": 3.0, "master_stitch_thresh": 4.0}
    for name in ("onnx", "onnxruntime", "torch", "scikit-learn", "numpy", "python"):
        assert m["versions"][name]
    assert m["training"]["seed"] == 0 and m["training"]["dataset"]["presets"] == ["ii"]
    assert m["training"]["dataset"]["cal_seeds"] == [3] and m["training"]["dataset"]["test_seeds"] == [4]
    assert set(m["validation"]) == {"onnx_checker", "graph_policy", "signature", "parity", "operating_point",
                                    "calibration_rates", "runtime_parity"}
    assert m["parity"]["pairs"] >= 2000 and m["parity"]["max_abs_diff_cost_le_2T"] <= 1e-4
    assert m["parity"]["tolerance_rule"] == "|diff| <= tolerance x max(1, cost / T)"
    assert m["validation"]["runtime_parity"]["max_abs_diff"] <= 1e-4
    for split in ("calibration", "test"):
        report = m["metrics"]["cost"][split]
        assert set(report["at"]) == {"3", "4"} and 0 <= report["ece"] <= 1
        for rates in report["at"].values():
            assert {"tpr", "fpr", "precision", "expected_false_edges", "n_neg", "neg_per_pos"} <= set(rates)
    assert m["metrics"]["cost"]["calibration"]["at"]["3"]["fpr"] <= 0.005 + 1e-9
    assert m["metrics"]["test"]["roc_auc"] is not None
    # every file but the manifest is checksummed, and nothing else is in the folder
    files = sorted(p.name for p in art.iterdir())
    assert files == sorted(list(m["files"]) + ["manifest.json"])
    assert "calibration.png" in m["files"] and (art / "calibration.png").read_bytes()[:8] == PNG_MAGIC
    for name, entry in m["files"].items():
        assert sha256_file(art / name) == entry["sha256"] and (art / name).stat().st_size == entry["bytes"]
    graphs = {"lr": {"model"}, "mlp": {"model"}, "tcn": {"encoder", "head"}}[kind]
    assert set(m["graphs"]) == graphs
    cost_graph = m["graphs"]["head" if kind == "tcn" else "model"]
    assert cost_graph["outputs"] == [{"name": "cost", "dtype": "float64", "shape": ["N"]}]
    if kind == "tcn":
        assert m["inputs"]["window_length"] == 64 and len(m["inputs"]["channels"]) == 8
        assert m["validation"]["parity"]["embedding_max_abs_diff"] <= 1e-4
        assert m["validation"]["parity"]["embedding_valid_rows"][0] == 1


@pytest.mark.parametrize("kind", ["lr", "mlp"])
def test_graph_output_is_the_calibrated_cost(built, cal_and_test, kind):
    """Run the shipped graph directly: its output is the cost, equal to the framework logit pushed through
    the manifest's calibration, and exactly T = 3 at the operating-point pair."""
    from export.calibration import Calibration
    from export.specs import export_spec
    from training.train import load_trained

    art = built["artifacts"][kind]
    m = _manifest(art)
    cal_pairs, test_pairs = cal_and_test
    sess = _session(art / "model.onnx")
    assert [o.name for o in sess.get_outputs()] == ["cost"] and sess.get_outputs()[0].type == "tensor(double)"
    _, model, _ = load_trained(str(built["runs"][kind]))
    spec = export_spec(kind)
    # the LR takes the 47 features and then the pair's Bhattacharyya cost
    assert sess.get_inputs()[0].shape == ["N", 48 if kind == "lr" else 47]
    cost = sess.run(["cost"], {"features": spec.feature_matrix(model, test_pairs)})[0]
    if kind == "lr":
        np.testing.assert_array_equal(spec.feature_matrix(model, test_pairs)[:, -1], test_pairs.bhat)
    calibration = Calibration.from_json(m["calibration"])
    framework = calibration.cost(spec.framework_logits(model, test_pairs))
    assert len(test_pairs) >= 2000
    np.testing.assert_allclose(cost, framework, rtol=0, atol=1e-4)
    assert (cost >= 0).all() and (cost <= calibration.ceiling).all()
    # folded: the standardisation into the first layer, v = v0 - v1 z into the last (export.fold)
    graph = onnx.load(str(art / "model.onnx")).graph
    assert not any(n.op_type in ("Sub", "Div") and "features" in n.input for n in graph.node)
    assert not {"calibration/v0", "calibration/v1"} & {i.name for i in graph.initializer}
    # the operating point: cost == T at the calibration pair that defines z*
    idx = m["calibration"]["operating"]["index"]
    cal_inputs = spec.feature_matrix(model, cal_pairs)
    op_cost = sess.run(["cost"], {"features": cal_inputs[idx:idx + 1]})[0][0]
    assert op_cost == pytest.approx(3.0, abs=1e-4)
    # and the stitcher's rule at T reproduces the operating point on the calibration split
    cal_cost = sess.run(["cost"], {"features": cal_inputs})[0]
    fp = int(((cal_cost <= 3.0) & (cal_pairs.label == 0)).sum())
    assert abs(fp - m["calibration"]["operating"]["fp"]) <= 1
    assert fp / (cal_pairs.label == 0).sum() <= 0.005 + 1 / (cal_pairs.label == 0).sum()


def test_sequence_export_has_two_graphs_with_a_dynamic_batch(built):
    art = built["artifacts"]["tcn"]
    enc, head = _session(art / "encoder.onnx"), _session(art / "head.onnx")
    assert [i.name for i in enc.get_inputs()] == ["window", "mask"]
    assert enc.get_inputs()[0].shape == ["N", 64, 8] and enc.get_outputs()[0].name == "embedding"
    assert [i.name for i in head.get_inputs()] == ["emb_a", "emb_b", "features"]
    graph = onnx.load(str(art / "head.onnx")).graph  # the standardisation folded through the Concat
    assert not any(n.op_type in ("Sub", "Div") and "features" in n.input for n in graph.node)
    E = enc.get_outputs()[0].shape[1]
    for n in (1, 5):
        mask = np.zeros((n, 64), np.float32)
        mask[:, 0] = 1
        emb = enc.run(None, {"window": np.zeros((n, 64, 8), np.float32), "mask": mask})[0]
        assert emb.shape == (n, E)
        cost = head.run(None, {"emb_a": emb, "emb_b": emb, "features": np.zeros((n, 47), np.float32)})[0]
        assert cost.shape == (n,) and cost.dtype == np.float64


@pytest.mark.parametrize("kind", ["siamese", "transformer"])
def test_other_sequence_kinds_export_with_parity(cal_and_test, kind):
    """The Siamese BiLSTM and the Transformer through the same spec (small, freshly initialised models;
    the TCN goes through the whole export above): two graphs, calibration folded in, costs and
    embeddings equal to torch on real test pairs, every valid window length."""
    import torch

    from export.calibration import Calibration, fold_calibration
    from export.specs import COST, LOGIT, export_spec
    from runtime.onnx_cost import create_session
    from training.models import model_module
    from training.sequence_data import sequence_pairs

    _, test_pairs = cal_and_test
    pairs = test_pairs.select(np.arange(len(test_pairs)) < 300)
    module = model_module(kind)
    small = {"siamese": {"hidden": 8}, "transformer": {"d_model": 16, "heads": 2, "feedforward": 32, "layers": 1}}
    config = module.Config(head_hidden=(16,), **small[kind])
    data = sequence_pairs(pairs.docs, pairs.a, pairs.b, np.maximum(pairs.label, 0), pairs.features,
                          L=config.window_length)
    torch.manual_seed(0)
    model = module.build(config, module.fit_stats(data)).eval()
    spec = export_spec(kind)
    graphs = spec.logit_graphs(model)
    calibration = Calibration(a=0.9, b=-1.0, z_star=0.5, s=1.5)
    graphs["head"] = fold_calibration(graphs["head"], LOGIT, calibration, COST)
    sessions = {role: create_session(g.SerializeToString()) for role, g in graphs.items()}
    got = spec.graph_outputs(model, sessions, pairs)
    expected = calibration.cost(spec.framework_logits(model, pairs))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    extra = spec.extra_parity(model, sessions, pairs)
    assert extra["embedding_max_abs_diff"] <= 1e-4 and extra["embedding_valid_rows"] == [1, 64]
    assert set(spec.signatures(model)) == {"encoder", "head"}


# ---- failures: one-line reason, nothing installed, previous artifact intact ------------------------

def _tree(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_failing_check_installs_nothing_and_keeps_the_previous_artifact(built, tmp_path):
    from export.cli import main

    run = str(built["runs"]["lr"])
    out = tmp_path / "artifacts" / "lr"
    shutil.copytree(built["artifacts"]["lr"], out)  # the previous artifact
    before = _tree(out)
    # the test split has ~4,000 pairs; demanding more makes the parity check fail
    for target in (out, tmp_path / "artifacts" / "fresh"):
        result = CliRunner().invoke(main, ["--model", "lr", "--run", run, "--out", str(target), "--quiet",
                                           "--min-parity-pairs", str(10 ** 6)])
        assert result.exit_code == 1
        lines = [ln for ln in result.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and "check 'parity' failed" in lines[0] and "left unchanged" in lines[0]
    assert _tree(out) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["lr"]  # no temp folder left, nothing fresh


def test_a_failing_check_mid_validation_rolls_back(built, tmp_path, monkeypatch):
    """A later check (after graphs were written into the staging folder) failing leaves no trace either."""
    from export import validate
    from export.export import export_artifact

    out = tmp_path / "lr"
    original = dict(validate.CHECKS)

    def broken(candidate):
        raise validate.CalibrationRatesError("injected")

    monkeypatch.setattr(validate, "CHECKS", [(n, broken if n == "calibration_rates" else f) for n, f in original.items()])
    with pytest.raises(validate.CalibrationRatesError, match="injected"):
        export_artifact("lr", str(built["runs"]["lr"]), str(out))
    assert list(tmp_path.iterdir()) == []
    # a successful export replaces the previous artifact in one rename, leaving nothing else behind
    monkeypatch.undo()
    shutil.copytree(built["artifacts"]["mlp"], out)
    export_artifact("lr", str(built["runs"]["lr"]), str(out))
    assert _manifest(out)["model"] == "lr" and [p.name for p in tmp_path.iterdir()] == ["lr"]


def test_cli_refuses_a_kind_mismatch_and_a_missing_run(built, tmp_path):
    from export.cli import main

    result = CliRunner().invoke(main, ["--model", "mlp", "--run", str(built["runs"]["lr"]), "--out",
                                       str(tmp_path / "x"), "--quiet"])
    assert result.exit_code == 1 and "holds a 'lr' model, not 'mlp'" in result.output
    result = CliRunner().invoke(main, ["--model", "lr", "--run", str(tmp_path / "nope"), "--out",
                                       str(tmp_path / "x"), "--quiet"])
    assert result.exit_code == 1 and "does not exist" in result.output
    assert not (tmp_path / "x").exists()


def test_cli_exports_with_precision_floor(built, tmp_path):
    from export.cli import main

    out = tmp_path / "lr_pf"
    result = CliRunner().invoke(main, ["--model", "lr", "--run", str(built["runs"]["lr"]), "--out", str(out),
                                       "--strategy", "precision_floor", "--min-precision", "0.8", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "parity" in result.output and "calibration" in result.output
    m = _manifest(out)
    assert m["calibration"]["strategy"] == "precision_floor" and m["calibration"]["target"] == 0.8
    at_t = m["metrics"]["cost"]["calibration"]["at"]["3"]
    if m["calibration"]["operating"]["constraint_met"]:
        assert at_t["precision"] >= 0.8 - 1e-9


def test_a_feature_file_run_calibrates_on_the_data_given_at_export(tmp_path):
    from export.export import ExportError, dataset_spec_of_run

    run = tmp_path / "lr_npz"
    run.mkdir()
    with pytest.raises(ExportError, match="no dataset.json.*--data"):
        dataset_spec_of_run(str(run), None, "i24-47-v1")
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "RAW_ii.json").write_text("[]")
    spec, folder, described = dataset_spec_of_run(str(run), str(raw), "i24-47-v1")
    assert spec.real_data_dir == str(raw) and spec.presets == ("ii",) and spec.schema == "i24-47-v1"
    assert described["schema"] == "i24-47-v1" and folder == str(raw)


# ---- the named checks, one error class each ----------------------------------------------------------

def test_every_check_has_its_own_error_class():
    from export import validate

    names = [name for name, _ in validate.CHECKS]
    errors = [fn.error for _, fn in validate.CHECKS]
    assert names == ["onnx_checker", "graph_policy", "signature", "parity", "operating_point", "calibration_rates",
                     "runtime_parity"]
    assert len(set(errors)) == len(errors)
    assert all(issubclass(e, validate.ValidationError) and e.check == n for n, e in zip(names, errors))


def test_signature_and_policy_checks_catch_a_wrong_graph(built, cal_and_test):
    """A graph with a renamed output fails `signature`; one with a custom-domain op fails `graph_policy`."""
    import onnx
    from onnx import helper

    from export.calibration import Calibration
    from export.specs import export_spec
    from export.validate import Candidate, GraphPolicyError, SignatureError, check_graph_policy, check_signature
    from training.train import load_trained

    art = built["artifacts"]["mlp"]
    _, model, _ = load_trained(str(built["runs"]["mlp"]))
    spec = export_spec("mlp")
    graph = onnx.load(str(art / "model.onnx"))
    renamed = onnx.ModelProto()
    renamed.CopyFrom(graph)
    renamed.graph.output[0].name = "score"
    renamed.graph.node[-1].output[0] = "score"
    cal_pairs, test_pairs = cal_and_test
    calibration = Calibration.from_json(_manifest(art)["calibration"])

    def candidate(g):
        return Candidate(spec, model, {"model": g.SerializeToString()}, spec.signatures(model), calibration,
                         cal_pairs, test_pairs)

    with pytest.raises(SignatureError, match="outputs"):
        check_signature(candidate(renamed))
    custom = onnx.ModelProto()
    custom.CopyFrom(graph)
    custom.graph.node.append(helper.make_node("Mystery", ["cost"], ["unused"], domain="com.example"))
    custom.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(GraphPolicyError, match="com.example"):
        check_graph_policy(candidate(custom))


def test_parity_tolerance_is_absolute_where_costs_decide_and_relative_far_above():
    from export.validate import _beyond_threshold_scaled

    ref = np.array([0.5, 3.0, 4.0, 6.0, 50.0])
    diff = np.full(5, 2e-4)
    scaled = _beyond_threshold_scaled(diff, ref, 3.0)
    # up to T the full difference counts; at 50 (no edge at any threshold) float32 rounding is forgiven
    assert (scaled[:2] == 2e-4).all() and scaled[2] == pytest.approx(1.5e-4) and scaled[4] == pytest.approx(1.2e-5)
    assert (scaled[:3] > 1e-4).all() and scaled[4] <= 1e-4
