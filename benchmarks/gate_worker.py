"""One side of the latency gate: a process that times one revision's costs on command (benchmarks/gate.py).

The gate starts two of these, one for the base revision (A) and one for the checkout (B). Each
imports `runtime` from the root it is given (the base's is an exported copy in a temp folder), so
the base is measured with *this* harness whatever its own benchmark code was. The coordinator asks
for one timed block at a time, alternating between the two processes, so both sides see the same
machine state, block after block.

Protocol, one JSON object per line: the first line on stdin is the set-up
    {"root": ..., "artifacts": ... or null, "workload": path, "costs": [...], "inject": {...},
     "references": bool}
answered by {"ok": true, "loaded": [...], "notes": [...], "runtime": runtime.__file__, ...};
then each {"block": [cost or "ref:python" / "ref:onnxruntime", metric], "n": calls, "start": i}
is answered by {"ns": median nanoseconds per pair}; {"inject": {cost: {"single_us": x, "batch_us": y}}}
wraps costs in a busy-wait (the gate's proofs) and is answered by {"ok": true, "notes": [...]};
{"quit": true} ends it. The set-up's "inject" takes the same form.

This module needs numpy and onnxruntime only, plus the `runtime` it is pointed at. It is also
importable (`benchmarks.gate_worker`) for its reference workloads and the Slowed wrapper.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import onnxruntime as ort

TIME_WIN = 15.0
PARAM = {"stitcher_args": {"cx": 0.2, "mx": 0.1, "cy": 2.0, "my": 0.1}}
BATCH = 32
METRICS = ("single", "batch32")
MODEL_KINDS = ("lr", "mlp", "siamese", "tcn", "transformer")
# Which same-kind reference each cost is compared with when no base can be measured.
REFERENCE_KIND = {"bhattacharyya": "python", **{k: "onnxruntime" for k in MODEL_KINDS}}


# ------------------------------------------------------------------------------------------------------
# The reference workloads (the fallback's yardsticks; `benchmarks/latency.py` uses the combined one).

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _bytes_field(number: int, payload: bytes | str) -> bytes:
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


_FLOAT = 1  # onnx TensorProto.FLOAT


def _tensor(name: str, array: np.ndarray) -> bytes:
    """TensorProto: dims (1), data_type (2), name (8), raw_data (9, little-endian float32)."""
    dims = b"".join(_int_field(1, d) for d in array.shape)
    raw = np.ascontiguousarray(array, dtype="<f4").tobytes()
    return dims + _int_field(2, _FLOAT) + _bytes_field(8, name) + _bytes_field(9, raw)


def _value_info(name: str, dims: Sequence[int | str]) -> bytes:
    """ValueInfoProto name (1), type (2) -> TypeProto.tensor_type (1) -> elem_type (1), shape (2)."""
    shape = b"".join(_bytes_field(1, _bytes_field(2, d) if isinstance(d, str) else _int_field(1, d)) for d in dims)
    tensor_type = _int_field(1, _FLOAT) + _bytes_field(2, shape)
    return _bytes_field(1, name) + _bytes_field(2, _bytes_field(1, tensor_type))


def _node(op: str, inputs: Sequence[str], outputs: Sequence[str]) -> bytes:
    """NodeProto input (1), output (2), op_type (4)."""
    return b"".join(_bytes_field(1, i) for i in inputs) + b"".join(_bytes_field(2, o) for o in outputs) \
        + _bytes_field(4, op)


def tiny_mlp_onnx(n_in: int = 47, hidden: int = 16, seed: int = 0) -> bytes:
    """A serialised ONNX model `cost = (relu(features @ W1 + b1) @ w2 + b2)` of shape (N, n_in) -> (N,).

    Hand-encoded protobuf (ModelProto ir_version 8, opset 17, standard ops only): the size and op mix
    of a small exported MLP cost graph, without needing the onnx package.
    """
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0.0, 0.2, (n_in, hidden))
    b1 = rng.normal(0.0, 0.1, hidden)
    w2 = rng.normal(0.0, 0.2, (hidden,))
    b2 = np.array([3.0])
    nodes = [_node("MatMul", ["features", "w1"], ["h0"]), _node("Add", ["h0", "b1"], ["h1"]),
             _node("Relu", ["h1"], ["h2"]), _node("MatMul", ["h2", "w2"], ["z"]), _node("Add", ["z", "b2"], ["cost"])]
    graph = b"".join(_bytes_field(1, n) for n in nodes) + _bytes_field(2, "reference_mlp")
    for name, value in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2)):
        graph += _bytes_field(5, _tensor(name, value))
    graph += _bytes_field(11, _value_info("features", ["N", n_in])) + _bytes_field(12, _value_info("cost", ["N"]))
    opset = _bytes_field(1, "") + _int_field(2, 17)
    return _int_field(1, 8) + _bytes_field(2, "benchmarks.gate") + _bytes_field(7, graph) + _bytes_field(8, opset)


def hot_path_session(model_bytes: bytes) -> ort.InferenceSession:
    """A session configured like the runtime's (`runtime.onnx_cost.create_session`): one thread, sequential."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(model_bytes, sess_options=so, providers=["CPUExecutionProvider"])


class PythonReference:
    """Pure Python float arithmetic and a small numpy vector: the nature of Bhattacharyya's and the features' work.

    A 25-sample loop of the shape of the single-pair Bhattacharyya distance, then a 47-float feature
    vector built with numpy and copied into a buffer.
    """

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.samples = tuple(tuple(row) for row in rng.normal(0.0, 1.0, (25, 4)).tolist())
        self.values = rng.normal(0.0, 1.0, 47).tolist()
        self.features = np.zeros((1, 47), dtype=np.float32)

    def __call__(self) -> float:
        quad, product = 0.0, 1.0
        for offset, relative, x, y in self.samples:
            dx = 0.5 * offset + 1.5 - x
            dy = 0.25 * offset - 0.5 - y
            ex = 0.1 * relative * relative
            hx = 2.0 + 0.3 * offset * offset
            quad += dx * dx / (ex + hx) + dy * dy / (ex + hx + 1.0)
            product *= 1.0 + ex / hx
        self.features[0] = np.array(self.values, dtype=np.float64)
        return quad + product + float(self.features[0, 0])


class OnnxReference:
    """One IOBinding run of a hand-built 47 -> 16 -> 1 MLP in a hot-path session: the nature of a graph call."""

    def __init__(self, seed: int = 0):
        self.session = hot_path_session(tiny_mlp_onnx(seed=seed))
        self.features = np.random.default_rng(seed).normal(0.0, 1.0, (1, 47)).astype(np.float32)
        self.cost = np.zeros((1,), dtype=np.float32)
        self._values = [ort.OrtValue.ortvalue_from_numpy(self.features), ort.OrtValue.ortvalue_from_numpy(self.cost)]
        self.binding = self.session.io_binding()
        self.binding.bind_ortvalue_input("features", self._values[0])
        self.binding.bind_ortvalue_output("cost", self._values[1])

    def __call__(self) -> float:
        self.session.run_with_iobinding(self.binding)
        return float(self.cost[0])


class ReferenceWorkload:
    """Both references in one call (the benchmarks' machine calibration, `benchmarks/latency.py`)."""

    def __init__(self, seed: int = 0):
        self.python = PythonReference(seed)
        self.onnx = OnnxReference(seed)
        self.session, self.binding = self.onnx.session, self.onnx.binding

    def __call__(self) -> float:
        return self.python() + self.onnx()


# ------------------------------------------------------------------------------------------------------
# Injected slowdowns (the gate's proofs).

class Slowed:
    """A cost wrapped with a busy-wait per pair scored: `single_us` per compute_cost, `batch_us` per batch pair.

    Per pair, not per call, so a batch of 32 waits 32 times as long: a regression in per-pair work.
    """

    def __init__(self, inner: Any, single_us: float, batch_us: float | None = None):
        self.inner = inner
        self.single_ns = int(single_us * 1e3)
        self.batch_ns = int((single_us if batch_us is None else batch_us) * 1e3)
        self.name = f"{getattr(inner, 'name', type(inner).__name__)}+{single_us:g}us"

    @staticmethod
    def _wait(ns: int) -> None:
        until = time.perf_counter_ns() + ns
        while time.perf_counter_ns() < until:
            pass

    def compute_cost(self, track1, track2, TIME_WIN, param=None) -> float:
        self._wait(self.single_ns)
        return self.inner.compute_cost(track1, track2, TIME_WIN, param)

    def compute_costs(self, tracks1, track2, TIME_WIN, param=None) -> np.ndarray:
        self._wait(self.batch_ns * len(tracks1))
        return self.inner.compute_costs(tracks1, track2, TIME_WIN, param)


# ------------------------------------------------------------------------------------------------------
# Timing.

def block_median_ns(call: Callable[[int], Any], n: int, start: int) -> float:
    """Median ns of `call(i)` for i = start .. start + n - 1, each call timed on its own."""
    timer = time.perf_counter_ns
    times = [0] * n
    for k in range(n):
        t0 = timer()
        call(start + k)
        times[k] = timer() - t0
    return float(statistics.median(times))


def load_workload(path: str) -> tuple[list[tuple], list[tuple]]:
    """(pairs, groups) from the coordinator's JSON: {"fragments": [...], "pairs": [[i, j]], "groups": [[[i..], j]]}."""
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    frags = data["fragments"]
    pairs = [(frags[i], frags[j]) for i, j in data["pairs"]]
    groups = [([frags[i] for i in cands], frags[j]) for cands, j in data["groups"]]
    return pairs, groups


class Side:
    """The costs of one revision, warmed, ready to time blocks on command."""

    def __init__(self, setup: Mapping[str, Any]):
        root = os.path.abspath(setup["root"])
        sys.path.insert(0, root)
        for name in [m for m in sys.modules if m == "runtime" or m.startswith("runtime.")]:
            del sys.modules[name]  # never a copy imported before the root was chosen
        import runtime  # noqa: F401  (from `root`)

        self.runtime_file = os.path.abspath(runtime.__file__)
        if not self.runtime_file.startswith(os.path.join(root, "")):
            raise RuntimeError(f"imported runtime from {self.runtime_file}, not from {root}")
        from runtime.bhattacharyya import BhattacharyyaCostFunction

        self.notes: list[str] = []
        self.pairs, self.groups = load_workload(setup["workload"])
        self.costs: dict[str, Any] = {}
        wanted = list(setup.get("costs") or ["bhattacharyya", *MODEL_KINDS])
        artifacts = setup.get("artifacts")
        for name in wanted:
            try:
                if name == "bhattacharyya":
                    self.costs[name] = BhattacharyyaCostFunction()
                elif artifacts and os.path.isdir(os.path.join(artifacts, name)):
                    from runtime.onnx_cost import OnnxCostFunction
                    self.costs[name] = OnnxCostFunction(os.path.join(artifacts, name))
                else:
                    self.notes.append(f"no artifact {name}")
            except Exception as exc:  # an older or broken revision: say why, measure the rest
                self.notes.append(f"{name} not loadable: {type(exc).__name__}: {str(exc)[:160]}")
        self.calls: dict[tuple[str, str], tuple[Callable[[int], Any], float]] = {}
        for name in list(self.costs):
            try:
                self._warm(name)
            except Exception as exc:
                self.notes.append(f"{name} failed on the workload: {type(exc).__name__}: {str(exc)[:160]}")
                del self.costs[name]
        for name, spec in (setup.get("inject") or {}).items():
            self.inject(name, float(spec["single_us"]), float(spec["batch_us"]))
        if setup.get("references"):
            for kind, ref in (("python", PythonReference()), ("onnxruntime", OnnxReference())):
                self.calls[(f"ref:{kind}", "single")] = ((lambda i, ref=ref: ref()), 1.0)
                for _ in range(3):
                    block_median_ns(self.calls[(f"ref:{kind}", "single")][0], 32, 0)

    def inject(self, name: str, single_us: float, batch_us: float) -> None:
        """Wrap cost `name` in a busy-wait of `single_us` per compute_cost and `batch_us` per batch pair."""
        if name not in self.costs or (single_us <= 0 and batch_us <= 0):
            return
        self.costs[name] = Slowed(self.costs[name], single_us, batch_us)
        self._bind(name)
        self.notes.append(f"injected {single_us:.2f} us per single pair, {batch_us:.2f} us per batch pair into {name}")

    def _bind(self, name: str) -> None:
        fn, pairs, groups = self.costs[name], self.pairs, self.groups

        def single(i):
            a, b = pairs[i % len(pairs)]
            return fn.compute_cost(a, b, TIME_WIN, PARAM)

        def batch(i):
            cands, b = groups[i % len(groups)]
            return fn.compute_costs(cands, b, TIME_WIN, PARAM)

        self.calls[(name, "single")] = (single, 1.0)
        if groups:
            self.calls[(name, "batch32")] = (batch, float(BATCH))

    def _warm(self, name: str) -> None:
        """Every pair and group scored once (so every timed call is warm), then a few untimed blocks."""
        fn = self.costs[name]
        for a, b in self.pairs:
            fn.compute_cost(a, b, TIME_WIN, PARAM)
        for cands, b in self.groups:
            fn.compute_costs(cands, b, TIME_WIN, PARAM)
        self._bind(name)

    def block(self, key: tuple[str, str], n: int, start: int) -> float:
        call, per = self.calls[key]
        return block_median_ns(call, n, start) / per


def serve(stdin=None, stdout=None) -> None:
    """Answer the coordinator's set-up line, then one block per request, until quit or end of input."""
    stdin = stdin or sys.stdin
    out = stdout or sys.stdout
    sys.stdout = sys.stderr  # anything else printed must not corrupt the protocol

    def reply(obj: dict) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    line = stdin.readline()
    try:
        side = Side(json.loads(line))
    except Exception as exc:
        reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return
    reply({"ok": True, "loaded": sorted(side.costs), "notes": side.notes, "runtime": side.runtime_file,
           "keys": [list(k) for k in side.calls], "python": sys.version.split()[0]})
    for line in stdin:
        request = json.loads(line)
        if request.get("quit"):
            break
        if "inject" in request:
            for name, spec in request["inject"].items():
                side.inject(name, float(spec["single_us"]), float(spec["batch_us"]))
            reply({"ok": True, "notes": side.notes})
            continue
        key = tuple(request["block"])
        reply({"ns": side.block(key, int(request["n"]), int(request.get("start", 0)))})


if __name__ == "__main__":
    serve()
