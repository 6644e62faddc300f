"""One small export spec per model kind: its graphs, their signatures, and how to run it both ways.

A spec says what is special about a kind; `export.export` and `export.validate` do the rest for every
kind alike. Adding a model kind means adding one spec to `SPECS`.

Graph contract (what `runtime.onnx_cost` serves):
- feature models (LR, MLP): one graph `model.onnx`, `features (N, F) -> cost (N,)`;
- sequence models (Siamese, TCN, Transformer): `encoder.onnx`, `window (N, L, C), mask (N, L) ->
  embedding (N, E)`, and `head.onnx`, `emb_a (N, E), emb_b (N, E), features (N, F) -> cost (N,)`.
Before calibration is folded in, the cost graph outputs `logit (N,)` instead of `cost`.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

__all__ = [
    "OPSET",
    "BATCH_DIM",
    "TensorSignature",
    "GraphSignature",
    "ExportSpec",
    "FeatureModelSpec",
    "LogisticSpec",
    "MLPSpec",
    "SequenceSpec",
    "SPECS",
    "export_spec",
]

# Pinned for every graph (skl2onnx output is converted up to it; torch emits it natively).
OPSET = 18
ML_OPSET = 3
BATCH_DIM = "N"
LOGIT = "logit"
COST = "cost"
# Validation scores every test pair in chunks, so neither torch nor onnxruntime holds the activations of all
# ~260k pairs (or all windows) at once: the Siamese export's peak memory went from 3.0 to 1.8 GB.
ENCODER_CHUNK = 2048
HEAD_CHUNK = 16384


def _chunks(n: int, size: int):
    """Slices covering range(n) in steps of `size`."""
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


@dataclass(frozen=True)
class TensorSignature:
    """One graph input or output: name, element type, shape with the symbolic batch axis `N`."""

    name: str
    dtype: str   # "float32" or "float64"
    shape: tuple  # e.g. ("N", 47)

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class GraphSignature:
    role: str     # "model", "encoder" or "head"
    file: str
    inputs: tuple
    outputs: tuple

    def to_json(self) -> dict:
        return {"file": self.file, "inputs": [t.to_json() for t in self.inputs],
                "outputs": [t.to_json() for t in self.outputs]}


def name_batch_axis(model, names: tuple[str, ...] | None = None) -> None:
    """Give axis 0 of every graph input and output the symbolic name `N` (in place)."""
    for vi in list(model.graph.input) + list(model.graph.output):
        if names is not None and vi.name not in names:
            continue
        dims = vi.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = BATCH_DIM


def torch_graph(module, example: tuple, input_names: tuple[str, ...], output_name: str, dynamo: bool = False):
    """torch.onnx.export of `module` at opset `OPSET` with a dynamic batch axis `N` on every input and the output.

    The example batch has >= 2 rows so no batch dimension is specialised away. `dynamo=False` is the
    TorchScript exporter: deprecated but well proven on these small graphs, and seconds faster per
    graph than the torch.export-based one (`dynamo=True`, which works too and is kept as an option).
    Local functions are inlined so the graph holds standard ONNX ops only (the runtime refuses others).
    """
    import logging

    import onnx
    import onnx.inliner
    import torch

    module = module.eval()
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "torchvision is not installed" notices and the like
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            if dynamo:
                batch = torch.export.Dim(BATCH_DIM, min=1)
                program = torch.onnx.export(module, example, input_names=list(input_names),
                                            output_names=[output_name], opset_version=OPSET, dynamo=True,
                                            dynamic_shapes={name: {0: batch} for name in input_names},
                                            optimize=True, verbose=False)
                model = program.model_proto
            else:
                buf = io.BytesIO()
                axes = {name: {0: BATCH_DIM} for name in (*input_names, output_name)}
                torch.onnx.export(module, example, buf, input_names=list(input_names), output_names=[output_name],
                                  opset_version=OPSET, dynamo=False, dynamic_axes=axes, do_constant_folding=True)
                model = onnx.load_from_string(buf.getvalue())
    finally:
        quiet.setLevel(level)
    model = onnx.inliner.inline_local_functions(model)
    name_batch_axis(model)
    return model


class ExportSpec:
    """What one model kind needs from the generic export path.

    Attributes
    ----------
    kind : the model kind ("lr", "mlp", ...).
    cost_role : the graph that ends in the logit and gets the calibration nodes.
    parity_atol : the largest |cost_onnx - cost_framework| the parity check accepts.
    """

    kind: str = ""
    cost_role: str = "model"
    parity_atol: float = 1e-4

    def signatures(self, model) -> dict[str, GraphSignature]:
        """Role -> signature of the shipped graphs (the cost graph with `cost` as its output)."""
        raise NotImplementedError

    def logit_graphs(self, model) -> dict:
        """Role -> onnx.ModelProto; the cost-role graph outputs `logit (N,)`, the others their final outputs."""
        raise NotImplementedError

    def framework_logits(self, model, pairs) -> np.ndarray:
        """(N,) float64 logits of the trained model in its own framework for `pairs` (ScenarioPairs)."""
        raise NotImplementedError

    def graph_outputs(self, model, sessions: Mapping[str, Any], pairs) -> np.ndarray:
        """(N,) output of the cost graph run in onnxruntime for `pairs`, via every graph of the artifact."""
        raise NotImplementedError

    def runtime_inputs(self, model) -> dict:
        """The manifest's description of what the runtime must compute (feature names, window settings)."""
        raise NotImplementedError

    def extra_parity(self, model, sessions: Mapping[str, Any], pairs) -> dict:
        """Kind-specific parity figures (e.g. encoders at several window lengths): name -> max |diff|."""
        return {}


# --------------------------------------------------------------------------------------------------------
# Feature models: one graph, engineered features in.

class FeatureModelSpec(ExportSpec):
    """A model of engineered pair features only: `features (N, F) -> cost (N,)`."""

    feature_dtype = "float32"

    def feature_names(self, model) -> list[str]:
        from runtime.features import FEATURE_NAMES

        return list(FEATURE_NAMES)

    def feature_matrix(self, model, pairs) -> np.ndarray:
        from runtime.features import FEATURE_NAMES

        names = self.feature_names(model)
        cols = [list(FEATURE_NAMES).index(n) for n in names]
        return np.ascontiguousarray(pairs.features[:, cols], dtype=np.dtype(self.feature_dtype))

    def input_width(self, model) -> int:
        """Columns of the graph's `features` input."""
        return len(self.feature_names(model))

    def signatures(self, model) -> dict[str, GraphSignature]:
        n = self.input_width(model)
        return {"model": GraphSignature("model", "model.onnx",
                                        (TensorSignature("features", self.feature_dtype, (BATCH_DIM, n)),),
                                        (TensorSignature(COST, "float64", (BATCH_DIM,)),))}

    def graph_outputs(self, model, sessions, pairs) -> np.ndarray:
        sess = sessions["model"]
        x = self.feature_matrix(model, pairs)
        out_name = sess.get_outputs()[0].name
        out = np.empty(len(x), dtype=np.float64)
        for sl in _chunks(len(x), HEAD_CHUNK):
            out[sl] = np.asarray(sess.run([out_name], {"features": x[sl]})[0], dtype=np.float64).reshape(-1)
        return out

    def runtime_inputs(self, model) -> dict:
        return {"feature_names": self.feature_names(model)}


class LogisticSpec(FeatureModelSpec):
    """Logistic regression: StandardScaler + LogisticRegression through skl2onnx, in float64.

    skl2onnx with zipmap off and raw scores gives (N, 2) = (-score, score); column 1 is the logit.
    The label branch is pruned when the calibration is folded in. A model with a feature transform or
    extra inputs (`training.lr`) gets the same steps as graph nodes in front of the scaler: the graph's
    `features` input holds the raw features, then the raw extra inputs (the runtime computes them; the
    manifest lists them under `inputs.extra_inputs`).
    """

    kind = "lr"
    feature_dtype = "float64"  # the scaler divides by per-feature scales; float64 keeps parity near 1e-12

    def feature_names(self, model) -> list[str]:
        return list(model.feature_names)

    def input_width(self, model) -> int:
        return model.n_inputs

    def feature_matrix(self, model, pairs) -> np.ndarray:
        return np.ascontiguousarray(model.pair_inputs(pairs), dtype=np.float64)

    def runtime_inputs(self, model) -> dict:
        out = {"feature_names": self.feature_names(model)}
        if model.inputs:
            out["extra_inputs"] = [dict(i) for i in model.inputs]
        return out

    def logit_graphs(self, model) -> dict:
        import onnx.version_converter
        from onnx import helper, numpy_helper
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import DoubleTensorType

        pipe = model.to_sklearn()
        clf = pipe.steps[-1][1]
        onx = convert_sklearn(pipe, initial_types=[("features", DoubleTensorType([None, model.n_inputs]))],
                              options={id(clf): {"zipmap": False, "raw_scores": True}},
                              target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET})
        onx = onnx.version_converter.convert_version(onx, OPSET)
        _prepend_input_transform(onx, model)
        scores = [o.name for o in onx.graph.output if o.name != "label"][0]
        onx.graph.initializer.append(numpy_helper.from_array(np.asarray(1, dtype=np.int64), "logit_column"))
        onx.graph.node.append(helper.make_node("Gather", [scores, "logit_column"], [LOGIT], name="logit", axis=1))
        onx.graph.output.append(helper.make_tensor_value_info(LOGIT, onnx.TensorProto.DOUBLE, [BATCH_DIM]))
        name_batch_axis(onx)
        return {"model": onx}

    def framework_logits(self, model, pairs) -> np.ndarray:
        return np.asarray(model.decision_function(self.feature_matrix(model, pairs)), dtype=np.float64)


def _prepend_input_transform(onx, model) -> None:
    """Rewire `onx` so its input `features` (raw features, then raw extra inputs) passes through the model's
    transforms first: signed log of the feature columns (`transform="slog"`), log(x + eps) of each extra
    input. Nothing changes for a model with neither."""
    from onnx import helper, numpy_helper

    n, extra = len(model.feature_names), list(model.inputs)
    if model.transform == "none" and not extra:
        return
    prefix = "inputs/"
    transformed = prefix + "transformed"
    for node in onx.graph.node:
        node.input[:] = [transformed if name == "features" else name for name in node.input]
    consts = {"one": np.asarray(1.0), "start": np.asarray([0], dtype=np.int64),
              "split": np.asarray([n], dtype=np.int64), "end": np.asarray([n + len(extra)], dtype=np.int64),
              "axis": np.asarray([1], dtype=np.int64),
              "eps": np.asarray([float(i["eps"]) for i in extra], dtype=np.float64)}
    inits = [numpy_helper.from_array(v, prefix + k) for k, v in consts.items()]
    c = {k: prefix + k for k in consts}
    t = lambda name: prefix + name  # noqa: E731
    nodes, parts = [], []
    feats = "features"
    if extra:
        nodes.append(helper.make_node("Slice", ["features", c["start"], c["split"], c["axis"]], [t("feats")],
                                      name=t("slice_features")))
        nodes.append(helper.make_node("Slice", ["features", c["split"], c["end"], c["axis"]], [t("extra")],
                                      name=t("slice_extra")))
        feats = t("feats")
    if model.transform == "slog":  # sign(x) log(1 + |x|)
        nodes += [helper.make_node("Abs", [feats], [t("abs")], name=t("abs")),
                  helper.make_node("Add", [t("abs"), c["one"]], [t("abs1")], name=t("abs_plus_1")),
                  helper.make_node("Log", [t("abs1")], [t("log")], name=t("log1p")),
                  helper.make_node("Sign", [feats], [t("sign")], name=t("sign")),
                  helper.make_node("Mul", [t("sign"), t("log")], [t("slog")], name=t("slog"))]
        feats = t("slog")
    parts.append(feats)
    if extra:
        if any(i.get("transform") != "log" for i in extra):
            raise ValueError(f"extra inputs with transforms other than log: {extra}")
        nodes += [helper.make_node("Add", [t("extra"), c["eps"]], [t("extra_eps")], name=t("extra_plus_eps")),
                  helper.make_node("Log", [t("extra_eps")], [t("extra_log")], name=t("extra_log"))]
        parts.append(t("extra_log"))
    nodes.append(helper.make_node("Concat", parts, [transformed], name=t("concat"), axis=1) if len(parts) > 1
                 else helper.make_node("Identity", parts, [transformed], name=t("identity")))
    old = list(onx.graph.node)
    del onx.graph.node[:]
    onx.graph.node.extend(nodes + old)
    onx.graph.initializer.extend(inits)


class MLPSpec(FeatureModelSpec):
    """MLP: `forward(features) -> logit`, feature standardisation inside the module (so inside the graph)."""

    kind = "mlp"
    feature_dtype = "float32"

    def logit_graphs(self, model) -> dict:
        import torch

        n = len(self.feature_names(model))
        example = (torch.as_tensor(np.linspace(-1.0, 1.0, 4 * n).reshape(4, n), dtype=torch.float32),)
        return {"model": torch_graph(model, example, ("features",), LOGIT)}

    def framework_logits(self, model, pairs) -> np.ndarray:
        import torch

        x = torch.as_tensor(self.feature_matrix(model, pairs))
        with torch.no_grad():
            return model.eval()(x).reshape(-1).double().numpy()


# --------------------------------------------------------------------------------------------------------
# Sequence models: encoder graph (cached per fragment by the runtime) + head graph.

def _encoder_module(model):
    """`model.encoder` as a module with named inputs, for export."""
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, window, mask):
            return self.m.encoder(window, mask)

    return Encoder(model).eval()


def _head_module(model):
    """`model.head` as a module with named inputs and a (N,) logit, for export."""
    import torch

    class Head(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, emb_a, emb_b, features):
            return self.m.head(emb_a, emb_b, features).reshape(-1)

    return Head(model).eval()


@dataclass
class SequenceSpec(ExportSpec):
    """A sequence model: per-fragment encoder on junction windows + pair head on embeddings and features.

    Parameters
    ----------
    kind : "siamese", "tcn" or "transformer".
    parity_atol : cost tolerance.
    dynamo : use the torch.export-based exporter instead of the TorchScript one.
    """

    kind: str = ""
    parity_atol: float = 1e-4
    dynamo: bool = False
    cost_role: str = field(default="head", init=False)

    def window_length(self, model) -> int:
        return int(getattr(model.config, "window_length", 64))

    def embedding_dim(self, model) -> int:
        import torch

        L = self.window_length(model)
        window, mask = self._example_windows(model, L, 2)
        with torch.no_grad():
            return int(model.encoder(window, mask).shape[-1])

    def _example_windows(self, model, L: int, n: int):
        import torch

        from runtime.windows import N_CHANNELS

        rng = np.random.default_rng(0)
        window = torch.as_tensor(rng.normal(size=(n, L, N_CHANNELS)), dtype=torch.float32)
        mask = torch.ones(n, L, dtype=torch.float32)
        mask[1, L // 2:] = 0.0  # one padded row so masking paths are traced
        return window, mask

    def signatures(self, model) -> dict[str, GraphSignature]:
        from runtime.features import FEATURE_NAMES
        from runtime.windows import N_CHANNELS

        L, E, F = self.window_length(model), self.embedding_dim(model), len(FEATURE_NAMES)
        return {
            "encoder": GraphSignature("encoder", "encoder.onnx",
                                      (TensorSignature("window", "float32", (BATCH_DIM, L, N_CHANNELS)),
                                       TensorSignature("mask", "float32", (BATCH_DIM, L))),
                                      (TensorSignature("embedding", "float32", (BATCH_DIM, E)),)),
            "head": GraphSignature("head", "head.onnx",
                                   (TensorSignature("emb_a", "float32", (BATCH_DIM, E)),
                                    TensorSignature("emb_b", "float32", (BATCH_DIM, E)),
                                    TensorSignature("features", "float32", (BATCH_DIM, F))),
                                   (TensorSignature(COST, "float64", (BATCH_DIM,)),)),
        }

    def logit_graphs(self, model) -> dict:
        import torch

        from runtime.features import FEATURE_NAMES

        L = self.window_length(model)
        window, mask = self._example_windows(model, L, 4)
        encoder = torch_graph(_encoder_module(model), (window, mask), ("window", "mask"), "embedding", self.dynamo)
        with torch.no_grad():
            emb = model.encoder(window, mask)
        features = torch.as_tensor(np.linspace(-1, 1, 4 * len(FEATURE_NAMES)).reshape(4, -1), dtype=torch.float32)
        head = torch_graph(_head_module(model), (emb, emb.flip(0), features), ("emb_a", "emb_b", "features"), LOGIT,
                           self.dynamo)
        return {"encoder": encoder, "head": head}

    def _pair_windows(self, model, pairs, L: int | None = None):
        """Tail windows of every `a` fragment and head windows of every `b` fragment, once per fragment."""
        from runtime.features import schema_fragment
        from runtime.fragment import Fragment
        from runtime.windows import HEAD, N_CHANNELS, TAIL, fragment_windows

        L = L or self.window_length(model)
        used = np.unique(np.r_[pairs.a, pairs.b])
        row = {int(f): i for i, f in enumerate(used)}
        windows = np.zeros((2, used.size, L, N_CHANNELS), dtype=np.float32)
        masks = np.zeros((2, used.size, L), dtype=np.float32)
        for i, f in enumerate(used):
            w, m = fragment_windows(schema_fragment(Fragment.from_document(pairs.docs[int(f)]), pairs.schema), L)
            windows[:, i], masks[:, i] = w, m
        ia = np.array([row[int(f)] for f in pairs.a], dtype=np.int64)
        ib = np.array([row[int(f)] for f in pairs.b], dtype=np.int64)
        return windows[TAIL], masks[TAIL], windows[HEAD], masks[HEAD], ia, ib

    def framework_logits(self, model, pairs) -> np.ndarray:
        import torch

        tails, tail_masks, heads, head_masks, ia, ib = self._pair_windows(model, pairs)
        with torch.no_grad():
            model.eval()

            def encode(w, m):
                return torch.cat([model.encoder(torch.as_tensor(w[sl]), torch.as_tensor(m[sl]))
                                  for sl in _chunks(len(w), ENCODER_CHUNK)])

            emb_t, emb_h = encode(tails, tail_masks), encode(heads, head_masks)
            out = np.empty(len(pairs), dtype=np.float64)
            feats = torch.as_tensor(np.asarray(pairs.features, dtype=np.float32))
            for sl in _chunks(len(pairs), HEAD_CHUNK):
                out[sl] = model.head(emb_t[ia[sl]], emb_h[ib[sl]], feats[sl]).reshape(-1).double().numpy()
        return out

    def graph_outputs(self, model, sessions, pairs) -> np.ndarray:
        tails, tail_masks, heads, head_masks, ia, ib = self._pair_windows(model, pairs)
        enc, head = sessions["encoder"], sessions["head"]

        def encode(w, m):
            return np.concatenate([enc.run(["embedding"], {"window": w[sl], "mask": m[sl]})[0]
                                   for sl in _chunks(len(w), ENCODER_CHUNK)])

        emb_t, emb_h = encode(tails, tail_masks), encode(heads, head_masks)
        out_name = head.get_outputs()[0].name
        feats = np.ascontiguousarray(pairs.features, dtype=np.float32)
        out = np.empty(len(pairs), dtype=np.float64)
        for sl in _chunks(len(pairs), HEAD_CHUNK):
            out[sl] = np.asarray(head.run([out_name], {"emb_a": emb_t[ia[sl]], "emb_b": emb_h[ib[sl]],
                                                       "features": feats[sl]})[0], dtype=np.float64).reshape(-1)
        return out

    def extra_parity(self, model, sessions, pairs) -> dict:
        """Encoder embeddings, framework vs onnxruntime: every tail and head window of the pairs' fragments
        (all their valid lengths), and every prefix mask (1 .. L valid rows) on the longest real windows."""
        import torch

        enc = sessions["encoder"]
        L = self.window_length(model)
        tails, tail_masks, heads, head_masks, _, _ = self._pair_windows(model, pairs)
        w = np.concatenate([tails, heads])
        m = np.concatenate([tail_masks, head_masks])
        longest = np.argsort(-m.sum(axis=1), kind="stable")[:8]
        prefix = (np.arange(L)[None, :] < np.arange(1, L + 1)[:, None]).astype(np.float32)
        w = np.concatenate([w, np.repeat(w[longest], L, axis=0)])
        m = np.concatenate([m, np.tile(prefix, (len(longest), 1))])
        worst = 0.0
        for sl in _chunks(len(w), ENCODER_CHUNK):
            with torch.no_grad():
                ref = model.encoder(torch.as_tensor(w[sl]), torch.as_tensor(m[sl])).numpy()
            got = enc.run(["embedding"], {"window": w[sl], "mask": m[sl]})[0]
            worst = max(worst, float(np.abs(got - ref).max()))
        valid = m.sum(axis=1)
        return {"embedding_max_abs_diff": worst, "embedding_windows": int(len(w)),
                "embedding_valid_rows": [int(valid.min()), int(valid.max())]}

    def runtime_inputs(self, model) -> dict:
        from runtime.features import FEATURE_NAMES
        from runtime.windows import CHANNELS

        return {"feature_names": list(FEATURE_NAMES), "window_length": self.window_length(model),
                "channels": list(CHANNELS)}


SPECS: dict[str, ExportSpec] = {
    "lr": LogisticSpec(),
    "mlp": MLPSpec(),
    "siamese": SequenceSpec("siamese"),
    "tcn": SequenceSpec("tcn"),
    "transformer": SequenceSpec("transformer"),
}


def export_spec(kind: str) -> ExportSpec:
    """The spec of `kind`; unknown kinds raise with the known list."""
    try:
        return SPECS[kind]
    except KeyError:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(SPECS)}") from None
