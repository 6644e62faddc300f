"""Concurrency: one cost function shared by 8 threads, and pp_lite's two directions in two processes, give
exactly the results of one thread / one sequential run.

(tests/test_onnx_runtime.py runs 4 threads of single-pair calls on an MLP artifact; here 8 threads mix
single and batch calls on both costs, with a cache small enough to evict all the time.)
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from test_reliability import CHILD_ENV, REPO, tiny_lr_artifact  # noqa: E402  (one tiny LR artifact per session)

import pp_lite  # noqa: E402
from runtime.bhattacharyya import BhattacharyyaCostFunction  # noqa: E402
from runtime.feed import prepare_fragments  # noqa: E402
from runtime.onnx_cost import OnnxCostFunction  # noqa: E402

TIME_WIN = 15.0
THREADS = 8
CACHE = 8  # entries: far fewer than the fragments in flight, so every thread evicts what the others use


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    return tiny_lr_artifact(tmp_path_factory.getbasetemp() / "reliability_lr")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Path:
    """A short simulated snow scenario (ii) on disk, both directions."""
    from training.simulate import write_scenario

    folder = tmp_path_factory.mktemp("concurrency")
    write_scenario("ii", 7, folder, duration=20)
    return folder


@pytest.fixture(scope="module")
def queries(scenario):
    """Stitcher questions: every 8th fragment of each direction against the 12 earlier ones of its direction
    that ended last, with gaps from -1 s to 1.5 TIME_WIN (so some are gated out). Each thread asks them all."""
    docs, _ = prepare_fragments(json.loads((scenario / "RAW_ii.json").read_text()))
    out = []
    for direction in (1, -1):
        lane = sorted((d for d in docs if d["direction"] == direction), key=lambda d: d["timestamp"][-1])
        for i, new in enumerate(lane):
            cands = [d for d in lane[:i] if -1.0 <= new["timestamp"][0] - d["timestamp"][-1] <= 1.5 * TIME_WIN][-12:]
            if i % 8 == 7 and cands:
                out.append((cands, new))
    assert len(out) >= 20 and sum(len(c) for c, _ in out) > 200
    return out


def _answers(fn, jobs):
    """Per query: the batch costs and the single-pair costs of the same candidates."""
    return [(fn.compute_costs(cands, new, TIME_WIN), np.array([fn.compute_cost(c, new, TIME_WIN) for c in cands]))
            for cands, new in jobs]


def _threaded(fn, jobs):
    """Every thread answers every query, each in its own seeded order, all starting together."""
    results = [None] * THREADS
    errors = []
    start = threading.Barrier(THREADS)

    def worker(k):
        order = list(range(len(jobs)))
        random.Random(k).shuffle(order)
        try:
            start.wait()
            got = {}
            for i in order:
                got[i] = _answers(fn, [jobs[i]])[0]
            results[k] = [got[i] for i in range(len(jobs))]
        except BaseException as exc:  # reported below: a thread's exception must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # hand the GIL over every few bytecodes: interleave as much as possible
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors
    assert all(r is not None for r in results)
    return results


@pytest.mark.parametrize("kind", ["bhattacharyya", "onnx"])
def test_one_cost_function_shared_by_8_threads_gives_the_single_thread_costs(artifact, queries, kind):
    def make():
        if kind == "onnx":
            return OnnxCostFunction(str(artifact), cache_size=CACHE)
        return BhattacharyyaCostFunction(cache_size=CACHE)

    reference = make()
    expected = _answers(reference, queries)
    shared = make()
    results = _threaded(shared, queries)
    looked_up = {id(d) for cands, new in queries for d in cands + [new]
                 if d is new or 0.0 <= new["timestamp"][0] - d["timestamp"][-1] <= TIME_WIN}
    assert reference.cache.misses > 2 * len(looked_up)  # one thread alone already evicts and rebuilds
    assert shared.cache.misses > THREADS * len(looked_up) and len(shared.cache) <= CACHE
    for k, result in enumerate(results):
        for (batch, single), (want_batch, want_single) in zip(result, expected):
            np.testing.assert_array_equal(batch, want_batch, err_msg=f"thread {k}, batch")
            np.testing.assert_array_equal(single, want_single, err_msg=f"thread {k}, single")
    live = np.concatenate([b for b, _ in expected])
    assert (live < 1e6).sum() > 100 and (live == 1e6).sum() > 10  # both sides of the gate were exercised


def _config(tmp_path: Path, kind: str, artifact: Path) -> Path:
    params = pp_lite.load_parameters(REPO / "parameters_Bhat.json")
    if kind == "onnx":
        params["cost_function"] = {"type": "onnx", "artifact": str(artifact)}
    path = tmp_path / f"parameters_{kind}.json"
    path.write_text(json.dumps(params))
    return path


@pytest.mark.parametrize("kind", ["bhattacharyya", "onnx"])
def test_two_directions_in_two_processes_give_the_sequential_output(artifact, scenario, tmp_path, kind):
    config = _config(tmp_path, kind, artifact)
    procs = {}
    for direction, tag in ((1, "EB"), (-1, "WB")):
        out = tmp_path / tag
        procs[tag] = subprocess.Popen(
            [sys.executable, str(REPO / "pp_lite.py"), "ii", "--config", str(config), "--tag", tag, "--data",
             str(scenario), "--out", str(out), "--direction", str(direction), "--quiet"],
            cwd=REPO, env=CHILD_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sequential, summary = pp_lite.run("ii", pp_lite.load_parameters(config), data_dir=scenario)
    split = {}
    for tag, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        split[tag] = (json.loads((tmp_path / tag / f"REC_ii_{tag}.json").read_text()),
                      json.loads((tmp_path / tag / f"REC_ii_{tag}.meta.json").read_text()))
    union = split["EB"][0] + split["WB"][0]
    assert {d["direction"] for d in split["EB"][0]} == {1} and {d["direction"] for d in split["WB"][0]} == {-1}
    by_id = lambda docs: {d["_id"]: d for d in docs}  # noqa: E731
    assert len(union) == len(sequential) and by_id(union) == by_id(json.loads(json.dumps(sequential)))
    eb, wb = split["EB"][1], split["WB"][1]
    assert eb["direction"] == 1 and wb["direction"] == -1
    assert eb["fragments_stitched"] + wb["fragments_stitched"] == summary["fragments_stitched"]
    assert eb["directions"]["EB"]["online_objective"] == pytest.approx(summary["directions"]["EB"]["online_objective"])
    assert wb["directions"]["WB"]["online_objective"] == pytest.approx(summary["directions"]["WB"]["online_objective"])
    assert eb["skipped"] == wb["skipped"] == summary["skipped"]
