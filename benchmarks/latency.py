"""Latency, footprint and end-to-end speed of every stitch cost, beside the public implementations' figures.

What `make bench` runs. For the Bhattacharyya baseline and each exported artifact present, on the
stitcher's real candidate pairs (simulated scenarios ii and i, fed through `prepare_fragments`,
candidates of the same direction with 0 <= gap <= TIME_WIN):

- warm single-pair `compute_cost` (per-fragment caches filled): median, p90, p99;
- cold single-pair `compute_cost`: the later fragment is new to the cost (a fresh `_id`), which is
  the stitcher's first call for a new arrival; and both fragments new (a fresh cost function);
- `compute_costs` per pair with 1, 8, 32 and 128 candidates per call;
- one end-to-end pp_lite stitch of scenario ii per cost (seconds, cost pairs per second);
- in a fresh process: `import runtime` time, construction time of every cost, peak and current RSS
  (VmHWM / VmRSS from /proc/self/status) with every artifact loaded and used;
- installed size of the base dependencies (numpy, onnxruntime and what they pull in) against the
  training extra's (torch, scikit-learn, ...), from the installed distributions' file lists.

Writes one table to stdout, benchmarks/results/latency.json and latency.md (with the method, the
reference figures and the speed-up ratios).

    python benchmarks/latency.py                 # full run (a few minutes on a loaded 2-core box)
    python benchmarks/latency.py --quick         # fewer pairs and repetitions, no end-to-end stitch
    python benchmarks/latency.py --artifacts DIR --check   # exit 1 when a target is missed
"""
from __future__ import annotations

import datetime
import gc
import importlib.metadata as metadata
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import click
import numpy as np
import onnxruntime as ort

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, REPO)

import pp_lite  # noqa: E402
from benchmarks.gate import PARAM, ReferenceWorkload, load_costs, tiny_mlp_onnx  # noqa: E402
from benchmarks.pairs import TIME_WIN, Query, candidate_groups, renamed, sample_pairs, stitcher_queries  # noqa: E402
from runtime.bhattacharyya import BhattacharyyaCostFunction  # noqa: E402
from runtime.cost import StitchCostFunction  # noqa: E402
from runtime.feed import prepare_fragments  # noqa: E402
from runtime.files import atomic_write_text  # noqa: E402
from runtime.onnx_cost import OnnxCostFunction, create_session  # noqa: E402

DEFAULT_ARTIFACTS = os.path.join(REPO, "artifacts")
RESULTS = os.path.join(REPO, "benchmarks", "results")
BATCH_SIZES = (1, 8, 32, 128)
SCENARIOS = (("ii", 7), ("i", 7))
PARAMETER_FILES = {"bhattacharyya": "parameters_Bhat.json", "lr": "parameters_LR.json", "mlp": "parameters_MLP.json",
                   "siamese": "parameters_SNN.json", "tcn": "parameters_TCN.json",
                   "transformer": "parameters_Transformer.json"}
LABELS = {"bhattacharyya": "Bhattacharyya", "lr": "LR", "mlp": "MLP", "siamese": "Siamese BiLSTM", "tcn": "TCN",
          "transformer": "Transformer"}

# The public learned-cost implementations, per pair, one thread (median us, p99 us).
REFERENCE_PAIR_US = {"bhattacharyya": (412.0, 621.0), "lr": (911.0, 1200.0), "mlp": (493.0, 764.0),
                     "tcn": (2100.0, 3100.0), "transformer": (2500.0, 6100.0), "siamese": (4600.0, 15000.0)}
REFERENCE_PROCESS = {"import_construct_s": (1.0, 1.4), "peak_rss_mb": (184.0, 234.0), "dependencies_mb": (400.0, 790.0)}
# onnxruntime's floor for one tiny MLP call (`session.run` with a feed dict) on the reference machine.
REFERENCE_ORT_FLOOR_US = 9.0

# Targets (issue 8). Warm single-pair medians by cost family, then the rest.
WARM_TARGET_US = {"bhattacharyya": 40.0, "lr": 30.0, "mlp": 30.0, "siamese": 40.0, "tcn": 40.0, "transformer": 40.0}
P99_TARGET_US = 200.0
BATCH32_TARGET_US = 3.0
COLD_TARGET_US = 300.0
RSS_TARGET_MB = 150.0
IMPORT_TARGET_S = 0.3
SPEEDUP_TARGET = 10.0


@dataclass(frozen=True)
class Plan:
    """How much to measure."""

    pairs_per_scenario: int = 1500
    warm_rounds: int = 4
    cold_pairs: int = 600
    batch_calls: int = 150
    process_runs: int = 5
    end_to_end: bool = True


QUICK = Plan(pairs_per_scenario=150, warm_rounds=2, cold_pairs=60, batch_calls=12, process_runs=1, end_to_end=False)


# ------------------------------------------------------------------------------------------------------
# Timing.

def _stats_us(ns: Sequence[float]) -> dict:
    us = np.asarray(ns, dtype=np.float64) / 1e3
    return {"median_us": float(np.median(us)), "p90_us": float(np.percentile(us, 90)),
            "p99_us": float(np.percentile(us, 99)), "mean_us": float(us.mean()), "samples": int(us.size)}


def time_calls(call: Callable[[Any], Any], items: Sequence[Any], rounds: int = 1, warmup: bool = True,
               timer: Callable[[], int] = time.perf_counter_ns) -> list[int]:
    """ns of each `call(item)`, timed on its own, over `rounds` passes through `items` (after one untimed pass).

    `timer` is wall time by default; `time.thread_time_ns` gives the CPU time of this thread only,
    which leaves out the time other processes held the core (it costs ~0.7 us per read here).
    """
    if warmup:
        for item in items:
            call(item)
    out = []
    for _ in range(rounds):
        for item in items:
            start = timer()
            call(item)
            out.append(timer() - start)
    return out


def warm_single(fn: StitchCostFunction, pairs: Sequence[tuple], rounds: int,
                timer: Callable[[], int] = time.perf_counter_ns) -> dict:
    return _stats_us(time_calls(lambda p: fn.compute_cost(p[0], p[1], TIME_WIN, PARAM), pairs, rounds, timer=timer))


def cold_single(fn: StitchCostFunction, pairs: Sequence[tuple], tag: str, both: bool) -> dict:
    """First calls on fragments the cost has not seen: the later one (or both) under a fresh `_id`.

    The renamed copies are made before timing; what is timed is validation, the per-fragment
    summary (fits, features, encoder call) and the pair itself.
    """
    fresh = [((renamed(a, tag) if both else a), renamed(b, tag)) for a, b in pairs]
    if not both:
        for a, b in pairs:  # the earlier fragments are warm, as in the stitcher
            fn.compute_cost(a, b, TIME_WIN, PARAM)
    return _stats_us(time_calls(lambda p: fn.compute_cost(p[0], p[1], TIME_WIN, PARAM), fresh, warmup=False))


def batched(fn: StitchCostFunction, groups: Sequence[tuple], rounds: int) -> dict:
    """Per pair and per call of `compute_costs` over `groups` of equal size."""
    size = len(groups[0][0])
    ns = time_calls(lambda g: fn.compute_costs(g[0], g[1], TIME_WIN, PARAM), groups, rounds)
    per_call = _stats_us(ns)
    per_pair = _stats_us([t / size for t in ns])
    return {"candidates": size, "per_pair": per_pair, "per_call": per_call}


class MachineSpeed:
    """Fixed micro-workloads, timed between the measurements, so runs on different machines (or under
    different load) can be compared; the onnxruntime one matches the reference machine's published floor."""

    def __init__(self):
        array = np.random.default_rng(0).random(25)
        reference = ReferenceWorkload()
        session = create_session(tiny_mlp_onnx())
        feed = {"features": np.zeros((1, 47), dtype=np.float32)}
        self.cases = {
            "python_sum_range_100_us": lambda _: sum(range(100)),
            "numpy_add_25_us": lambda _: array + 1.0,
            "ort_tiny_mlp_run_us": lambda _: session.run(None, feed),
            "ort_tiny_mlp_iobinding_us": lambda _: reference.session.run_with_iobinding(reference.binding),
            "gate_reference_workload_us": lambda _: reference(),
        }
        self.samples: list[dict] = []
        self.loads: list[float] = []

    def sample(self, calls: int = 400) -> None:
        self.samples.append({name: statistics.median(time_calls(call, range(calls))) / 1e3
                             for name, call in self.cases.items()})
        if hasattr(os, "getloadavg"):
            self.loads.append(os.getloadavg()[0])

    def summary(self) -> dict:
        """Median of every workload over the samples, the samples' count and the median 1-minute load average."""
        out: dict[str, Any] = {name: statistics.median(s[name] for s in self.samples) for name in self.cases}
        out["samples"] = len(self.samples)
        out["load_average_1min"] = statistics.median(self.loads) if self.loads else None
        out["speed_factor_vs_reference"] = out["ort_tiny_mlp_run_us"] / REFERENCE_ORT_FLOOR_US
        return out


# ------------------------------------------------------------------------------------------------------
# End to end, process footprint, installed size.

def _fresh_cost(name: str, artifacts_dir: str) -> StitchCostFunction:
    if name == "bhattacharyya":
        return BhattacharyyaCostFunction()
    return OnnxCostFunction(os.path.join(artifacts_dir, name))


def end_to_end(name: str, artifacts_dir: str, raw_docs: Sequence[Mapping[str, Any]]) -> dict:
    """One online pp_lite stitch of `raw_docs` with a freshly loaded cost (cold caches, as in production)."""
    params = pp_lite.load_parameters(os.path.join(REPO, PARAMETER_FILES[name]))
    fn = _fresh_cost(name, artifacts_dir)
    _, summary = pp_lite.run(raw_docs, params, cost_fn=fn, name=f"bench-{name}")
    stitch_s = summary["timings"]["stitch_s"]
    return {"fragments": summary["fragments_stitched"], "trajectories": summary["trajectories_out"],
            "cost_pairs": summary["cost_pairs"], "cost_calls": summary["cost_batches"], "edges": summary["edges"],
            "cost_s": summary["cost_seconds"], "stitch_s": stitch_s, "total_s": summary["timings"]["total_s"],
            "cost_pairs_per_s": summary["cost_pairs_per_second"],
            "fragments_per_s": summary["fragments_stitched"] / stitch_s if stitch_s > 0 else None}


# Run in a fresh interpreter (python -c). The imports are timed in the order `runtime` makes them, so
# its total is `import runtime` and the parts show what numpy and onnxruntime cost by themselves.
_PROBE = r"""
import sys, time
t0 = time.perf_counter()
import numpy
t1 = time.perf_counter()
import onnxruntime
t2 = time.perf_counter()
import runtime
t3 = time.perf_counter()
import json
with open(sys.argv[1], encoding="utf-8") as fh:
    spec = json.load(fh)
docs = spec["docs"]
queries = [(docs[later], [docs[i] for i in candidates]) for later, candidates in spec["queries"]]
t4 = time.perf_counter()
costs = [runtime.BhattacharyyaCostFunction()] + [runtime.OnnxCostFunction(p) for p in spec["artifacts"]]
t5 = time.perf_counter()
for fn in costs:
    for later, candidates in queries:
        fn.compute_costs(candidates, later, spec["time_win"])
        for a in candidates:
            fn.compute_cost(a, later, spec["time_win"])
t6 = time.perf_counter()
status = {}
with open("/proc/self/status", encoding="ascii") as fh:
    for line in fh:
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            status[key] = int(value.split()[0]) / 1024.0
print(json.dumps({"import_s": t3 - t0, "import_numpy_s": t1 - t0, "import_onnxruntime_s": t2 - t1,
                  "import_runtime_own_s": t3 - t2, "construct_s": t5 - t4, "score_s": t6 - t5, "costs": len(costs),
                  "modules": sorted({m.split(".")[0] for m in sys.modules} & {"torch", "sklearn", "scipy", "pandas",
                                                                             "training", "export", "onnx"}),
                  "vm_hwm_mb": status.get("VmHWM"), "vm_rss_mb": status.get("VmRSS")}))
"""

_BASELINE_PROBE = r"""
import json
status = {}
with open("/proc/self/status", encoding="ascii") as fh:
    for line in fh:
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            status[key] = int(value.split()[0]) / 1024.0
print(json.dumps(status))
"""

_PROBE_KEYS = ("import_s", "import_numpy_s", "import_onnxruntime_s", "import_runtime_own_s", "construct_s", "score_s",
               "vm_hwm_mb", "vm_rss_mb")


def _jsonable(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else float(value)


def process_footprint(artifact_dirs: Sequence[str], queries: Sequence[Query], runs: int) -> dict:
    """Median over `runs` fresh interpreters of the import and construction times, and their RSS.

    Each process scores `queries` (single and batched) with every cost, so the RSS includes the
    per-fragment caches and onnxruntime's buffers, not just the loaded graphs.
    """
    docs: list = []
    index: dict[int, int] = {}

    def ref(doc) -> int:
        if id(doc) not in index:
            index[id(doc)] = len(docs)
            docs.append(doc)
        return index[id(doc)]

    spec = {"artifacts": list(artifact_dirs), "time_win": TIME_WIN,
            "queries": [(ref(q.later), [ref(a) for a in q.candidates]) for q in queries], "docs": docs}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "probe.json")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(spec, fh, default=_jsonable)
        samples, walls = [], []
        for _ in range(runs):
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", _PROBE, path], capture_output=True, text=True, cwd=REPO,
                                  check=False)
            walls.append(time.perf_counter() - start)
            if done.returncode != 0:
                raise RuntimeError(f"process probe failed: {done.stderr.strip()[-400:]}")
            samples.append(json.loads(done.stdout.strip().splitlines()[-1]))
        bare = subprocess.run([sys.executable, "-c", _BASELINE_PROBE], capture_output=True, text=True, check=True)
    out: dict[str, Any] = {key: statistics.median(s[key] for s in samples) for key in _PROBE_KEYS}
    out["import_construct_s"] = statistics.median(s["import_s"] + s["construct_s"] for s in samples)
    out["process_wall_s"] = statistics.median(walls)
    out["costs_loaded"] = samples[0]["costs"]
    out["fragments_scored"] = len(docs)
    out["training_modules_imported"] = samples[0]["modules"]
    out["bare_python_hwm_mb"] = json.loads(bare.stdout)["VmHWM"]
    out["runs"] = runs
    return out


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(dist_name: str, extra: str | None = None) -> list[str]:
    """Names a distribution requires (for `extra`, only that extra's), markers evaluated for this interpreter."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pragma: no cover - packaging ships with pip's environments
        Requirement = None
    try:
        lines = metadata.requires(dist_name) or []
    except metadata.PackageNotFoundError:
        return []
    names = []
    for line in lines:
        if Requirement is not None:
            req = Requirement(line)
            env = {"extra": extra or ""}
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            if extra is not None and (req.marker is None or "extra" not in str(req.marker)):
                continue
            names.append(req.name)
        else:
            name, _, marker = line.partition(";")
            wants = f'extra == "{extra}"' in marker if extra else "extra" not in marker
            if wants:
                names.append(re.split(r"[ <>=!~\[(]", name.strip(), maxsplit=1)[0])
    return names


def _closure(roots: Sequence[str]) -> dict[str, metadata.Distribution]:
    """Installed distributions of `roots` and everything they require (without extras)."""
    seen: dict[str, metadata.Distribution] = {}
    stack = list(roots)
    while stack:
        name = _canonical(stack.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[name] = dist
        stack.extend(_requirement_names(dist.metadata["Name"]))
    return seen


def _dist_size(dist: metadata.Distribution) -> int:
    """Bytes of a distribution's installed files (its RECORD), each file counted once."""
    total = 0
    for file in dist.files or ():
        try:
            total += os.stat(dist.locate_file(file)).st_size
        except OSError:
            pass
    return total


def dependency_sizes(project: str = "i24-stitch-costs") -> dict:
    """MB installed for the base dependencies vs what the `train` extra adds on top of them."""
    base_roots = _requirement_names(project) or ["numpy", "onnxruntime"]
    train_roots = _requirement_names(project, "train") or ["torch", "scikit-learn"]
    base = _closure(base_roots)
    train = {k: v for k, v in _closure(train_roots).items() if k not in base}

    def table(dists):
        sizes = {dist.metadata["Name"]: _dist_size(dist) / 2**20 for dist in dists.values()}
        return {"total_mb": sum(sizes.values()), "packages": dict(sorted(sizes.items(), key=lambda kv: -kv[1]))}

    return {"base": dict(table(base), roots=base_roots), "train_extra": dict(table(train), roots=train_roots)}


# ------------------------------------------------------------------------------------------------------
# The whole run.

def time_cost(fn: StitchCostFunction, pairs: Sequence[tuple], cold_pairs: Sequence[tuple],
              groups: Mapping[int, Sequence[tuple]], plan: Plan) -> dict:
    """Every per-pair measurement of one cost: warm (wall and thread CPU), cold, and batched."""
    return {
        "warm": warm_single(fn, pairs, plan.warm_rounds),
        "warm_cpu": warm_single(fn, pairs, plan.warm_rounds, timer=time.thread_time_ns),
        "cold_new_later": cold_single(fn, cold_pairs, "cold-later", both=False),
        "cold_both_new": cold_single(fn, cold_pairs, "cold-both", both=True),
        "batch": {str(size): batched(fn, g, max(1, plan.warm_rounds // 2)) for size, g in groups.items()},
    }


def run(artifacts_dir: str, plan: Plan, say: Callable[[str], None] = print,
        scenarios: Sequence[tuple[str, int]] = SCENARIOS, duration: float | None = None) -> dict:
    """Measure everything; returns the summary that latency.json holds.

    `scenarios` are (preset, seed) pairs whose candidate pairs are timed; the first one is also
    stitched end to end. `duration` shortens every scenario (None: the presets' own).
    """
    from training.simulate import simulate

    t_start = time.perf_counter()
    costs = load_costs(artifacts_dir, say)
    scenario_docs, queries, pairs = {}, [], []
    first_raw = None
    for preset, seed in scenarios:
        say(f"simulating scenario {preset} (seed {seed}) ...")
        _, raw = simulate(preset, seed, duration)
        first_raw = raw if first_raw is None else first_raw
        docs, _ = prepare_fragments(raw)
        q = stitcher_queries(docs, TIME_WIN)
        scenario_docs[preset] = docs
        queries.extend(q)
        pairs.extend(sample_pairs(q, plan.pairs_per_scenario, seed))
    rng = np.random.default_rng(0)
    cold_pairs = [pairs[i] for i in np.sort(rng.choice(len(pairs), min(plan.cold_pairs, len(pairs)), replace=False))]
    groups = {size: candidate_groups(queries, size, plan.batch_calls) for size in BATCH_SIZES}
    workload = {"scenarios": {p: {"fragments": len(d)} for p, d in scenario_docs.items()},
                "seeds": {p: s for p, s in scenarios}, "duration_s": duration,
                "queries": len(queries), "candidate_pairs": sum(len(q.candidates) for q in queries),
                "timed_pairs": len(pairs), "cold_pairs": len(cold_pairs),
                "batch_calls": {str(s): len(g) for s, g in groups.items()}, "time_win_s": TIME_WIN}
    gc.collect()
    speed = MachineSpeed()
    results: dict[str, dict] = {}
    for name, fn in costs.items():
        speed.sample()
        say(f"timing {name} ...")
        results[name] = time_cost(fn, pairs, cold_pairs, groups, plan)
    if plan.end_to_end:
        preset, seed = scenarios[0]
        # One untimed stitch first: pp_lite's offline-objective diagnostic imports scipy.optimize lazily
        # (~1 s here, when the training extra is installed), which would otherwise be charged to the first cost.
        say(f"pp_lite warm-up stitch of scenario {preset} ...")
        end_to_end("bhattacharyya", artifacts_dir, first_raw)
        for name in costs:
            say(f"pp_lite stitch of scenario {preset} with {name} ...")
            results[name]["end_to_end"] = dict(end_to_end(name, artifacts_dir, first_raw), scenario=preset, seed=seed)
    speed.sample()
    say("fresh-process import, construction and RSS ...")
    artifact_dirs = [fn.artifact_dir for fn in costs.values() if isinstance(fn, OnnxCostFunction)]
    process = process_footprint(artifact_dirs, queries[:: max(1, len(queries) // 12)], plan.process_runs)
    say("installed sizes ...")
    summary = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "plan": plan.__dict__, "workload": workload, "costs": results,
        "artifacts": {name: fn.artifact_dir for name, fn in costs.items() if isinstance(fn, OnnxCostFunction)},
        "process": process, "dependencies": dependency_sizes(), "machine": _machine(),
        "calibration": speed.summary(), "reference": _reference(),
        "elapsed_s": time.perf_counter() - t_start,
    }
    summary["targets"] = check_targets(summary)
    return summary


def _machine() -> dict:
    return {"python": platform.python_version(), "numpy": np.__version__, "onnxruntime": ort.__version__,
            "cpu": _cpu_model(), "cores": os.cpu_count(), "platform": platform.platform()}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _reference() -> dict:
    return {"per_pair_us": {k: {"median_us": m, "p99_us": p} for k, (m, p) in REFERENCE_PAIR_US.items()},
            "process": REFERENCE_PROCESS, "ort_tiny_mlp_floor_us": REFERENCE_ORT_FLOOR_US}


def check_targets(summary: Mapping[str, Any]) -> list[dict]:
    """Every target as {"target", "value", "limit", "met", "estimate", "met_estimate"}.

    `estimate` is the value scaled to the reference machine's speed by the onnxruntime floor
    (ours / theirs, `speed_factor_vs_reference`): an estimate, not a measurement, for time targets only.
    """
    out = []
    factor = summary["calibration"]["speed_factor_vs_reference"]

    def add(target: str, value: float | None, limit: float, kind: str = "time"):
        def met(v):
            return None if v is None else (v >= limit if kind == "speed-up" else v <= limit)

        if value is None or kind == "size":
            estimate = None
        else:
            estimate = value * factor if kind == "speed-up" else value / factor
        out.append({"target": target, "value": value, "limit": limit, "met": met(value), "estimate": estimate,
                    "met_estimate": met(estimate)})

    for name, row in summary["costs"].items():
        warm = row["warm"]
        add(f"{name}: warm single pair median (us)", warm["median_us"], WARM_TARGET_US[name])
        add(f"{name}: warm single pair p99 (us)", warm["p99_us"], P99_TARGET_US)
        add(f"{name}: warm single pair p99, thread CPU time (us)", row["warm_cpu"]["p99_us"], P99_TARGET_US)
        add(f"{name}: compute_costs @32 per pair (us)", row["batch"]["32"]["per_pair"]["median_us"], BATCH32_TARGET_US)
        add(f"{name}: cold new-fragment first call median (us)", row["cold_new_later"]["median_us"], COLD_TARGET_US)
        if name != "bhattacharyya":
            add(f"{name}: speed-up per pair vs reference median (x)",
                REFERENCE_PAIR_US[name][0] / warm["median_us"], SPEEDUP_TARGET, kind="speed-up")
    add("process peak RSS, all artifacts loaded (MB)", summary["process"]["vm_hwm_mb"], RSS_TARGET_MB, kind="size")
    add("import runtime (s)", summary["process"]["import_s"], IMPORT_TARGET_S)
    return out


# ------------------------------------------------------------------------------------------------------
# Reports.

def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def format_table(summary: Mapping[str, Any]) -> str:
    """The stdout table: one row per cost."""
    head = (f"{'cost':<15} {'warm med':>9} {'p90':>8} {'p99':>8} {'cpu p99':>8} {'cold med':>9} {'cold p99':>9} "
            + " ".join(f"{'@' + str(s):>7}" for s in BATCH_SIZES) + f" {'ref med':>8} {'speed-up':>8} {'e2e s':>7}")
    lines = ["per pair, microseconds (batch columns: compute_costs per pair; cpu p99: thread CPU time, without "
             "preemption); speed-up = reference median / warm median",
             head, "-" * len(head)]
    for name, row in summary["costs"].items():
        warm, cold = row["warm"], row["cold_new_later"]
        ref = REFERENCE_PAIR_US[name][0]
        e2e = row.get("end_to_end", {}).get("stitch_s")
        lines.append(f"{name:<15} {warm['median_us']:>9.1f} {warm['p90_us']:>8.1f} {warm['p99_us']:>8.1f} "
                     f"{row['warm_cpu']['p99_us']:>8.1f} "
                     f"{cold['median_us']:>9.1f} {cold['p99_us']:>9.1f} "
                     + " ".join(f"{row['batch'][str(s)]['per_pair']['median_us']:>7.2f}" for s in BATCH_SIZES)
                     + f" {ref:>8.0f} {ref / warm['median_us']:>7.0f}x {_fmt(e2e, 2):>7}")
    p, d = summary["process"], summary["dependencies"]
    cal = summary["calibration"]
    lines += ["",
              f"fresh process: import runtime {p['import_s']:.3f} s (numpy {p['import_numpy_s']:.3f}, onnxruntime "
              f"{p['import_onnxruntime_s']:.3f}, runtime itself {p['import_runtime_own_s']:.3f}), "
              f"construct {p['costs_loaded']} costs "
              f"{p['construct_s']:.3f} s, peak RSS {p['vm_hwm_mb']:.0f} MB (RSS {p['vm_rss_mb']:.0f} MB; bare python "
              f"{p['bare_python_hwm_mb']:.0f} MB); training modules imported: "
              f"{p['training_modules_imported'] or 'none'}",
              f"installed: base {d['base']['total_mb']:.0f} MB ({', '.join(d['base']['packages'])}), "
              f"train extra adds {d['train_extra']['total_mb']:.0f} MB",
              f"machine: {summary['machine']['cpu']}, {summary['machine']['cores']} cores, load average "
              f"{cal['load_average_1min']}; sum(range(100)) {cal['python_sum_range_100_us']:.2f} us, numpy add on 25 "
              f"floats {cal['numpy_add_25_us']:.2f} us, onnxruntime tiny MLP run {cal['ort_tiny_mlp_run_us']:.1f} us "
              f"(reference machine ~{REFERENCE_ORT_FLOOR_US:g} us)"]
    missed = [t for t in summary["targets"] if t["met"] is False]
    lines.append(f"targets: {sum(t['met'] is True for t in summary['targets'])} met, {len(missed)} missed here "
                 f"(at reference speed, est. x{cal['speed_factor_vs_reference']:.1f}: "
                 f"{sum(t['met_estimate'] is False for t in summary['targets'])} missed)"
                 + "".join(f"\n  MISSED {t['target']}: {_fmt(t['value'], 2)} (limit {t['limit']:g}; est. at "
                           f"reference speed {_fmt(t['estimate'], 2)})" for t in missed))
    return "\n".join(lines)


def format_markdown(summary: Mapping[str, Any]) -> str:
    """latency.md: method, tables with the reference figures and speed-ups, targets."""
    costs, p, d, cal, w = (summary["costs"], summary["process"], summary["dependencies"], summary["calibration"],
                           summary["workload"])
    factor = cal["speed_factor_vs_reference"]
    scenarios = ", ".join(f"{k} (seed {w['seeds'][k]}, {v['fragments']} fragments)" for k, v in w["scenarios"].items())
    first = next(iter(w["scenarios"]))
    length = "" if w["duration_s"] is None else f", shortened to {w['duration_s']:g} s"
    out = ["# Stitch-cost latency", "",
           f"Generated by `python benchmarks/latency.py` ({summary['created']}); raw numbers in `latency.json`.", "",
           "## Method", "",
           f"- Pairs are the stitcher's real queries: scenarios {scenarios} from "
           f"`training.simulate`{length}, fed through `runtime.feed.prepare_fragments` as pp_lite does; for every "
           f"fragment B, each earlier fragment A of the same direction with 0 <= gap <= {w['time_win_s']:g} s "
           f"({w['candidate_pairs']} candidate pairs in {w['queries']} queries). {w['timed_pairs']} pairs are timed "
           "(a fixed-seed sample).",
           "- Every call is timed on its own with `time.perf_counter_ns` (timer overhead ~0.15 us, not subtracted), "
           "after an untimed warm-up pass, over several passes; we report medians and percentiles, with the "
           "garbage collector left on as in production. On a shared machine the wall-clock tail is mostly other "
           "processes holding the core, so the warm pass is repeated with `time.thread_time_ns` (this thread's CPU "
           "time; ~0.7 us per read included): its p99 is what the cost itself does.",
           "- **warm**: per-fragment caches filled (`compute_cost` on a pair seen before). **cold, new later "
           "fragment**: the later fragment is new to the cost (a fresh `_id` on the same measurements), the earlier "
           "one cached: the stitcher's first call for a new arrival, including validation, the per-fragment "
           f"summary and (sequence models) the encoder call. **cold, both new**: neither is cached ({w['cold_pairs']} "
           "pairs each).",
           "- **batch @k**: `compute_costs` with k candidates of one new fragment (a query's own candidates, "
           "repeated when it has fewer than k); time per call / k. This is how the stitcher calls a cost.",
           f"- **end to end**: `pp_lite.run` (online solver) on scenario {first} with a freshly loaded cost, after "
           "one untimed warm-up stitch (so one-time lazy imports are not charged to the first cost); `cost "
           "pairs/s` counts only time inside the cost calls.",
           "- **process**: a fresh `python -c` imports `runtime` first (timed), constructs Bhattacharyya and every "
           "artifact, scores a sample of queries with each, then reads `VmHWM` (peak RSS) and `VmRSS` from "
           f"`/proc/self/status`; median of {p['runs']} processes.",
           "- **artifacts**: " + (", ".join(f"{k} `{v}`" for k, v in summary["artifacts"].items()) or "none found")
           + ".",
           "- **installed size**: sum of the files in each distribution's RECORD, for the base requirements "
           "(`numpy`, `onnxruntime` and everything they require) and for what the `train` extra adds on top.",
           f"- The reference figures are those published for the public learned-cost implementations (per pair, "
           f"one thread). Our machine: {summary['machine']['cpu']}, {summary['machine']['cores']} cores shared with "
           f"other jobs (load average {cal['load_average_1min']}); onnxruntime's tiny-MLP `session.run` floor is "
           f"{cal['ort_tiny_mlp_run_us']:.1f} us here against ~{REFERENCE_ORT_FLOOR_US:g} us on the reference "
           f"machine ({factor:.1f}x), `sum(range(100))` takes {cal['python_sum_range_100_us']:.2f} us. Speed-ups "
           "below compare our numbers on this machine with theirs on theirs, so they understate ours.", "",
           "## Per pair", "",
           "| cost | warm median us | warm p90 | warm p99 | warm p99, thread CPU | cold, new later: median | p99 "
           "| cold, both new: median | reference median / p99 us | speed-up (warm) | speed-up (cold new later) |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, row in costs.items():
        warm, cold, both = row["warm"], row["cold_new_later"], row["cold_both_new"]
        ref_med, ref_p99 = REFERENCE_PAIR_US[name]
        out.append(f"| {LABELS[name]} | {warm['median_us']:.1f} | {warm['p90_us']:.1f} | {warm['p99_us']:.1f} | "
                   f"{row['warm_cpu']['p99_us']:.1f} | "
                   f"{cold['median_us']:.0f} | {cold['p99_us']:.0f} | {both['median_us']:.0f} | "
                   f"{ref_med:,.0f} / {ref_p99:,.0f} | {ref_med / warm['median_us']:.0f}x | "
                   f"{ref_med / cold['median_us']:.1f}x |")
    out += ["", "## Batch: `compute_costs` per pair (us)", "",
            "| cost | " + " | ".join(f"@{s}" for s in BATCH_SIZES) + " | per call @32 us | speed-up @32 vs reference |",
            "|---|" + "---:|" * (len(BATCH_SIZES) + 2)]
    for name, row in costs.items():
        b = row["batch"]
        out.append(f"| {LABELS[name]} | " + " | ".join(f"{b[str(s)]['per_pair']['median_us']:.2f}" for s in BATCH_SIZES)
                   + f" | {b['32']['per_call']['median_us']:.0f} | "
                     f"{REFERENCE_PAIR_US[name][0] / b['32']['per_pair']['median_us']:.0f}x |")
    if any("end_to_end" in row for row in costs.values()):
        out += ["", f"## End to end: pp_lite online stitch of scenario {first}", "",
                "`stitch s` is the whole online min-cost-flow stitch; `cost s` the part spent inside the cost's "
                "`compute_costs` calls; the rest is the solver (its work grows with the edges, the pairs with "
                "cost <= stitch_thresh) and trajectory assembly.", "",
                "| cost | fragments | cost pairs | edges | stitch s | total s | cost s | cost pairs/s | fragments/s |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, row in costs.items():
            e = row.get("end_to_end")
            if e:
                out.append(f"| {LABELS[name]} | {e['fragments']} | {e['cost_pairs']} | {e['edges']} | "
                           f"{e['stitch_s']:.2f} | "
                           f"{e['total_s']:.2f} | {e['cost_s']:.2f} | {_fmt(e['cost_pairs_per_s'], 0)} | "
                           f"{_fmt(e['fragments_per_s'], 0)} |")
    ref = REFERENCE_PROCESS
    out += ["", "## Process and installation", "",
            "| | ours | reference |", "|---|---:|---:|",
            f"| `import runtime` (numpy {p['import_numpy_s']:.3f} s, onnxruntime {p['import_onnxruntime_s']:.3f} s, "
            f"runtime's own modules {p['import_runtime_own_s']:.3f} s) | {p['import_s']:.3f} s | |",
            f"| import + construct ({p['costs_loaded']} costs) | {p['import_construct_s']:.3f} s | "
            f"{ref['import_construct_s'][0]:g}-{ref['import_construct_s'][1]:g} s |",
            f"| peak RSS, every artifact loaded and used | {p['vm_hwm_mb']:.0f} MB (bare python "
            f"{p['bare_python_hwm_mb']:.0f} MB) | {ref['peak_rss_mb'][0]:.0f}-{ref['peak_rss_mb'][1]:.0f} MB |",
            f"| installed dependencies | {d['base']['total_mb']:.0f} MB | {ref['dependencies_mb'][0]:.0f}-"
            f"{ref['dependencies_mb'][1]:.0f} MB |",
            f"| training extra (not needed to serve) | +{d['train_extra']['total_mb']:.0f} MB | |",
            "", "Base dependencies: " + ", ".join(f"{k} {v:.1f} MB" for k, v in d["base"]["packages"].items()) + ".",
            "Largest in the training extra: " + ", ".join(
                f"{k} {v:.0f} MB" for k, v in list(d["train_extra"]["packages"].items())[:6]) + ".",
            f"Training modules in the serving process: {', '.join(p['training_modules_imported']) or 'none'}.",
            "", "## Targets", "",
            f"Measured here, and (an estimate, not a measurement) scaled to the reference machine's speed by the "
            f"onnxruntime floor ({factor:.1f}x; speed-ups multiplied, times divided, sizes unchanged).", "",
            "| target | measured | limit | met | est. at reference speed | met (est.) |",
            "|---|---:|---:|:---:|---:|:---:|"]
    verdict = {True: "yes", False: "**no**", None: "-"}
    for t in summary["targets"]:
        out.append(f"| {t['target']} | {_fmt(t['value'], 2)} | {t['limit']:g} | {verdict[t['met']]} | "
                   f"{_fmt(t['estimate'], 2)} | {verdict[t['met_estimate']]} |")
    out += ["", "## Machine calibration", "",
            "Medians on this machine of fixed micro-workloads (compare before comparing runs across machines):", ""]
    out += [f"- `{k}`: {v:.2f}" for k, v in cal.items() if k.endswith("_us")]
    out.append(f"- median of {cal['samples']} samples taken between the cost measurements; median load average "
               f"{_fmt(cal['load_average_1min'], 1)} on {summary['machine']['cores']} cores")
    return "\n".join(out) + "\n"


@click.command()
@click.option("--artifacts", default=DEFAULT_ARTIFACTS, show_default=True, type=click.Path(file_okay=False),
              help="Folder with one exported artifact per model kind; missing ones are skipped with a note.")
@click.option("--out", "out_dir", default=RESULTS, show_default=True, type=click.Path(file_okay=False),
              help="Where latency.json and latency.md are written.")
@click.option("--quick", is_flag=True, help="Few pairs and repetitions, one process probe, no end-to-end stitch.")
@click.option("--check", is_flag=True, help="Exit with status 1 when a target is missed.")
def main(artifacts, out_dir, quick, check):
    """Time every stitch cost per pair (warm, cold, batched), end to end and as a process; write the reports."""
    summary = run(artifacts, QUICK if quick else Plan(), say=lambda line: click.echo(line, err=True))
    click.echo(format_table(summary))
    atomic_write_text(os.path.join(out_dir, "latency.json"), json.dumps(summary, indent=2) + "\n")
    atomic_write_text(os.path.join(out_dir, "latency.md"), format_markdown(summary))
    click.echo(f"wrote {os.path.join(out_dir, 'latency.json')} and latency.md")
    if check and any(t["met"] is False for t in summary["targets"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
