"""Artifacts the runtime cannot vouch for are refused, each with its own ArtifactError subclass, before
onnxruntime sees a byte of them; fuzzed manifests and models give ArtifactError and nothing else.

tests/test_onnx_runtime.py checks most refusals by error class and message; here every one of them is also
proven to happen before any `onnxruntime.InferenceSession` is created, and the loader is fuzzed.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(__file__))
from test_reliability import make_doc, successor, tiny_lr_artifact  # noqa: E402  (one tiny LR artifact per session)

from runtime.files import sha256_file  # noqa: E402
from runtime.onnx_cost import (ArtifactError, ArtifactMissingError, ChecksumError, ManifestError,  # noqa: E402
                               OnnxCostFunction, SchemaError, UnsafePathError, UnsupportedGraphError)

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    return tiny_lr_artifact(tmp_path_factory.getbasetemp() / "reliability_lr")


class SessionCreated(BaseException):
    """Raised by the stand-in for onnxruntime.InferenceSession; a BaseException so that no
    `except Exception` in the loader can turn it into a refusal."""


@pytest.fixture
def no_session(monkeypatch):
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise SessionCreated("onnxruntime.InferenceSession was called")

    monkeypatch.setattr(onnxruntime, "InferenceSession", refuse)
    return calls


def copy_of(artifact: Path, dest: Path) -> Path:
    shutil.copytree(artifact, dest)
    return dest


def manifest_of(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def edit_manifest(folder: Path, edit) -> None:
    m = manifest_of(folder)
    edit(m)
    (folder / "manifest.json").write_text(json.dumps(m))


def rehash(folder: Path, *names: str) -> None:
    """Make the manifest vouch for the files as they are now (what an attacker who can write both would do)."""
    def edit(m):
        for name in names:
            m["files"][name] = {"sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size}
    edit_manifest(folder, edit)


def flip_byte(path: Path, where: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x01
    path.write_bytes(bytes(data))


def _onnx_model(folder: Path):
    import onnx

    return onnx.load(str(folder / "model.onnx"))


def _write_model(folder: Path, model) -> None:
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    rehash(folder, "model.onnx")


def _custom_domain_node(folder: Path) -> None:
    from onnx import helper

    model = _onnx_model(folder)
    model.graph.node.append(helper.make_node("Mystery", ["cost"], ["unused"], domain="com.example"))
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    _write_model(folder, model)


def _custom_opset_only(folder: Path) -> None:
    from onnx import helper

    model = _onnx_model(folder)
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))  # a contrib domain onnxruntime has
    _write_model(folder, model)


def _local_function(folder: Path) -> None:
    from onnx import helper

    model = _onnx_model(folder)
    model.functions.append(helper.make_function("local.fn", "Twice", ["x"], ["y"],
                                                [helper.make_node("Add", ["x", "x"], ["y"])],
                                                [helper.make_opsetid("", 17)]))
    _write_model(folder, model)


def _external_data(folder: Path) -> None:
    import onnx

    model = _onnx_model(folder)
    onnx.save_model(model, str(folder / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    rehash(folder, "model.onnx", "weights.bin")  # every file checksummed: only the policy can refuse it


def _path_outside(folder: Path, name: str) -> None:
    """The manifest names a file outside the folder, a valid model with a matching checksum."""
    outside = folder.parent / "model.onnx"
    shutil.copy(folder / "model.onnx", outside)

    def edit(m):
        m["files"][name] = {"sha256": sha256_file(outside), "bytes": outside.stat().st_size}
        del m["files"]["model.onnx"]
        m["graphs"]["model"]["file"] = name
    edit_manifest(folder, edit)


def _symlink_out(folder: Path) -> None:
    outside = folder.parent / "elsewhere.onnx"
    shutil.move(folder / "model.onnx", outside)
    os.symlink(outside, folder / "model.onnx")


def _truncate(folder: Path, name: str, keep: float, rehashed: bool) -> None:
    path = folder / name
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    if rehashed:
        rehash(folder, name)


REFUSALS = {
    # tampering
    "one byte of the graph": (lambda f: flip_byte(f / "model.onnx"), ChecksumError, "model.onnx has sha256"),
    "one byte of the graph, first byte": (lambda f: flip_byte(f / "model.onnx", 0.0), ChecksumError, "modified"),
    "manifest: checksum edited": (lambda f: edit_manifest(f, lambda m: m["files"]["model.onnx"].update(
        sha256="ab" * 32)), ChecksumError, "the manifest says abababab"),
    "manifest: graph not checksummed": (lambda f: edit_manifest(f, lambda m: m["files"].pop("model.onnx")),
                                        ManifestError, "not among the checksummed files"),
    "manifest: checksum missing": (lambda f: edit_manifest(f, lambda m: m["files"]["model.onnx"].pop("sha256")),
                                   ManifestError, "no valid sha256"),
    "manifest: schema hash edited": (lambda f: edit_manifest(f, lambda m: m.update(schema_hash="0" * 64)),
                                     SchemaError, "differs from this runtime"),
    "manifest: features reordered": (lambda f: edit_manifest(f, lambda m: m["inputs"]["feature_names"].reverse()),
                                     SchemaError, "differs from this runtime"),
    "manifest: model kind": (lambda f: edit_manifest(f, lambda m: m.update(model="xgboost")), ManifestError,
                             "xgboost"),
    # missing
    "missing graph": (lambda f: (f / "model.onnx").unlink(), ArtifactMissingError, "'model.onnx' listed"),
    "missing manifest": (lambda f: (f / "manifest.json").unlink(), ArtifactMissingError, "no manifest.json"),
    "listed file missing": (lambda f: edit_manifest(f, lambda m: m["files"].update(
        {"extra.bin": {"sha256": "0" * 64}})), ArtifactMissingError, "'extra.bin' listed in the manifest is missing"),
    # versions
    "artifact_version 2": (lambda f: edit_manifest(f, lambda m: m.update(artifact_version=2)), ManifestError,
                           "artifact_version 2 is not supported"),
    "artifact_version '1'": (lambda f: edit_manifest(f, lambda m: m.update(artifact_version="1")), ManifestError,
                             "artifact_version '1'"),
    "no artifact_version": (lambda f: edit_manifest(f, lambda m: m.pop("artifact_version")), ManifestError,
                            "artifact_version None"),
    "other format": (lambda f: edit_manifest(f, lambda m: m.update(format="pickle")), ManifestError, "format"),
    "unknown feature schema": (lambda f: edit_manifest(f, lambda m: m.update(feature_schema="i24-47-v9")),
                               SchemaError, "i24-47-v9"),
    # paths out of the folder
    "../ path": (lambda f: _path_outside(f, "../model.onnx"), UnsafePathError, "'../model.onnx'"),
    "sub/../../ path": (lambda f: _path_outside(f, "sub/../../model.onnx"), UnsafePathError, "not a plain"),
    "absolute path": (lambda f: _path_outside(f, str(f.parent / "model.onnx")), UnsafePathError, "not a plain"),
    "symlink out": (_symlink_out, UnsafePathError, "resolves outside the artifact folder"),
    # graphs outside the policy
    "external data": (_external_data, UnsupportedGraphError, "external data"),
    "manifest lists external data": (lambda f: edit_manifest(f, lambda m: m.update(external_data=["w.bin"])),
                                     UnsupportedGraphError, "external data"),
    "unknown op domain": (_custom_domain_node, UnsupportedGraphError, "'com.example' are not standard ONNX"),
    "contrib opset import": (_custom_opset_only, UnsupportedGraphError, "'com.microsoft'"),
    "local function": (_local_function, UnsupportedGraphError, "local function"),
    # truncated
    "truncated graph": (lambda f: _truncate(f, "model.onnx", 0.6, rehashed=False), ChecksumError, "model.onnx"),
    "truncated graph, rehashed": (lambda f: _truncate(f, "model.onnx", 0.6, rehashed=True), UnsupportedGraphError,
                                  "not a well-formed ONNX model|not an ONNX model"),
    "empty graph, rehashed": (lambda f: _truncate(f, "model.onnx", 0.0, rehashed=True), UnsupportedGraphError,
                              "not an ONNX model"),
    "truncated manifest": (lambda f: _truncate(f, "manifest.json", 0.5, rehashed=False), ManifestError,
                           "not valid JSON"),
}


def test_the_session_spy_sees_a_good_artifact_load(artifact, no_session):
    """Without this, 'no session was created' below would prove nothing."""
    with pytest.raises(SessionCreated):
        OnnxCostFunction(str(artifact))
    assert len(no_session) == 1


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_with_a_specific_error_before_any_session(artifact, tmp_path, no_session, case):
    damage, error, message = REFUSALS[case]
    folder = copy_of(artifact, tmp_path / "art")
    damage(folder)
    with pytest.raises(error, match=message) as err:
        OnnxCostFunction(str(folder))
    assert no_session == [], f"{case}: a session was created before the refusal"
    assert str(folder) in str(err.value) or str(folder.resolve()) in str(err.value)


def test_manifest_numbers_are_for_reading_only(artifact, tmp_path):
    """Calibration and thresholds in the manifest are not checksummed and not used: editing them changes the
    description, never a cost (the graph's output is the cost)."""
    folder = copy_of(artifact, tmp_path / "art")

    def edit(m):
        m["calibration"].update(a=-100.0, b=50.0, z_star=1e9, s=0.0, T=1000.0)
        m["thresholds"] = {"stitch_thresh": 1e9, "master_stitch_thresh": 1e9}
    edit_manifest(folder, edit)
    a = make_doc("sec-a", 1000.0, 40)
    b = successor(a, "sec-b", 1.2, 40)
    original, edited = OnnxCostFunction(str(artifact)), OnnxCostFunction(str(folder))
    assert edited.describe()["calibration"]["T"] == 1000.0
    assert edited.compute_cost(a, b, 15.0) == original.compute_cost(a, b, 15.0)


# ---- fuzzing: only ArtifactError comes out ---------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10 ** 20) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


@pytest.fixture(scope="module")
def scratch(artifact, tmp_path_factory) -> Path:
    """One copy of the artifact that each fuzz example rewrites (and `restore` puts back)."""
    return copy_of(artifact, tmp_path_factory.mktemp("fuzz") / "art")


def restore(artifact: Path, folder: Path) -> None:
    for name in ("manifest.json", "model.onnx"):
        shutil.copy(artifact / name, folder / name)


def load_or_refuse(folder: Path):
    """Load the artifact; ArtifactError is a refusal, anything else fails the test."""
    try:
        return OnnxCostFunction(str(folder))
    except ArtifactError:
        return None


@FUZZ
@given(data=st.binary(max_size=600))
def test_random_bytes_as_the_manifest(artifact, scratch, data):
    restore(artifact, scratch)
    (scratch / "manifest.json").write_bytes(data)
    assert load_or_refuse(scratch) is None


@FUZZ
@given(value=json_values)
def test_any_json_as_the_manifest(artifact, scratch, value):
    restore(artifact, scratch)
    (scratch / "manifest.json").write_text(json.dumps(value))
    assert load_or_refuse(scratch) is None


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:2]):
            yield from _paths(v, prefix + (i,))


@FUZZ
@given(data=st.data())
def test_any_json_at_any_place_in_a_real_manifest(artifact, scratch, data):
    """Every key of the real manifest, replaced by any JSON value: it loads (a harmless edit, costs intact)
    or is refused with an ArtifactError."""
    restore(artifact, scratch)
    manifest = manifest_of(artifact)
    paths = [p for p in _paths(manifest) if p]
    path = data.draw(st.sampled_from(paths))
    value = data.draw(json_values)
    node = manifest
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    (scratch / "manifest.json").write_text(json.dumps(manifest))
    fn = load_or_refuse(scratch)
    if fn is not None:
        a = make_doc("fz-a", 1000.0, 30)
        assert np.isfinite(fn.compute_cost(a, successor(a, "fz-b", 1.0, 30), 15.0))


@FUZZ
@given(data=st.binary(max_size=600))
def test_random_bytes_as_the_graph_with_a_matching_checksum(artifact, scratch, data):
    restore(artifact, scratch)
    (scratch / "model.onnx").write_bytes(data)
    rehash(scratch, "model.onnx")
    assert load_or_refuse(scratch) is None


@FUZZ
@given(data=st.data())
def test_a_damaged_real_graph_with_a_matching_checksum(artifact, scratch, data):
    """Flipped, dropped or inserted bytes in the real graph, re-checksummed: refused, or (when the damage
    only changed a weight) served with finite costs."""
    restore(artifact, scratch)
    model = bytearray((artifact / "model.onnx").read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(model) - 1))
        action = data.draw(st.sampled_from(("flip", "drop", "insert", "cut")))
        if action == "flip":
            model[i] ^= data.draw(st.integers(1, 255))
        elif action == "drop":
            del model[i]
        elif action == "insert":
            model[i:i] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del model[i:]
        if not model:
            break
    (scratch / "model.onnx").write_bytes(bytes(model))
    rehash(scratch, "model.onnx")
    fn = load_or_refuse(scratch)
    if fn is not None:
        a = make_doc("fz-a", 1000.0, 30)
        cost = fn.compute_cost(a, successor(a, "fz-b", 1.0, 30), 15.0)
        assert isinstance(cost, float) and not np.isnan(cost)
