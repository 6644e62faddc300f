"""The CI latency gate (benchmarks/gate.py): it passes on this checkout, and it fails on a slowdown.

`test_gate_passes_on_this_checkout` *is* the gate inside `make test`: Bhattacharyya always, and every
shipped artifact under artifacts/ that exists, against benchmarks/budgets.json. The other tests prove
that it catches an injected busy-wait (by ratio and by the absolute limit) and check its pieces.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from benchmarks import gate  # noqa: E402
from benchmarks.pairs import candidate_groups, renamed, sample_pairs, stitcher_queries  # noqa: E402
from runtime.onnx_cost import inspect_model  # noqa: E402


@pytest.fixture(scope="module")
def workload():
    """The gate's real candidate pairs (scenario ii, 20 s), built once for the module."""
    return gate.gate_pairs()


@pytest.fixture(scope="module")
def small_workload(workload):
    pairs, groups = workload
    return pairs[:48], groups[:4]


def _reference_us() -> float:
    reference = gate.ReferenceWorkload()
    timer = time.perf_counter_ns
    times = []
    for _ in range(300):
        start = timer()
        reference()
        times.append(timer() - start)
    return statistics.median(times[50:]) / 1e3


def test_gate_passes_on_this_checkout(workload):
    result = gate.run_gate(gate.DEFAULT_ARTIFACTS, workload=workload, say=print)
    report = result.report()
    print(report)
    assert result.passed, report
    gated = {c.cost for c in result.checks}
    assert "bhattacharyya" in gated
    for check in result.checks:  # every ratio is printed
        assert f"{check.ratio:.3f}" in report
    for kind in ("lr", "mlp", "siamese", "tcn", "transformer"):
        assert (kind in gated) == os.path.isdir(os.path.join(gate.DEFAULT_ARTIFACTS, kind))


def test_injected_slowdown_fails_the_gate(small_workload, tmp_path, capsys):
    budget = gate.load_budgets()["bhattacharyya"]["single"]
    # 3x the budget in reference units: the ratio lands near 4x budget, far above budget x 1.5, and
    # still above it if the machine's load triples between this estimate and the measurement.
    delay = 3.0 * budget * _reference_us()
    result = gate.run_gate(str(tmp_path), inject_us={"bhattacharyya": delay}, workload=small_workload,
                           config=gate.GateConfig(rounds=5, block=16, batch_block=2))
    report = result.report()
    assert not result.passed, report
    assert [c.cost for c in result.checks] == ["bhattacharyya", "bhattacharyya"]  # no artifacts in tmp_path
    failed = {c.metric for c in result.checks if not c.ok}
    assert failed == {"single", "batch32"}, report
    assert "slower than budgeted" in report and "latency gate: FAILED (2 check(s))" in report
    out = capsys.readouterr().out
    assert "no artifact for lr, mlp, siamese, tcn, transformer" in out
    assert "injected" in out


def test_absolute_limit_fails_whatever_the_budget(small_workload, tmp_path):
    pairs, groups = small_workload
    budgets = tmp_path / "budgets.json"
    budgets.write_text(json.dumps({"format": gate.BUDGETS_FORMAT, "budgets": {"bhattacharyya": {"single": 1e6}}}))
    result = gate.run_gate(str(tmp_path), budgets_path=str(budgets), inject_us={"*": 1100.0},
                           workload=(pairs[:8], []), config=gate.GateConfig(rounds=3, block=4), say=lambda _: None)
    assert not result.passed
    (check,) = result.checks
    assert check.metric == "single" and check.ratio < check.limit
    assert any("> 1000 us" in f for f in check.failures), result.report()


def test_environment_variable_injects_through_the_command_line(tmp_path):
    runner = CliRunner()
    done = runner.invoke(gate.main, ["--artifacts", str(tmp_path), "--rounds", "3"],
                         env={gate.INJECT_ENV: "bhattacharyya=400"})
    assert done.exit_code == 1, done.output
    assert "injected 400 us" in done.output and "FAIL" in done.output
    bad = runner.invoke(gate.main, ["--artifacts", str(tmp_path)], env={gate.INJECT_ENV: "mlp=fast"})
    assert bad.exit_code != 0 and "NAME=MICROSECONDS" in bad.output


def test_parse_inject():
    assert gate.parse_inject(None) == {}
    assert gate.parse_inject(" ") == {}
    assert gate.parse_inject("50") == {"*": 50.0}
    assert gate.parse_inject("MLP=50, bhattacharyya=20.5") == {"mlp": 50.0, "bhattacharyya": 20.5}
    for bad in ("mlp=-1", "=5", "mlp=", "x=y"):
        with pytest.raises(Exception, match=gate.INJECT_ENV):
            gate.parse_inject(bad)


def test_evaluate_judges_ratio_budget_and_absolute_limit():
    measured = {"reference_us": 40.0, "costs": {
        "bhattacharyya": {"single": {"ratio": 1.19, "median_us": 48.0}, "batch32": {"ratio": 0.5, "median_us": 20.0}},
        "mlp": {"single": {"ratio": 1.21, "median_us": 48.0}},
        "tcn": {"single": {"ratio": 30.0, "median_us": 1200.0}},
    }}
    budgets = {"bhattacharyya": {"single": 0.8, "batch32": 0.2}, "mlp": {"single": 0.8}}
    result = gate.evaluate(measured, budgets)
    verdict = {(c.cost, c.metric): c.ok for c in result.checks}
    assert verdict == {("bhattacharyya", "single"): True,     # 1.19 <= 0.8 x 1.5
                       ("bhattacharyya", "batch32"): False,   # 0.5 > 0.2 x 1.5
                       ("mlp", "single"): False,              # 1.21 > 1.2
                       ("tcn", "single"): False}              # no budget, but 1200 us > 1 ms
    assert any("no budget committed for 'tcn'" in n for n in result.notes)
    assert not result.passed


def test_committed_budgets_are_valid():
    budgets = gate.load_budgets()
    assert "bhattacharyya" in budgets
    for metrics in budgets.values():
        assert set(metrics) <= set(gate.METRICS) and all(v > 0 for v in metrics.values())
    with open(gate.BUDGETS_PATH, encoding="utf-8") as fh:
        assert "how" in json.load(fh)["measured"]


def test_load_budgets_refuses_a_bad_file(tmp_path):
    path = tmp_path / "budgets.json"
    path.write_text(json.dumps({"format": "something else", "budgets": {}}))
    with pytest.raises(ValueError, match="not a"):
        gate.load_budgets(str(path))
    path.write_text(json.dumps({"format": gate.BUDGETS_FORMAT, "budgets": {"mlp": {"single": -1}}}))
    with pytest.raises(ValueError, match="positive ratio"):
        gate.load_budgets(str(path))


def test_reference_graph_is_a_standard_onnx_mlp():
    data = gate.tiny_mlp_onnx(n_in=5, hidden=3, seed=1)
    facts = inspect_model(data, "reference")
    assert facts.opsets == {"": 17} and facts.node_domains == {""}
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).normal(size=(4, 5)).astype(np.float32)
    (cost,) = session.run(None, {"features": x})
    rng = np.random.default_rng(1)
    w1, b1, w2 = rng.normal(0.0, 0.2, (5, 3)), rng.normal(0.0, 0.1, 3), rng.normal(0.0, 0.2, (3,))
    np.testing.assert_allclose(cost, np.maximum(x @ w1 + b1, 0.0) @ w2 + 3.0, rtol=1e-5, atol=1e-5)
    assert isinstance(gate.ReferenceWorkload()(), float)


def _doc(fid: str, direction: int, t0: float, t1: float) -> dict:
    t = np.arange(t0, t1 + 1e-9, 0.04).tolist()
    return {"_id": fid, "direction": direction, "timestamp": t, "x_position": [0.0] * len(t),
            "y_position": [0.0] * len(t)}


def test_stitcher_queries_follow_the_candidate_rule():
    docs = [_doc("a", 1, 0.0, 1.0), _doc("b", 1, 2.0, 3.0), _doc("c", -1, 2.0, 3.0), _doc("d", 1, 20.0, 21.0),
            _doc("e", 1, 2.5, 4.0)]
    queries = {q.later["_id"]: [a["_id"] for a in q.candidates] for q in stitcher_queries(docs, 15.0)}
    # b: a ended 1 s before; e: b has not ended when e starts (gap < 0), so only a; c: the other
    # direction; d: gaps 19 s (a), 17 s (b), 16 s (e), none within 15 s
    assert queries == {"b": ["a"], "e": ["a"]}
    queries = {q.later["_id"]: [a["_id"] for a in q.candidates] for q in stitcher_queries(docs, 17.0)}
    assert queries["d"] == ["e", "b"]  # newest end first; a's gap is 19 s


def test_pair_sampling_and_groups_are_fixed_and_full(workload):
    pairs, groups = workload
    assert len(pairs) == 256 and pairs == gate.gate_pairs()[0]
    assert all(len(cands) == gate.BATCH for cands, _ in groups)
    for a, b in pairs[:50]:
        assert a["direction"] == b["direction"] and 0 <= b["timestamp"][0] - a["timestamp"][-1] <= 15.0
    copy = renamed(pairs[0][1], "x")
    assert copy["_id"] != pairs[0][1]["_id"] and copy["timestamp"] is pairs[0][1]["timestamp"]
    queries = stitcher_queries([a for a, _ in pairs[:5]] + [pairs[0][1]])
    assert sample_pairs(queries, 3, seed=1) == sample_pairs(queries, 3, seed=1)
    assert candidate_groups([], 8, 4) == []


def test_latency_benchmark_end_to_end_on_a_short_scenario(tmp_path):
    """benchmarks/latency.py measures and reports everything (Bhattacharyya only, one short scenario)."""
    from benchmarks import latency

    plan = latency.Plan(pairs_per_scenario=24, warm_rounds=1, cold_pairs=6, batch_calls=2, process_runs=1,
                        end_to_end=True)
    summary = latency.run(str(tmp_path), plan, say=lambda _: None, scenarios=(("ii", 3),), duration=8.0)
    row = summary["costs"]["bhattacharyya"]
    assert set(summary["costs"]) == {"bhattacharyya"}
    assert 0 < row["warm"]["median_us"] <= row["warm"]["p99_us"] and row["warm"]["samples"] == 24
    assert row["cold_new_later"]["samples"] == 6 and row["cold_both_new"]["median_us"] > 0
    assert [row["batch"][str(k)]["candidates"] for k in latency.BATCH_SIZES] == list(latency.BATCH_SIZES)
    e2e = row["end_to_end"]
    assert e2e["cost_pairs"] > 0 and e2e["fragments"] == summary["workload"]["scenarios"]["ii"]["fragments"]
    process = summary["process"]
    assert process["training_modules_imported"] == [] and process["vm_hwm_mb"] >= process["vm_rss_mb"] > 0
    assert process["import_s"] >= process["import_numpy_s"] > 0
    deps = summary["dependencies"]
    assert {"numpy", "onnxruntime"} <= set(deps["base"]["packages"])
    assert "torch" in deps["train_extra"]["packages"] and "numpy" not in deps["train_extra"]["packages"]
    targets = {t["target"]: t for t in summary["targets"]}
    assert targets["bhattacharyya: warm single pair median (us)"]["limit"] == 40.0
    table = latency.format_table(summary)
    markdown = latency.format_markdown(summary)
    assert "bhattacharyya" in table and "targets:" in table
    for heading in ("## Method", "## Per pair", "## Batch", "## End to end", "## Process and installation",
                    "## Targets", "## Machine calibration"):
        assert heading in markdown
    assert "412 / 621" in markdown  # the reference figures beside ours
