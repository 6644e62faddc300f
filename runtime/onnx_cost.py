"""Serve any exported stitch-cost artifact (`export-onnx`) with numpy + onnxruntime only.

An artifact folder holds the ONNX graph(s), whose output already *is* the cost on the stitcher's
threshold scale (calibration folded in), and `manifest.json` with the sha256 of every file. Loading
refuses anything it cannot vouch for, each with its own `ArtifactError` subclass: a missing file, a
checksum mismatch, a path that leaves the folder, an unknown artifact version or feature schema, a
graph with external data, local functions or a non-standard op domain, graph inputs/outputs that
differ from the manifest. Each file is read once; the bytes that were hashed are the bytes handed to
onnxruntime.

Serving: per fragment, once (cached by fragment identity): the engineered-feature summary and, for
sequence models, the embeddings of its tail and head junction windows (one batched encoder call).
Per pair: feature arithmetic on two summaries plus one cost-graph call; `compute_costs` scores one
new fragment against all its candidates in one graph call. A model whose manifest lists extra inputs
(`inputs.extra_inputs`; today only "bhattacharyya_cost", the LR's) also gets the pair's Bhattacharyya cost
at the cone parameters recorded at export (never the caller's), written into the column after the
features; the Bhattacharyya cost's per-fragment summary (windows and fits) lives in the same cache entry
as the feature summary, built from the same validated fragment.
"""
from __future__ import annotations

import functools
import json
import math
import os
import threading
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import onnxruntime as ort

from .bhattacharyya import batch_costs, cone_parameters, pair_cost, summarize_fragment
from .cache import FragmentCache
from .cost import INVALID_COST, ConfigError, CostFunctionFactory, StitchCostFunction
from .features import FEATURE_NAMES, INPUT_FIELDS, FeatureExtractor, schema_fragment, schema_hash
from .files import sha256_bytes
from .fragment import Fragment
from .windows import CHANNELS, N_CHANNELS, fragment_windows

__all__ = [
    "ARTIFACT_FORMAT",
    "SUPPORTED_ARTIFACT_VERSIONS",
    "MODEL_KINDS",
    "ArtifactError",
    "ArtifactMissingError",
    "ManifestError",
    "UnsafePathError",
    "ChecksumError",
    "SchemaError",
    "UnsupportedGraphError",
    "SignatureMismatchError",
    "OnnxCostFunction",
    "ModelFacts",
    "inspect_model",
    "create_session",
    "read_artifact",
    "resolve_artifact",
]

ARTIFACT_FORMAT = "i24-stitch-cost-onnx"
SUPPORTED_ARTIFACT_VERSIONS = (1,)
MODEL_KINDS = ("lr", "mlp", "siamese", "tcn", "transformer")
MANIFEST = "manifest.json"
ALLOWED_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
_DTYPES = {"float32": np.float32, "float64": np.float64}
_ORT_TYPES = {"float32": "tensor(float)", "float64": "tensor(double)"}
# compute_costs pads a batch to the next power of two up to this size, so a handful of preallocated
# buffers and bindings serve every call; larger batches get buffers of their own.
_MAX_BUCKET = 1024
_add_reduce = np.add.reduce


class ArtifactError(Exception):
    """An artifact folder cannot be served; the message names the folder and what is wrong."""


class ArtifactMissingError(ArtifactError, FileNotFoundError):
    """The folder, its manifest, or a file the manifest lists does not exist."""


class ManifestError(ArtifactError):
    """manifest.json is not valid JSON, lacks a field, or has an unsupported format or version."""


class UnsafePathError(ArtifactError):
    """The manifest names a file outside the artifact folder (absolute path, `..`, link leading out)."""


class ChecksumError(ArtifactError):
    """A file's sha256 differs from the manifest's (corrupt or tampered)."""


class SchemaError(ArtifactError):
    """The artifact needs a feature schema or window layout this runtime does not compute."""


class UnsupportedGraphError(ArtifactError):
    """A graph uses external data, local functions or an op domain outside the ONNX standard."""


class SignatureMismatchError(ArtifactError):
    """A graph's inputs or outputs differ from the manifest or from the runtime's graph contract."""


# ------------------------------------------------------------------------------------------------------
# A protobuf-free look inside an ONNX file: just enough of the wire format to find op domains, local
# functions and external-data tensors (the runtime does not depend on the onnx package).

class _Malformed(Exception):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Malformed("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes, start: int, end: int):
    """(field number, wire type, value): an int for varints, a (start, end) span for length-delimited."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise _Malformed("length-delimited field runs past its message")
            yield number, wire, (pos, pos + length)
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise _Malformed(f"unsupported wire type {wire}")
    if pos != end:
        raise _Malformed("message runs past its end")


@dataclass(frozen=True)
class ModelFacts:
    """What `inspect_model` found: opset imports (domain -> version), node op domains, external tensors."""

    ir_version: int
    opsets: dict
    node_domains: frozenset
    external_tensors: tuple
    local_functions: int


# ONNX field numbers (onnx.proto3)
_MODEL_IR, _MODEL_OPSET, _MODEL_GRAPH, _MODEL_FUNCTIONS = 1, 8, 7, 25
_OPSET_DOMAIN, _OPSET_VERSION = 1, 2
_GRAPH_NODE, _GRAPH_INIT, _GRAPH_SPARSE_INIT = 1, 5, 15
_NODE_DOMAIN, _NODE_ATTR = 7, 5
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES = 5, 6, 10, 11, 22, 23
_TENSOR_NAME, _TENSOR_EXTERNAL, _TENSOR_LOCATION = 8, 13, 14
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_MAX_DEPTH = 32


class _Walker:
    def __init__(self, buf: bytes):
        self.buf = buf
        self.domains: set[str] = set()
        self.external: list[str] = []

    def text(self, span) -> str:
        return bytes(self.buf[span[0]:span[1]]).decode("utf-8", "replace")

    def tensor(self, span) -> None:
        name, external = "", False
        for number, wire, value in _fields(self.buf, *span):
            if number == _TENSOR_NAME and wire == 2:
                name = self.text(value)
            elif number == _TENSOR_EXTERNAL and wire == 2:
                external = True
            elif number == _TENSOR_LOCATION and wire == 0 and value == 1:
                external = True
        if external:
            self.external.append(name or "<unnamed>")

    def sparse(self, span) -> None:
        for number, wire, value in _fields(self.buf, *span):
            if number in (_SPARSE_VALUES, _SPARSE_INDICES) and wire == 2:
                self.tensor(value)

    def graph(self, span, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise _Malformed("subgraphs nested too deeply")
        for number, wire, value in _fields(self.buf, *span):
            if wire != 2:
                continue
            if number == _GRAPH_NODE:
                self.node(value, depth)
            elif number == _GRAPH_INIT:
                self.tensor(value)
            elif number == _GRAPH_SPARSE_INIT:
                self.sparse(value)

    def node(self, span, depth: int) -> None:
        domain = ""
        for number, wire, value in _fields(self.buf, *span):
            if wire != 2:
                continue
            if number == _NODE_DOMAIN:
                domain = self.text(value)
            elif number == _NODE_ATTR:
                self.attribute(value, depth)
        self.domains.add(domain)

    def attribute(self, span, depth: int) -> None:
        for number, wire, value in _fields(self.buf, *span):
            if wire != 2:
                continue
            if number in (_ATTR_T, _ATTR_TENSORS):
                self.tensor(value)
            elif number in (_ATTR_G, _ATTR_GRAPHS):
                self.graph(value, depth + 1)
            elif number in (_ATTR_SPARSE, _ATTR_SPARSES):
                self.sparse(value)


def inspect_model(data: bytes, label: str = "graph") -> ModelFacts:
    """Op domains, opset imports, local functions and external-data tensors of a serialised ONNX model.

    Raises
    ------
    UnsupportedGraphError
        The bytes are not a well-formed ONNX model, or it uses external data, local functions, or an
        op domain outside `ALLOWED_DOMAINS` (the standard operators onnxruntime implements itself).
    """
    w = _Walker(data)
    opsets: dict[str, int] = {}
    ir_version, functions, graphs = 0, 0, 0
    try:
        for number, wire, value in _fields(data, 0, len(data)):
            if number == _MODEL_IR and wire == 0:
                ir_version = value
            elif number == _MODEL_OPSET and wire == 2:
                domain, version = "", 0
                for n2, w2, v2 in _fields(data, *value):
                    if n2 == _OPSET_DOMAIN and w2 == 2:
                        domain = w.text(v2)
                    elif n2 == _OPSET_VERSION and w2 == 0:
                        version = v2
                opsets[domain] = version
            elif number == _MODEL_GRAPH and wire == 2:
                graphs += 1
                w.graph(value, 0)
            elif number == _MODEL_FUNCTIONS and wire == 2:
                functions += 1
    except _Malformed as exc:
        raise UnsupportedGraphError(f"{label}: not a well-formed ONNX model ({exc})") from None
    if graphs != 1 or ir_version == 0:
        raise UnsupportedGraphError(f"{label}: not an ONNX model (no graph or no IR version)")
    facts = ModelFacts(ir_version, opsets, frozenset(w.domains), tuple(w.external), functions)
    if facts.external_tensors:
        raise UnsupportedGraphError(f"{label}: tensor(s) stored as external data "
                                    f"({', '.join(facts.external_tensors[:3])}); artifacts must embed every weight")
    if functions:
        raise UnsupportedGraphError(f"{label}: {functions} local function(s); artifacts hold standard ops only")
    foreign = sorted((facts.node_domains | set(opsets)) - ALLOWED_DOMAINS)
    if foreign:
        raise UnsupportedGraphError(f"{label}: op domain(s) {', '.join(map(repr, foreign))} are not standard ONNX "
                                    f"(allowed: {', '.join(map(repr, sorted(ALLOWED_DOMAINS)))})")
    return facts


def create_session(model_bytes: bytes) -> ort.InferenceSession:
    """An onnxruntime session for the stitcher's hot path: one thread, sequential, all graph optimisations.

    One thread because calls are tiny (tens of microseconds) and pp_lite runs one stitcher per direction:
    thread pools would only add wake-up latency and contention.
    """
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(model_bytes, sess_options=so, providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------------------------------------------
# Reading an artifact folder.

def _member(folder: str, name: Any) -> str:
    """The path of manifest entry `name` inside `folder`; refuses anything that could leave it."""
    if not isinstance(name, str) or not name:
        raise UnsafePathError(f"{folder}: manifest names a file {name!r:.60}, expected a plain relative name")
    parts = name.replace("\\", "/").split("/")
    if os.path.isabs(name) or name.startswith(("/", "\\")) or any(p in ("", ".", "..") for p in parts) or ":" in name:
        raise UnsafePathError(f"{folder}: manifest file {name!r} is not a plain relative path inside the artifact")
    path = os.path.join(folder, *parts)
    root = os.path.realpath(folder)
    if os.path.commonpath([root, os.path.realpath(path)]) != root:
        raise UnsafePathError(f"{folder}: manifest file {name!r} resolves outside the artifact folder")
    return path


def read_artifact(folder: str) -> tuple[dict, dict[str, bytes]]:
    """The manifest and the verified bytes of every file it lists.

    Raises
    ------
    ArtifactMissingError, ManifestError, UnsafePathError, ChecksumError, UnsupportedGraphError
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise ArtifactMissingError(f"artifact folder {folder!r} does not exist")
    manifest_path = os.path.join(folder, MANIFEST)
    try:
        with open(manifest_path, "rb") as fh:
            manifest = json.loads(fh.read().decode("utf-8"))
    except FileNotFoundError:
        raise ArtifactMissingError(f"{folder}: no {MANIFEST}; not an exported artifact") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{manifest_path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != ARTIFACT_FORMAT:
        raise ManifestError(f"{manifest_path}: format is {manifest.get('format') if isinstance(manifest, dict) else None!r}, "
                            f"expected {ARTIFACT_FORMAT!r}")
    version = manifest.get("artifact_version")
    if version not in SUPPORTED_ARTIFACT_VERSIONS:
        raise ManifestError(f"{manifest_path}: artifact_version {version!r} is not supported by this runtime "
                            f"(supported: {', '.join(map(str, SUPPORTED_ARTIFACT_VERSIONS))})")
    if manifest.get("external_data"):
        raise UnsupportedGraphError(f"{folder}: the manifest lists external data files "
                                    f"{manifest['external_data']!r}; artifacts must embed every weight")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ManifestError(f"{manifest_path}: 'files' must map each file name to its sha256")
    blobs: dict[str, bytes] = {}
    for name, entry in files.items():
        path = _member(folder, name)
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(digest, str) or len(digest) != 64:
            raise ManifestError(f"{manifest_path}: file {name!r} has no valid sha256")
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            raise ArtifactMissingError(f"{folder}: file {name!r} listed in the manifest is missing") from None
        actual = sha256_bytes(data)
        if actual != digest.lower():
            raise ChecksumError(f"{folder}: {name} has sha256 {actual[:16]}..., the manifest says {digest[:16]}...; "
                                "the file is corrupt or was modified after export")
        blobs[name] = data
    return manifest, blobs


def resolve_artifact(path: str, base_dir: str | None = None) -> str:
    """An artifact folder named in a config: absolute as is; relative against the config file's folder,
    then the working directory, then the repository root beside the `runtime` package (a source
    checkout), then the `runtime` package itself (an install ships `artifacts/<kind>` as package data)."""
    path = os.path.expanduser(os.fspath(path))
    if os.path.isabs(path):
        return path
    package_dir = os.path.dirname(os.path.abspath(__file__))
    repo_root = os.path.dirname(package_dir)
    tried = []
    for root in (base_dir, os.getcwd(), repo_root, package_dir):
        if root is None:
            continue
        candidate = os.path.abspath(os.path.join(root, path))
        if candidate in tried:
            continue
        tried.append(candidate)
        if os.path.isdir(candidate):
            return candidate
    raise ConfigError(f"artifact folder {path!r} not found (looked in: {', '.join(tried)}); "
                      "export one with `export-onnx`")


# ------------------------------------------------------------------------------------------------------
# A graph with preallocated, bound input/output buffers.

class _BoundGraph:
    """One session; per batch size a set of numpy buffers bound once with IOBinding, so a call writes into
    the input buffers and runs: no per-call allocation of inputs, outputs, feed dicts or run options.

    Not thread-safe by itself; `OnnxCostFunction` serialises calls with a lock.
    """

    def __init__(self, session: ort.InferenceSession, inputs: Sequence[tuple[str, str, tuple]],
                 output: tuple[str, str, tuple]):
        self.session = session
        self.inputs = [(name, _DTYPES[dtype], tuple(tail)) for name, dtype, tail in inputs]
        self.output = (output[0], _DTYPES[output[1]], tuple(output[2]))
        # One RunOptions for every call: without it onnxruntime builds a default one per run (~6 us here).
        self._run_options = ort.RunOptions()
        self._bound: dict[int, tuple[list[np.ndarray], np.ndarray, _Binding]] = {}

    def buffers(self, n: int) -> tuple[list[np.ndarray], np.ndarray, "_Binding"]:
        """(input buffers, output buffer, binding) for batch size `n` (created on first use)."""
        hit = self._bound.get(n)
        if hit is not None:
            return hit
        ins = [np.zeros((n, *tail), dtype=dtype) for _, dtype, tail in self.inputs]
        name, dtype, tail = self.output
        out = np.zeros((n, *tail), dtype=dtype)
        binding = self.session.io_binding()
        # OrtValues over the numpy buffers share their memory: writing a buffer is writing the input
        values = [ort.OrtValue.ortvalue_from_numpy(buf) for buf in ins + [out]]
        for (in_name, _, _), value in zip(self.inputs, values):
            binding.bind_ortvalue_input(in_name, value)
        binding.bind_ortvalue_output(name, values[-1])
        entry = (ins, out, _Binding(self.session, binding, values, self._run_options))
        if n <= _MAX_BUCKET:
            self._bound[n] = entry
        return entry

    def run(self, bound: "_Binding") -> None:
        bound.call()


class _Binding:
    """An IOBinding, the OrtValues it binds (kept alive with it) and the call that runs it.

    `InferenceSession.run_with_iobinding` spends ~8 us per call here in Python-level checks for
    WebGPU graph capture (and ~90 us when given RunOptions, through a C++ exception it raises and
    catches). The call therefore goes to the compiled session under the wrapper (`_sess` and
    `IOBinding._iobinding`, present since onnxruntime 1.x) with the same arguments. Where those are
    missing, or the first call finds that the compiled method takes other arguments (a TypeError),
    every call goes through the public method instead.
    """

    __slots__ = ("binding", "values", "call", "_public", "_compiled")

    def __init__(self, session: ort.InferenceSession, binding: Any, values: list, run_options: Any):
        self.binding = binding
        self.values = values
        self._public = functools.partial(session.run_with_iobinding, binding)
        compiled = getattr(session, "_sess", None)
        raw = getattr(binding, "_iobinding", None)
        if compiled is not None and raw is not None and callable(getattr(compiled, "run_with_iobinding", None)):
            self._compiled = functools.partial(compiled.run_with_iobinding, raw, run_options)
            self.call = self._first_call
        else:
            self._compiled = None
            self.call = self._public

    def _first_call(self) -> None:
        try:
            self._compiled()
        except TypeError:  # the compiled method's signature differs in this onnxruntime
            self.call = self._public
            self._public()
        else:
            self.call = self._compiled


def _bucket(n: int) -> int:
    return 1 << (n - 1).bit_length() if n > 1 else 1


class _Entry:
    """Per-fragment cache entry: feature summary, junction times, (sequence models) embeddings and (a model
    with the Bhattacharyya input) the Bhattacharyya cost's own summary of the fragment."""

    __slots__ = ("summary", "t_first", "t_last", "tail", "head", "bhat")

    def __init__(self, summary, t_first: float, t_last: float, tail=None, head=None, bhat=None):
        self.summary = summary
        self.t_first = t_first
        self.t_last = t_last
        self.tail = tail   # embedding of the tail window (the fragment as the earlier one of a pair)
        self.head = head   # embedding of the head window (the fragment as the later one)
        self.bhat = bhat   # runtime.bhattacharyya summary (windows and fits)


def _document_gap(track1: Mapping[str, Any], track2: Mapping[str, Any]) -> float | None:
    """t_B[0] - t_A[-1] straight from the documents (None when unreadable: full validation will say why)."""
    try:
        gap = float(track2["timestamp"][0]) - float(track1["timestamp"][-1])
    except (KeyError, IndexError, TypeError, ValueError, OverflowError):
        return None
    return gap if math.isfinite(gap) else None  # NaN/inf at a junction: validation names it


class OnnxCostFunction(StitchCostFunction):
    """The cost of an exported artifact: `compute_cost(track1, track2, TIME_WIN, param) -> float`.

    Parameters
    ----------
    artifact_dir : folder written by `export-onnx` (graphs + manifest.json).
    cache_size : how many per-fragment entries (feature summary, embeddings) to keep.

    Raises
    ------
    ArtifactError (a subclass naming the problem) when the artifact cannot be vouched for.

    Notes
    -----
    The graph's output is the cost; the runtime does no arithmetic on it. Gap outside [0, TIME_WIN]
    is 1e6 before any graph call, and so is a non-finite output. `param` is not used (thresholds
    belong to the stitcher). Invalid fragment documents raise `FragmentError`.
    """

    name = "onnx"

    def __init__(self, artifact_dir: str, cache_size: int = 4096):
        self.artifact_dir = os.path.abspath(os.fspath(artifact_dir))
        manifest, blobs = read_artifact(self.artifact_dir)
        self.manifest = manifest
        where = self.artifact_dir
        self.kind = manifest.get("model")
        if self.kind not in MODEL_KINDS:
            raise ManifestError(f"{where}: model kind {self.kind!r} unknown (known: {', '.join(MODEL_KINDS)})")
        self.schema, names = _feature_schema(where, manifest)
        self._cone = _extra_inputs(where, manifest)  # cone parameters of the Bhattacharyya input, or None
        width = len(names) + (self._cone is not None)
        # its own cache only sees misses of ours (summaries live in our entries), so keep it tiny
        self._extractor = FeatureExtractor(self.schema, names=names, cache_size=2)
        sessions = _open_graphs(where, manifest, blobs)
        self.sequence = "encoder" in sessions
        graphs, inputs = manifest["graphs"], manifest["inputs"]
        if self.sequence:
            if self._cone is not None:
                raise SchemaError(f"{where}: inputs.extra_inputs are served for single-graph models only")
            if inputs.get("channels") != list(CHANNELS):
                raise SchemaError(f"{where}: encoder channels {inputs.get('channels')!r} differ from this runtime's "
                                  f"{list(CHANNELS)!r}")
            L = inputs.get("window_length")
            if isinstance(L, bool) or not isinstance(L, int) or L < 1:
                raise SchemaError(f"{where}: inputs.window_length must be a positive integer, got {L!r}")
            enc = _signature(where, "encoder", graphs["encoder"], sessions["encoder"],
                             {"window": ("float32", (L, N_CHANNELS)), "mask": ("float32", (L,))}, "embedding")
            E = enc["embedding"][2][0]
            head = _signature(where, "head", graphs["head"], sessions["head"],
                              {"emb_a": ("float32", (E,)), "emb_b": ("float32", (E,)), "features": (None, (len(names),))},
                              "cost")
            self.window_length, self.embedding_dim = L, E
            self._encoder = _BoundGraph(sessions["encoder"], [enc["window"], enc["mask"]], enc["embedding"])
            self._cost = _BoundGraph(sessions["head"], [head["emb_a"], head["emb_b"], head["features"]], head["cost"])
        else:
            sig = _signature(where, "model", graphs["model"], sessions["model"], {"features": (None, (width,))},
                             "cost")
            self._cost = _BoundGraph(sessions["model"], [sig["features"]], sig["cost"])
        self._single = self._cost.buffers(1)
        # the batch-1 feature row without its last column: where the features go when that column is the
        # Bhattacharyya input (a view made once, not per call)
        self._single_features = self._single[0][-1][0][:-1]
        self._lock = threading.Lock()
        self._cache = FragmentCache(self._summarize, cache_size)

    # -- per fragment ----------------------------------------------------------------------------------
    def _summarize(self, doc: Mapping[str, Any]) -> _Entry:
        # validated once: the features and (sequence models) the windows come from the same Fragment
        validated = Fragment.from_document(doc)
        fragment = schema_fragment(validated, self.schema)
        summary = self._extractor.summarize_fragment(fragment)
        entry = _Entry(summary, summary.t_start, summary.t_end,
                       bhat=summarize_fragment(validated) if self._cone is not None else None)
        if self.sequence:
            windows, masks = fragment_windows(fragment, self.window_length)
            with self._lock:
                (win, mask), out, binding = self._encoder.buffers(2)
                win[...] = windows
                mask[...] = masks
                self._encoder.run(binding)
                emb = out.copy()
            entry.tail, entry.head = emb[0], emb[1]  # windows[0] is TAIL, windows[1] is HEAD
        return entry

    @property
    def cache(self) -> FragmentCache:
        """The per-fragment cache (hits, misses, size)."""
        return self._cache

    def describe(self) -> dict:
        return {"type": "onnx", "model": self.kind, "artifact": self.artifact_dir,
                "feature_schema": self.schema, "document_fields": list(INPUT_FIELDS[self.schema]),
                "extra_inputs": list(self.manifest["inputs"].get("extra_inputs", [])),
                "calibration": self.manifest.get("calibration", {})}

    # -- per pair --------------------------------------------------------------------------------------
    def _score_pair(self, entry_a: _Entry, entry_b: _Entry, extra: float | None = None) -> float:
        """The cost of one pair: scalar feature arithmetic, one graph call on the batch-1 buffers.
        `extra`: the pair's extra input (its Bhattacharyya cost) for a model that takes one."""
        with self._lock:
            bufs, out, bound = self._single
            if extra is None:
                self._extractor.pair_into(entry_a.summary, entry_b.summary, bufs[-1][0])
            else:
                self._extractor.pair_into(entry_a.summary, entry_b.summary, self._single_features)
                bufs[-1][0, -1] = extra
            if self.sequence:
                bufs[0][0] = entry_a.tail
                bufs[1][0] = entry_b.head
            self._cost.run(bound)
            cost = float(out[0])
        return cost if math.isfinite(cost) else INVALID_COST

    def _score(self, entries_a: Sequence[_Entry], entry_b: _Entry, extra: np.ndarray | None = None) -> np.ndarray:
        """Costs of `entries_a[i] -> entry_b` in one graph call (float64, non-finite -> 1e6); `extra` as in
        `_score_pair`, one per pair."""
        k = len(entries_a)
        features = self._extractor.batch_from_summaries([e.summary for e in entries_a], entry_b.summary)
        with self._lock:
            bufs, out, binding = self._cost.buffers(_bucket(k))
            if self.sequence:
                emb_a, emb_b, feat = bufs
                np.stack([e.tail for e in entries_a], out=emb_a[:k])
                emb_b[:k] = entry_b.head
            else:
                feat = bufs[0]
            if extra is None:
                feat[:k] = features
            else:
                feat[:k, :-1] = features
                feat[:k, -1] = extra
            self._cost.run(binding)
            costs = out[:k].copy()  # the output buffer is float64 and reused by the next call
        if not math.isfinite(_add_reduce(costs)):  # one reduction instead of isfinite + all
            costs[~np.isfinite(costs)] = INVALID_COST
        return costs

    def compute_cost(self, track1: Mapping[str, Any], track2: Mapping[str, Any], TIME_WIN: float,
                     param: Mapping[str, Any] | None = None) -> float:
        """Cost of linking `track1 -> track2` (earlier -> later); 1e6 when the gap is outside [0, TIME_WIN]."""
        gap = _document_gap(track1, track2)
        if gap is not None and not 0.0 <= gap <= TIME_WIN:
            return INVALID_COST
        a = self._cache.get(track1)
        b = self._cache.get(track2)
        if gap is None and not 0.0 <= b.t_first - a.t_last <= TIME_WIN:
            return INVALID_COST
        if self._cone is None:
            return self._score_pair(a, b)
        return self._score_pair(a, b, pair_cost(a.bhat, b.bhat, b.t_first - a.t_last if gap is None else gap,
                                                self._cone))

    def compute_costs(self, tracks1: Sequence[Mapping[str, Any]], track2: Mapping[str, Any], TIME_WIN: float,
                      param: Mapping[str, Any] | None = None) -> np.ndarray:
        """Costs of many earlier fragments against one new one, in one graph call.

        Returns (K,) float64, elementwise equal to `compute_cost` up to feature rounding (~1e-14).
        """
        k = len(tracks1)
        live, gaps, b, entries = self._cache.candidates(tracks1, track2, TIME_WIN) if k else ([], [], None, [])
        extra = None
        if self._cone is not None and live:
            extra = batch_costs([e.bhat for e in entries], b.bhat, gaps, self._cone)
        if len(live) == k and k:
            return self._score(entries, b, extra)
        out = np.full(k, INVALID_COST)
        if live:
            out[live] = self._score(entries, b, extra)
        return out


def _feature_schema(where: str, manifest: Mapping[str, Any]) -> tuple[str, list[str]]:
    """(schema, feature names) after checking that this runtime computes them exactly as at export."""
    schema = manifest.get("feature_schema")
    inputs = manifest.get("inputs")
    names = inputs.get("feature_names") if isinstance(inputs, dict) else None
    if not isinstance(names, list) or not names or any(n not in FEATURE_NAMES for n in names):
        raise SchemaError(f"{where}: inputs.feature_names must be a non-empty list of known feature names")
    try:
        expected = schema_hash(schema, names)
    except (KeyError, ValueError, TypeError) as exc:
        raise SchemaError(f"{where}: feature schema {schema!r} is not computed by this runtime ({exc})") from None
    fields = inputs.get("document_fields")
    if fields is not None and list(fields) != list(INPUT_FIELDS[schema]):
        raise SchemaError(f"{where}: inputs.document_fields {fields!r} differ from what schema {schema!r} reads "
                          f"in this runtime ({list(INPUT_FIELDS[schema])!r})")
    if manifest.get("schema_hash") != expected:
        raise SchemaError(f"{where}: feature schema {schema!r} hash {str(manifest.get('schema_hash'))[:16]!r}... "
                          f"differs from this runtime's {expected[:16]!r}...; the feature code or schema changed "
                          "since export")
    return schema, names


def _extra_inputs(where: str, manifest: Mapping[str, Any]) -> tuple[float, float, float, float] | None:
    """The cone parameters (cx, mx, cy, my) of the "bhattacharyya_cost" input when the manifest lists it, else
    None.

    Raises SchemaError for any other extra input, a transform other than log(x + eps) with the eps the
    graph folds in, or cone parameters the Bhattacharyya cost refuses.
    """
    extra = manifest["inputs"].get("extra_inputs") if isinstance(manifest.get("inputs"), dict) else None
    if extra is None:
        return None
    if not isinstance(extra, list) or len(extra) != 1 or not isinstance(extra[0], dict) \
            or extra[0].get("name") != "bhattacharyya_cost":
        raise SchemaError(f"{where}: inputs.extra_inputs {extra!r:.120} is not served by this runtime (it computes "
                          "one: [{'name': 'bhattacharyya_cost', ...}])")
    spec = extra[0]
    cone = spec.get("cone")
    if spec.get("transform") != "log" or not isinstance(cone, dict) or set(cone) != {"cx", "mx", "cy", "my"}:
        raise SchemaError(f"{where}: inputs.extra_inputs bhattacharyya_cost needs transform 'log' and cone "
                          f"parameters cx, mx, cy, my; got {spec!r:.160}")
    try:
        values = cone_parameters(cone)
    except ConfigError as exc:
        raise SchemaError(f"{where}: inputs.extra_inputs bhattacharyya_cost: {exc}") from None
    return values


def _open_graphs(where: str, manifest: Mapping[str, Any], blobs: Mapping[str, bytes]) -> dict:
    """Role -> session for the graphs the manifest names: "model", or "encoder" and "head"."""
    graphs = manifest.get("graphs")
    if not isinstance(graphs, dict) or set(graphs) not in ({"model"}, {"encoder", "head"}):
        raise ManifestError(f"{where}: 'graphs' must name either 'model' or 'encoder' and 'head', got "
                            f"{sorted(graphs) if isinstance(graphs, dict) else graphs!r}")
    sessions = {}
    for role, g in graphs.items():
        file = g.get("file") if isinstance(g, dict) else None
        if not isinstance(file, str) or file not in blobs:
            raise ManifestError(f"{where}: graph {role!r} file {file!r} is not among the checksummed files")
        inspect_model(blobs[file], f"{where}/{file}")
        try:
            sessions[role] = create_session(blobs[file])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise UnsupportedGraphError(f"{where}/{file}: onnxruntime cannot load it ({exc})") from None
    return sessions


def _signature(where: str, role: str, declared: Mapping[str, Any], session: ort.InferenceSession,
               inputs: Mapping[str, tuple], output_name: str) -> dict[str, tuple[str, str, tuple]]:
    """Check a session against the manifest and the runtime's graph contract.

    `inputs` maps each expected input name, in order, to (dtype or None for any float type, shape after N).
    The output must be `output_name` with shape (N,) or (N, E). Returns name -> (name, dtype, shape after N).
    """
    got_in, got_out = session.get_inputs(), session.get_outputs()
    if [t.name for t in got_in] != list(inputs) or [t.name for t in got_out] != [output_name]:
        raise SignatureMismatchError(f"{where}: {role} graph has inputs {[t.name for t in got_in]} and outputs "
                                     f"{[t.name for t in got_out]}, expected {list(inputs)} -> [{output_name!r}]")
    listed = {}
    for key in ("inputs", "outputs"):
        entries = declared.get(key, [])
        if not isinstance(entries, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str)
                                                    and isinstance(t.get("dtype"), str)
                                                    and isinstance(t.get("shape"), list) for t in entries):
            raise ManifestError(f"{where}: graphs.{role}.{key} must be a list of {{name, dtype, shape}} objects")
        listed.update((t["name"], t) for t in entries)
    out = {}
    for t in list(got_in) + list(got_out):
        want = listed.get(t.name)
        if want is None:
            raise SignatureMismatchError(f"{where}: {role} graph tensor {t.name!r} is not in the manifest")
        dtype = want.get("dtype")
        if _ORT_TYPES.get(dtype) != t.type:
            raise SignatureMismatchError(f"{where}: {role} graph tensor {t.name!r} is {t.type}, the manifest says {dtype!r}")
        shape = want["shape"]
        if len(shape) != len(t.shape) or list(t.shape[1:]) != shape[1:] or not isinstance(t.shape[0], str):
            raise SignatureMismatchError(f"{where}: {role} graph tensor {t.name!r} has shape {t.shape}, the manifest "
                                         f"says {shape}")
        out[t.name] = (t.name, dtype, tuple(shape[1:]))
    for name, (dtype, tail) in inputs.items():
        if (dtype is not None and out[name][1] != dtype) or out[name][2] != tuple(tail):
            raise SignatureMismatchError(f"{where}: {role} input {name!r} is {out[name][1]} (N, {out[name][2]}), this "
                                         f"runtime feeds {dtype or 'float'} (N, {tuple(tail)})")
    rank = 1 if output_name == "embedding" else 0  # (N, E) embeddings, (N,) costs
    if len(out[output_name][2]) != rank:
        raise SignatureMismatchError(f"{where}: {role} output {output_name!r} has shape (N, {out[output_name][2]}), "
                                     f"expected rank {rank + 1}")
    return out


def _cache_size(config: Mapping[str, Any]) -> int:
    size = config.get("cache_size", 4096)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"cost_function.cache_size must be a positive integer, got {size!r:.40}")
    return size


@CostFunctionFactory.register("onnx", *MODEL_KINDS, keys=("artifact", "cache_size"))
def _build_from_config(config: Mapping[str, Any], base_dir: str | None = None) -> OnnxCostFunction:
    """`{"type": "onnx", "artifact": DIR}`, or a model kind as shorthand for `artifacts/<kind>`."""
    kind = str(config["type"]).lower()
    artifact = config.get("artifact")
    if artifact is None:
        if kind == "onnx":
            raise ConfigError("cost_function.artifact is required for type 'onnx' (the exported artifact folder)")
        artifact = os.path.join("artifacts", kind)
    if not isinstance(artifact, (str, os.PathLike)):
        raise ConfigError(f"cost_function.artifact must be a path, got {type(artifact).__name__}")
    fn = OnnxCostFunction(resolve_artifact(artifact, base_dir), cache_size=_cache_size(config))
    if kind != "onnx" and fn.kind != kind:
        raise ConfigError(f"cost_function.type {kind!r} but the artifact at {fn.artifact_dir} is a {fn.kind!r} model")
    return fn
