"""Fold constant affine maps into the linear layers next to them, so a cost graph runs fewer nodes.

Every node costs about a microsecond per call in onnxruntime here, and the stitcher calls the cost graph
once per pair or batch, so two rewrites that leave the function unchanged (up to float rounding) pay:

- `fold_input_scaling`: a feature standardisation `(x - mean) / scale` on a graph input, feeding
  linear layers (Gemm, MatMul + bias, or a Concat that feeds one), becomes part of their weights:
  W' = W / scale (per input row), b' = b - (mean / scale) W.
- `push_affine`: `scale * t + offset` of a tensor `t` is moved up into the layer(s) producing it,
  through shape-only nodes, Gather, and Add: W' = scale W, b' = scale b + offset. The calibration
  uses it to compute its linear step `v = v0 - v1 z` inside the model's last layer.

Both only rewrite what they can prove safe (constants used once, attributes they understand); anything
else is left as it was. The export validates the rewritten graph against the training framework like
any other (parity on held-out pairs), so a rounding or folding error cannot ship.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import numpy as np

__all__ = ["fold_input_scaling", "push_affine", "prune_unused"]

# Nodes through which an elementwise affine map commutes unchanged (they move or select elements).
_SHAPE_OPS = frozenset({"Squeeze", "Unsqueeze", "Reshape", "Flatten", "Identity"})


class _Index:
    """Producers, consumers and initializers of one graph, for the rewrites below."""

    def __init__(self, graph):
        from onnx import numpy_helper

        self.graph = graph
        self.inits = {t.name: t for t in graph.initializer}
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list] = defaultdict(list)
        for n in graph.node:
            for name in n.input:
                if name:
                    self.consumers[name].append(n)
        self.outputs = {o.name for o in graph.output}
        self._array = numpy_helper.to_array

    def used_once(self, name: str) -> bool:
        """`name` feeds exactly one node and is not a graph output."""
        return len(self.consumers[name]) == 1 and name not in self.outputs

    def constant(self, name: str, used_by_one: bool = True) -> np.ndarray | None:
        """The initializer `name` as a float64 array (None if it is not a float initializer, or, with
        `used_by_one`, if another node reads it too)."""
        tensor = self.inits.get(name)
        if tensor is None or (used_by_one and not self.used_once(name)):
            return None
        value = self._array(tensor)
        return value.astype(np.float64) if value.dtype in (np.float32, np.float64) else None

    def replace(self, name: str, value: np.ndarray) -> None:
        """Overwrite initializer `name` with `value`, keeping its element type."""
        from onnx import numpy_helper

        tensor = self.inits[name]
        dtype = numpy_helper.to_array(tensor).dtype
        tensor.CopyFrom(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _linear_weights(index: _Index, node) -> tuple[np.ndarray, bool, float, float] | None:
    """(B as stored, transB, alpha, beta) of a Gemm whose B is a constant used only by it; None otherwise."""
    attrs = _attrs(node)
    if attrs.get("transA", 0):
        return None
    weights = index.constant(node.input[1])
    if weights is None or weights.ndim != 2:
        return None
    return weights, bool(attrs.get("transB", 0)), float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))


# ------------------------------------------------------------------------------------------------------
# Output side: scale * t + offset moved into the producers of t.

def _plan(index: _Index, tensor: str, scale: float, offset: float, plan: list) -> bool:
    """Append to `plan` the initializer rewrites that make `tensor` hold `scale * tensor + offset`."""
    node = index.producer.get(tensor)
    if node is None:  # a graph input or an initializer
        return False
    op = node.op_type
    if op in _SHAPE_OPS or (op == "Gather" and node.input[1] in index.inits):
        source = node.input[0]
        return index.used_once(source) and _plan(index, source, scale, offset, plan)
    if op == "Add":
        p, q = node.input
        for var, const in ((p, q), (q, p)):
            if const in index.inits:
                value = index.constant(const)
                if value is None or var in index.inits or not index.used_once(var):
                    return False
                plan.append((const, scale * value + offset))
                return _plan(index, var, scale, 0.0, plan)
        return (p != q and index.used_once(p) and index.used_once(q)
                and _plan(index, p, scale, offset, plan) and _plan(index, q, scale, 0.0, plan))
    if op == "Gemm":
        found = _linear_weights(index, node)
        if found is None:
            return False
        weights, _, _, beta = found
        plan.append((node.input[1], scale * weights))
        if len(node.input) > 2 and node.input[2]:
            bias = index.constant(node.input[2])
            if bias is None:
                return False
            plan.append((node.input[2], scale * bias + offset / beta))
            return True
        return offset == 0.0
    if op == "MatMul":
        weights = index.constant(node.input[1])
        if weights is None or offset != 0.0:
            return False
        plan.append((node.input[1], scale * weights))
        return True
    return False


def push_affine(graph, tensor: str, scale: float, offset: float) -> bool:
    """Rewrite the layers producing `tensor` so that it holds `scale * tensor + offset` (in place).

    Walks up from `tensor` through shape-only nodes, Gather with constant indices, and Add, to Gemm or
    MatMul layers with constant weights, each tensor on the way used by one node only. Returns False,
    with the graph untouched, when the chain is anything else (or a MatMul without a bias would need
    the offset).
    """
    index = _Index(graph)
    if tensor in index.outputs or len(index.consumers[tensor]) > 1:
        return False
    plan: list = []
    if not _plan(index, tensor, float(scale), float(offset), plan):
        return False
    for name, value in plan:
        index.replace(name, value)
    return True


# ------------------------------------------------------------------------------------------------------
# Input side: (x - mean) / scale folded into the layers it feeds.

def _concat_offsets(model, concat) -> list[int] | None:
    """Column offset of each input of a last-axis Concat (static widths from shape inference)."""
    from onnx import shape_inference

    axis = _attrs(concat).get("axis")
    inferred = shape_inference.infer_shapes(model).graph
    widths = {}
    for vi in list(inferred.value_info) + list(inferred.input) + list(inferred.output):
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 2 and dims[1].HasField("dim_value"):
            widths[vi.name] = dims[1].dim_value
    if axis not in (1, -1) or any(name not in widths for name in concat.input):
        return None
    return list(np.cumsum([0] + [widths[name] for name in concat.input])[:-1])


def _fold_rows(index: _Index, layer, rows: slice, mean: np.ndarray, scale: np.ndarray) -> list | None:
    """The rewrites that make `layer` (Gemm, or MatMul + constant Add) take x instead of (x - mean) / scale
    on its input rows `rows`; None when it cannot.

    Either way the layer is y = factor * (input @ M) + bias with M (inputs, outputs): rows `rows` of M
    are divided by `scale`, and the bias loses factor * (mean / scale) @ M[rows].
    """
    if layer.op_type == "Gemm":
        found = _linear_weights(index, layer)
        if found is None or len(layer.input) < 3 or not layer.input[2]:
            return None
        weights, trans, alpha, beta = found
        bias_name, factor = layer.input[2], alpha / beta
        matrix = weights.T if trans else weights

        def stored(m):
            return m.T if trans else m
    elif layer.op_type == "MatMul":
        weights = index.constant(layer.input[1])
        after = index.consumers[layer.output[0]]
        if weights is None or weights.ndim not in (1, 2) or len(after) != 1 or after[0].op_type != "Add" \
                or not index.used_once(layer.output[0]):
            return None
        add = after[0]
        bias_name, factor = add.input[1] if add.input[0] == layer.output[0] else add.input[0], 1.0
        matrix = weights if weights.ndim == 2 else weights[:, None]

        def stored(m):
            return m if weights.ndim == 2 else m[:, 0]
    else:
        return None
    bias = index.constant(bias_name)
    if bias is None or matrix.shape[0] < rows.stop:
        return None
    part = matrix[rows]
    shift = factor * ((mean / scale) @ part)
    matrix = matrix.copy()
    matrix[rows] = part / scale[:, None]
    folded_bias = bias - shift
    if folded_bias.size == bias.size:  # keep the bias's own shape (a scalar stays a scalar)
        folded_bias = folded_bias.reshape(bias.shape)
    return [(layer.input[1], stored(matrix)), (bias_name, folded_bias)]


def fold_input_scaling(model) -> int:
    """Fold every `Div(Sub(input, mean), scale)` on a graph input into the linear layers it feeds (in place).

    The standardised tensor may feed Gemm layers (as their first input), MatMul layers followed by a
    constant Add, or last-axis Concats that feed one such layer. Returns how many standardisations were
    folded; their Sub and Div nodes are pruned.
    """
    graph = model.graph
    folded = 0
    for x in [i.name for i in graph.input]:
        index = _Index(graph)
        for sub in [n for n in index.consumers[x] if n.op_type == "Sub" and n.input[0] == x]:
            mean = index.constant(sub.input[1])
            after = index.consumers[sub.output[0]]
            if mean is None or len(after) != 1 or after[0].op_type != "Div" or not index.used_once(sub.output[0]):
                continue
            div = after[0]
            scale = index.constant(div.input[1]) if div.input[0] == sub.output[0] else None
            if scale is None or div.output[0] in index.outputs:
                continue
            mean, scale = mean.reshape(-1), scale.reshape(-1)
            if mean.size != scale.size or not np.isfinite(scale).all() or (scale == 0).any() \
                    or not np.isfinite(mean).all():
                continue
            rewrites, rewired = [], []
            for layer in index.consumers[div.output[0]]:
                target, rows = layer, slice(0, mean.size)
                if layer.op_type == "Concat":
                    offsets = _concat_offsets(model, layer)
                    users = index.consumers[layer.output[0]]
                    if offsets is None or list(layer.input).count(div.output[0]) != 1 or len(users) != 1 \
                            or not index.used_once(layer.output[0]) or users[0].input[0] != layer.output[0]:
                        rewrites = None
                        break
                    start = offsets[list(layer.input).index(div.output[0])]
                    target, rows = users[0], slice(start, start + mean.size)
                elif layer.input[0] != div.output[0]:
                    rewrites = None
                    break
                found = _fold_rows(index, target, rows, mean, scale)
                if found is None:
                    rewrites = None
                    break
                rewrites += found
                rewired.append(layer)
            if not rewrites:
                continue
            for name, value in rewrites:
                index.replace(name, value)
            for layer in rewired:
                for k, name in enumerate(layer.input):
                    if name == div.output[0]:
                        layer.input[k] = x
            folded += 1  # the Sub and Div now feed nothing; pruned below
            index = _Index(graph)
    if folded:
        prune_unused(graph)
    return folded


def prune_unused(graph, keep: Iterable[str] | None = None) -> None:
    """Remove nodes, initializers and value_info that do not feed a graph output, or the tensors named
    in `keep` when given (in place)."""
    needed = {o.name for o in graph.output} if keep is None else set(keep)
    keep = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
            for attr in node.attribute:  # subgraphs read outer-scope names
                for sub in list(attr.graphs) + ([attr.g] if attr.HasField("g") else []):
                    for sn in sub.node:
                        needed.update(i for i in sn.input if i)
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    inits = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    vi = [v for v in graph.value_info if v.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(vi)
