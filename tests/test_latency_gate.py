"""The CI latency gate (benchmarks/gate.py): the change against its base, measured side by side.

`test_gate_passes_against_its_base` *is* the gate inside `make test`: this working tree against its
default base (the merge base with the upstream, else HEAD~1; the fallback where no base exists),
Bhattacharyya and every shipped artifact. The other tests prove that it catches a 1.5x regression
injected into the change only, that a slowdown of both sides (another machine's mix of speeds) does
not fail it, how the base is found, and the fallback. No test asserts a wall time: the verdicts are
ratios of the two sides measured in the same run.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

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

HAS_GIT = shutil.which("git") is not None
QUIET = dict(say=lambda _: None)


@pytest.fixture(scope="module")
def workload():
    """The gate's real candidate pairs (scenario ii, 20 s), built once for the module."""
    return gate.gate_pairs()


@pytest.fixture(scope="module")
def small_workload(workload):
    pairs, groups = workload
    return pairs[:64], groups[:6]


def test_gate_passes_against_its_base(workload):
    lines = []
    result = gate.run_gate(workload=workload, say=lines.append)
    report = result.report()
    print("\n".join(lines + [report]))
    assert result.passed, "\n".join(lines + [report])
    gated = {c.cost for c in result.checks}
    assert "bhattacharyya" in gated
    for kind in ("lr", "mlp", "siamese", "tcn", "transformer"):
        assert (kind in gated) == os.path.isdir(os.path.join(gate.DEFAULT_ARTIFACTS, kind))
    for check in result.checks:  # every ratio is printed, and every check has its rounds
        assert f"{check.ratio:.3f}" in report and len(check.to_json()) and check.rounds == gate.GateConfig.rounds
    assert result.runtimes["B"] == os.path.join(REPO, "runtime", "__init__.py")
    if "A" in result.runtimes:  # the base was measured from its own exported copy, not from this tree
        assert not result.runtimes["A"].startswith(os.path.join(REPO, ""))
        assert {c.mode for c in result.checks} <= {"base", "fallback"}
    else:
        assert any("no base measured" in line for line in lines)


def test_a_fifty_percent_regression_in_the_change_is_caught(small_workload):
    """The 1.5x the gate claims: +50% of Bhattacharyya's own time per pair in B only; mlp untouched."""
    result = gate.run_gate(base_root=REPO, costs=["bhattacharyya", "mlp"], workload=small_workload,
                           inject=gate.parse_inject("b:bhattacharyya=+50%"), config=gate.GateConfig(rounds=16),
                           **QUIET)
    report = result.report()
    verdict = {(c.cost, c.metric): c.ok for c in result.checks}
    assert verdict == {("bhattacharyya", "single"): False, ("bhattacharyya", "batch32"): False,
                       ("mlp", "single"): True, ("mlp", "batch32"): True}, report
    for check in result.checks:
        assert check.mode == "base"
        if check.cost == "bhattacharyya":
            assert check.ratio > 1 + gate.TOLERANCE and check.slower >= gate.sign_test_threshold(16), report
    assert "latency gate: FAILED (2 check(s))" in report


def test_a_slowdown_of_both_sides_passes(small_workload):
    """One kind of work 2x slower in A and in B (another machine's mix of speeds) is no regression."""
    lines = []
    result = gate.run_gate(base_root=REPO, costs=["bhattacharyya", "lr"], workload=small_workload,
                           inject=gate.parse_inject("both:bhattacharyya=+100%"), config=gate.GateConfig(rounds=16),
                           say=lines.append)
    assert result.passed, result.report()
    injected = [line for line in lines if "injected" in line]
    assert len(injected) == 2 and injected[0].startswith("note: A:") and injected[1].startswith("note: B:")
    assert injected[0].split(":", 2)[2] == injected[1].split(":", 2)[2]  # the same microseconds on both sides
    slowed = {c.metric: c for c in result.checks if c.cost == "bhattacharyya"}
    assert slowed["single"].a_us > 0 and slowed["single"].ratio < 1 + gate.TOLERANCE


def test_fallback_without_a_base_checks_same_kind_ratios_and_catches_a_slowdown(small_workload):
    lines = []
    result = gate.run_gate(use_base=False, costs=["bhattacharyya", "lr"], workload=small_workload,
                           inject=gate.parse_inject("bhattacharyya=+400%"), config=gate.GateConfig(rounds=5),
                           say=lines.append)
    assert lines[0].startswith("note: no base measured (--no-base); fallback")
    assert {c.mode for c in result.checks} == {"fallback"} and "A" not in result.runtimes
    failed = {(c.cost, c.metric) for c in result.checks if not c.ok}
    assert ("bhattacharyya", "single") in failed and ("bhattacharyya", "batch32") in failed, result.report()
    assert all("same-kind ratio" in f for c in result.checks for f in c.failures)
    assert "none (fallback)" in result.report()


def test_a_base_that_cannot_be_imported_falls_back_in_one_line(tmp_path, small_workload):
    broken = tmp_path / "base"
    (broken / "runtime").mkdir(parents=True)
    (broken / "runtime" / "__init__.py").write_text("raise ImportError('this base needs something we lack')\n")
    lines = []
    result = gate.run_gate(base_root=str(broken), costs=["bhattacharyya"], workload=small_workload,
                           config=gate.GateConfig(rounds=3), say=lines.append)
    notes = [line for line in lines if "no base measured" in line]
    assert len(notes) == 1 and "this base needs something we lack" in notes[0], lines
    assert {c.mode for c in result.checks} == {"fallback"} and result.base == "none (fallback)"


def test_the_ceiling_fails_in_every_mode(small_workload):
    pairs, _ = small_workload
    result = gate.run_gate(base_root=REPO, costs=["bhattacharyya"], workload=(pairs[:8], []),
                           inject=gate.parse_inject("both:1100"), config=gate.GateConfig(rounds=3, block=4), **QUIET)
    (check,) = result.checks
    assert check.metric == "single" and check.ratio < 1 + gate.TOLERANCE
    assert any("> ceiling 1000 us" in f for f in check.failures), result.report()


def test_cli_help_explains_the_base_comparison():
    done = CliRunner().invoke(gate.main, ["--help"])
    assert done.exit_code == 0
    text = " ".join(done.output.split())
    for phrase in ("--base REV", "merge base", "HEAD~1", "git archive", "same-kind" if "same-kind" in text else
                   "its own kind", "STITCH_GATE_INJECT_US", "sign test"):
        assert phrase in text, phrase


def test_cli_unknown_base_says_so_in_one_line_and_falls_back(tmp_path):
    out = tmp_path / "result.json"
    done = CliRunner().invoke(gate.main, ["--base", "no-such-revision", "--only", "bhattacharyya", "--rounds", "3",
                                          "--json", str(out)], env={gate.INJECT_ENV: ""})
    assert done.exit_code in (0, 1), done.output
    notes = [line for line in done.output.splitlines() if "no base measured" in line]
    assert len(notes) == 1 and "--base no-such-revision: no such commit here" in notes[0]
    data = json.loads(out.read_text())
    assert data["base"] == "none (fallback)" and {c["mode"] for c in data["checks"]} == {"fallback"}
    bad = CliRunner().invoke(gate.main, ["--no-base"], env={gate.INJECT_ENV: "mlp=fast"})
    assert bad.exit_code != 0 and "NAME=MICROSECONDS" in bad.output


def test_cli_injection_fails_the_gate():
    done = CliRunner().invoke(gate.main, ["--base-root", REPO, "--only", "bhattacharyya", "--rounds", "8"],
                              env={gate.INJECT_ENV: "b:bhattacharyya=+100%"})
    assert done.exit_code == 1, done.output
    assert "note: B: injected" in done.output and "FAIL" in done.output


def _git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def _scratch_repo(repo):
    """An empty git repository on branch main with a committer identity."""
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "t")
    return repo


@pytest.mark.skipif(not HAS_GIT, reason="git is not installed")
def test_resolve_base_merge_base_head_parent_and_missing(tmp_path):
    repo = _scratch_repo(tmp_path / "repo")
    (repo / "runtime").mkdir()
    (repo / "runtime" / "__init__.py").write_text("V = 1\n")
    _git(repo, "add", "runtime")
    _git(repo, "commit", "-q", "-m", "one")
    first = _git(repo, "rev-parse", "HEAD")
    only = gate.resolve_base(repo=str(repo))
    assert only.commit is None and "HEAD~1 is not here" in only.reason  # the first commit: nothing to compare
    (repo / "artifacts").mkdir()
    (repo / "artifacts" / "x.txt").write_text("x\n")
    (repo / "runtime" / "__init__.py").write_text("V = 2\n")
    _git(repo, "add", "runtime", "artifacts")
    _git(repo, "commit", "-q", "-m", "two")
    second = _git(repo, "rev-parse", "HEAD")
    assert (gate.resolve_base(repo=str(repo)).commit, gate.resolve_base(repo=str(repo)).label) == (first, "HEAD~1")
    assert gate.resolve_base("HEAD~1", repo=str(repo)).commit == first
    assert "no such commit" in gate.resolve_base("nope", repo=str(repo)).reason
    # a branch with an upstream: the merge base, unless HEAD *is* the merge base (then HEAD~1)
    _git(repo, "checkout", "-q", "-b", "feature")
    _git(repo, "branch", "--set-upstream-to", "main")
    assert gate.resolve_base(repo=str(repo)).commit == first  # HEAD == merge base: the last commit is the change
    (repo / "runtime" / "__init__.py").write_text("V = 3\n")
    _git(repo, "commit", "-q", "-am", "three")
    (repo / "runtime" / "__init__.py").write_text("V = 4\n")
    _git(repo, "commit", "-q", "-am", "four")
    base = gate.resolve_base(repo=str(repo))
    assert base.commit == second and base.label == "merge base with main"
    exported = gate.export_base(base, str(tmp_path / "base"), repo=str(repo))
    assert exported.root == str(tmp_path / "base")
    assert (tmp_path / "base" / "runtime" / "__init__.py").read_text() == "V = 2\n"
    assert (tmp_path / "base" / "artifacts" / "x.txt").read_text() == "x\n"
    no_runtime = gate.export_base(gate.Base(first, "x"), str(tmp_path / "none"), repo=str(tmp_path))
    assert no_runtime.root is None and no_runtime.reason
    assert "not a git checkout" in gate.resolve_base(repo=str(tmp_path / "base")).reason


@pytest.mark.skipif(not HAS_GIT, reason="git is not installed")
def test_an_exported_base_is_measured_from_its_own_copy(tmp_path, small_workload):
    """`--base HEAD`: the base's runtime is imported from its export, with this checkout's harness."""
    if gate.resolve_base("HEAD").commit is None:
        pytest.skip("not a git checkout")
    result = gate.run_gate("HEAD", costs=["bhattacharyya"], workload=small_workload,
                           config=gate.GateConfig(rounds=4), **QUIET)
    assert {c.mode for c in result.checks} == {"base"}
    assert result.runtimes["A"].endswith(os.path.join("base", "runtime", "__init__.py"))
    assert not result.runtimes["A"].startswith(os.path.join(REPO, ""))


def test_parse_inject():
    assert gate.parse_inject(None) == {"a": {}, "b": {}}
    assert gate.parse_inject(" ") == {"a": {}, "b": {}}
    assert gate.parse_inject("50") == {"a": {}, "b": {"*": {"us": 50.0}}}
    assert gate.parse_inject("MLP=+50%, a:bhattacharyya=20.5") == {"a": {"bhattacharyya": {"us": 20.5}},
                                                                   "b": {"mlp": {"relative": 0.5}}}
    assert gate.parse_inject("both:lr=100%") == {"a": {"lr": {"relative": 1.0}}, "b": {"lr": {"relative": 1.0}}}
    for bad in ("mlp=-1", "=5", "mlp=", "x=y", "c:mlp=5", "mlp=+x%"):
        with pytest.raises(Exception, match=gate.INJECT_ENV):
            gate.parse_inject(bad)


def test_sign_test_threshold_is_the_one_sided_binomial_bound():
    for n in (3, 5, 8, 16, 20, 30, 40):
        k = gate.sign_test_threshold(n)

        def tail(k):
            return sum(math.comb(n, j) for j in range(k, n + 1)) / 2 ** n

        if k <= n:
            assert tail(k) <= gate.SIGN_ALPHA < tail(k - 1)
        else:  # too few rounds for any significance
            assert tail(n) > gate.SIGN_ALPHA
    assert gate.sign_test_threshold(20) == 16


def _rec(ratios, b_us=10.0):
    return {"ratios": ratios, "b_ns": [b_us * 1e3] * len(ratios), "a_ns": [b_us * 1e3 / r for r in ratios]}


def test_evaluate_needs_a_consistent_regression():
    budgets = {"ceiling_us": {"single": 1000.0, "batch32": 1000.0}, "fallback": {"lr": {"single": 2.0}}}
    measured = {
        ("bhattacharyya", "single"): _rec([1.5] * 20),                      # 1.5x every round: fails
        ("bhattacharyya", "batch32"): _rec([1.3] * 12 + [0.9] * 8),          # median 1.3, slower 12/20 < 16
        ("mlp", "single"): _rec([1.15] * 20),                                # consistent but within 1.2
        ("mlp", "batch32"): _rec([1.0] * 20, b_us=1500.0),                   # equal, above the ceiling
        ("lr", "single"): _rec([4.5] * 5),                                   # fallback: 4.5 > 2.0 x 2
        ("lr", "batch32"): _rec([0.5] * 5),                                  # fallback without a budget
    }
    modes = {k: ("fallback" if k[0] == "lr" else "base") for k in measured}
    result = gate.evaluate(measured, modes, budgets, "HEAD~1")
    verdict = {(c.cost, c.metric): c.ok for c in result.checks}
    assert verdict == {("bhattacharyya", "single"): False, ("bhattacharyya", "batch32"): True,
                       ("mlp", "single"): True, ("mlp", "batch32"): False,
                       ("lr", "single"): False, ("lr", "batch32"): True}
    assert any("slower in only 12/20" in n for n in result.notes)
    assert any("no fallback budget for lr batch32" in n for n in result.notes)
    assert not result.passed and "FAILED (3 check(s))" in result.report()


def test_a_failure_stands_only_when_its_confirmation_fails_too():
    budgets = {"ceiling_us": {"single": 1000.0, "batch32": 1000.0}, "fallback": {}}
    first = {("bhattacharyya", "single"): _rec([1.4] * 30), ("mlp", "single"): _rec([1.5] * 30),
             ("tcn", "single"): _rec([1.0] * 30)}
    modes = {k: "base" for k in first}
    asked = []

    def remeasure(keys):
        asked.append(sorted(keys))
        return {("bhattacharyya", "single"): _rec([1.0] * 15 + [1.02] * 15),   # the burst is gone: noise
                ("mlp", "single"): _rec([1.5] * 30)}                           # still 1.5x: a regression
    result = gate.confirm_failures(gate.evaluate(first, modes, budgets, "HEAD~1"), remeasure, modes, budgets)
    assert asked == [[("bhattacharyya", "single"), ("mlp", "single")]]        # only the failing checks again
    verdict = {(c.cost, c.metric): c.ok for c in result.checks}
    assert verdict == {("bhattacharyya", "single"): True, ("mlp", "single"): False, ("tcn", "single"): True}
    assert any("bhattacharyya single: failed the first pass" in n and "noise" in n for n in result.notes)
    assert any("mlp single: confirmed by a second pass (1.50x" in n for n in result.notes)
    assert not result.passed
    clean = gate.evaluate({("tcn", "single"): _rec([1.0] * 30)}, {("tcn", "single"): "base"}, budgets)
    assert gate.confirm_failures(clean, lambda keys: pytest.fail("nothing to confirm"), modes, budgets) is clean


def test_parse_acceptances_reads_trailers_and_refuses_malformed_ones():
    message = ("Ship the new LR\n\nIt feeds the Bhattacharyya cost.\n\n"
               "Latency-accepted: lr single 2.5, lr batch32 2.8x\nlatency-accepted: mlp single 1.4\n"
               "Latency-accepted: lr single 2.0\n")
    assert gate.parse_acceptances(message) == {("lr", "single"): 2.5, ("lr", "batch32"): 2.8, ("mlp", "single"): 1.4}
    assert gate.parse_acceptances("no trailer here\nlatency accepted: lr single 3") == {}
    for bad in ("lr single", "lr single fast", "gbm single 2", "lr triple 2", "lr single 0.9", "lr single 2 3"):
        with pytest.raises(ValueError, match="Latency-accepted"):
            gate.parse_acceptances(f"x\n\nLatency-accepted: {bad}")


def test_an_accepted_slowdown_passes_up_to_its_declared_ratio_only():
    budgets = {"ceiling_us": {"single": 1000.0, "batch32": 1000.0}, "fallback": {}}
    measured = {("lr", "single"): _rec([2.1] * 30), ("lr", "batch32"): _rec([2.9] * 30),
                ("mlp", "single"): _rec([2.0] * 30), ("tcn", "single"): _rec([1.5] * 30, b_us=1200.0)}
    modes = {k: "base" for k in measured}
    accepted = {("lr", "single"): (2.5, "abc1234"), ("lr", "batch32"): (2.5, "abc1234"),
                ("tcn", "single"): (2.0, "abc1234")}
    result = gate.evaluate(measured, modes, budgets, "HEAD~1", accepted)
    checks = {(c.cost, c.metric): c for c in result.checks}
    assert checks[("lr", "single")].ok and "accepted in abc1234" in checks[("lr", "single")].accepted
    assert not checks[("lr", "batch32")].ok and "accepted up to 2.5x" in checks[("lr", "batch32")].failures[0]
    assert not checks[("mlp", "single")].ok                                       # nothing declared for it
    assert not checks[("tcn", "single")].ok and "ceiling" in checks[("tcn", "single")].failures[0]  # ceiling stays
    assert "ok (slower, 2.10x <= 2.5x accepted in abc1234)" in result.report()


@pytest.mark.skipif(not HAS_GIT, reason="git is not installed")
def test_accepted_between_reads_only_the_commits_of_the_change(tmp_path):
    repo = _scratch_repo(tmp_path / "repo")
    messages = ["old\n\nLatency-accepted: mlp single 3", "base", "change\n\nLatency-accepted: lr single 2.5",
                "docs\n\nLatency-accepted: lr single 1.8, lr batch32 2"]
    shas = []
    for i, message in enumerate(messages):
        (repo / "f.txt").write_text(f"{i}\n")
        _git(repo, "add", "f.txt")
        _git(repo, "commit", "-q", "-m", message)
        shas.append(_git(repo, "rev-parse", "--short", "HEAD"))
    got = gate.accepted_between(shas[1], repo=str(repo))
    assert got == {("lr", "single"): (2.5, shas[2]), ("lr", "batch32"): (2.0, shas[3])}  # not the base's own
    assert gate.accepted_between(shas[3], repo=str(repo)) == {}


def test_committed_budgets_are_valid():
    budgets = gate.load_budgets()
    assert budgets["ceiling_us"] == {"single": 1000.0, "batch32": 1000.0}
    assert set(budgets["fallback"]) == set(gate.COSTS)
    for metrics in budgets["fallback"].values():
        assert set(metrics) == set(gate.METRICS) and all(v > 0 for v in metrics.values())
    with open(gate.BUDGETS_PATH, encoding="utf-8") as fh:
        data = json.load(fh)
    assert "how" in data["measured"] and "Not the gate's pass/fail rule" in data["about"]


def test_load_budgets_refuses_a_bad_file(tmp_path):
    path = tmp_path / "budgets.json"
    path.write_text(json.dumps({"format": "something else", "fallback": {}}))
    with pytest.raises(ValueError, match="not a"):
        gate.load_budgets(str(path))
    path.write_text(json.dumps({"format": gate.BUDGETS_FORMAT, "fallback": {"mlp": {"single": -1}}}))
    with pytest.raises(ValueError, match="fallback.mlp.single must be a positive number"):
        gate.load_budgets(str(path))
    path.write_text(json.dumps({"format": gate.BUDGETS_FORMAT, "fallback": {}, "ceiling_us": {"p99": 5}}))
    with pytest.raises(ValueError, match="unknown metric"):
        gate.load_budgets(str(path))
    with pytest.raises(ValueError, match="unknown cost"):
        gate.run_gate(costs=["nope"], budgets_path=gate.BUDGETS_PATH, **QUIET)


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
    for reference in (gate.ReferenceWorkload(), gate.PythonReference(), gate.OnnxReference()):
        assert isinstance(reference(), float)


def test_slowed_waits_per_pair_and_returns_the_inner_costs(small_workload):
    from runtime.bhattacharyya import BhattacharyyaCostFunction

    pairs, groups = small_workload
    inner = BhattacharyyaCostFunction()
    slowed = gate.Slowed(inner, 0.0, 0.0)
    a, b = pairs[0]
    assert slowed.compute_cost(a, b, 15.0, gate.PARAM) == inner.compute_cost(a, b, 15.0, gate.PARAM)
    cands, later = groups[0]
    np.testing.assert_array_equal(slowed.compute_costs(cands, later, 15.0, gate.PARAM),
                                  inner.compute_costs(cands, later, 15.0, gate.PARAM))


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
