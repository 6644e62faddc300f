"""Affine folding in cost graphs (export.fold): the function is unchanged, the nodes are gone, and
anything the rewrites cannot prove safe is left as it was."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.fold import fold_input_scaling, push_affine

RNG = np.random.default_rng(7)
F, H = 6, 5


def _const(name, value, dtype=np.float64):
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def _model(nodes, inits, inputs, output="y", dtype=TensorProto.DOUBLE, out_shape=("N", 1)):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, dtype, ["N", w]) for n, w in inputs],
                              [helper.make_tensor_value_info(output, dtype, list(out_shape))], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def _run(model, feed):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feed)[0]


def _copy(model):
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _scaler(x="x"):
    mean, scale = RNG.normal(5.0, 3.0, F), RNG.uniform(0.5, 4.0, F)
    nodes = [helper.make_node("Sub", [x, "mean"], ["centred"]), helper.make_node("Div", ["centred", "scale"], ["std"])]
    return nodes, [_const("mean", mean), _const("scale", scale)]


def _ops(model):
    return [n.op_type for n in model.graph.node]


@pytest.mark.parametrize("trans_b", [0, 1])
def test_standardisation_folds_into_a_gemm(trans_b):
    nodes, inits = _scaler()
    w = RNG.normal(size=(H, F) if trans_b else (F, H))
    nodes.append(helper.make_node("Gemm", ["std", "w", "b"], ["y"], transB=trans_b, alpha=0.5, beta=2.0))
    model = _model(nodes, inits + [_const("w", w), _const("b", RNG.normal(size=H))], [("x", F)], out_shape=("N", H))
    feed = {"x": RNG.normal(5.0, 5.0, (50, F))}
    folded = _copy(model)
    assert fold_input_scaling(folded) == 1
    assert _ops(folded) == ["Gemm"]
    np.testing.assert_allclose(_run(folded, feed), _run(model, feed), rtol=1e-12, atol=1e-12)


def test_standardisation_folds_into_matmul_plus_bias_and_through_a_concat():
    # LR's shape (MatMul + Add) and the sequence head's (the features are the last block of a Concat).
    nodes, inits = _scaler()
    nodes += [helper.make_node("MatMul", ["std", "w1"], ["mm"]), helper.make_node("Add", ["mm", "b1"], ["y1"]),
              helper.make_node("Concat", ["e", "y1", "std"], ["cat"], axis=-1),
              helper.make_node("Gemm", ["cat", "w2", "b2"], ["y"], transB=1)]
    inits += [_const("w1", RNG.normal(size=(F, 2))), _const("b1", RNG.normal(size=2)),
              _const("w2", RNG.normal(size=(H, 3 + 2 + F))), _const("b2", RNG.normal(size=H))]
    model = _model(nodes, inits, [("x", F), ("e", 3)], out_shape=("N", H))
    feed = {"x": RNG.normal(5.0, 5.0, (50, F)), "e": RNG.normal(size=(50, 3))}
    folded = _copy(model)
    assert fold_input_scaling(folded) == 1
    assert "Sub" not in _ops(folded) and "Div" not in _ops(folded)
    np.testing.assert_allclose(_run(folded, feed), _run(model, feed), rtol=1e-11, atol=1e-11)


def test_standardisation_is_left_alone_when_a_consumer_is_not_linear():
    nodes, inits = _scaler()
    nodes += [helper.make_node("Gemm", ["std", "w", "b"], ["g"], transB=1), helper.make_node("Relu", ["std"], ["r"]),
              helper.make_node("Concat", ["g", "r"], ["y"], axis=-1)]
    inits += [_const("w", RNG.normal(size=(H, F))), _const("b", RNG.normal(size=H))]
    model = _model(nodes, inits, [("x", F)], out_shape=("N", H + F))
    folded = _copy(model)
    assert fold_input_scaling(folded) == 0
    assert folded == model


def _two_branch_logit(shared_weights: bool = False):
    # z = squeeze(gemm(x)) + squeeze(gemm(relu(gemm(x)))), the sequence head's shape with its feature branch
    nodes = [helper.make_node("Gemm", ["x", "wa", "ba"], ["ga"], transB=1),
             helper.make_node("Gemm", ["x", "wh", "bh"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "wa" if shared_weights else "wb", "bb"], ["gb"], transB=1),
             helper.make_node("Squeeze", ["ga", "axis"], ["za"]), helper.make_node("Squeeze", ["gb", "axis"], ["zb"]),
             helper.make_node("Add", ["za", "zb"], ["y"])]
    inits = [_const("wa", RNG.normal(size=(1, F)), np.float32), _const("ba", RNG.normal(size=1), np.float32),
             _const("wh", RNG.normal(size=(F, F)), np.float32), _const("bh", RNG.normal(size=F), np.float32),
             _const("wb", RNG.normal(size=(1, F)), np.float32), _const("bb", RNG.normal(size=1), np.float32),
             numpy_helper.from_array(np.array([1], dtype=np.int64), "axis")]
    return _model(nodes, inits, [("x", F)], dtype=TensorProto.FLOAT, out_shape=("N",))


def test_affine_map_moves_into_the_last_layers_of_both_branches():
    model = _two_branch_logit()
    feed = {"x": RNG.normal(size=(50, F)).astype(np.float32)}
    want = -2.5 * _run(model, feed).astype(np.float64) + 7.0
    graph = _copy(model).graph
    del graph.output[:]  # the tensor must not be a graph output itself
    assert push_affine(graph, "y", -2.5, 7.0)
    graph.output.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"]))
    moved = _copy(model)
    moved.graph.CopyFrom(graph)
    assert _ops(moved) == _ops(model)  # weights changed, not the structure
    np.testing.assert_allclose(_run(moved, feed), want, rtol=1e-5, atol=1e-4)


def test_affine_map_is_refused_for_shared_weights_and_bias_free_matmul():
    graph = _copy(_two_branch_logit(shared_weights=True)).graph
    del graph.output[:]
    before = graph.SerializeToString()
    assert not push_affine(graph, "y", 2.0, 1.0)
    assert graph.SerializeToString() == before
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    model = _model(nodes, [_const("w", RNG.normal(size=(F, 1)))], [("x", F)])
    graph = _copy(model).graph
    del graph.output[:]
    assert not push_affine(graph, "y", 2.0, 1.0)  # the offset would need a bias the layer does not have
    assert push_affine(graph, "y", 2.0, 0.0)
