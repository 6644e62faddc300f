"""Selecting and shipping by the shift suite's worst case: the ranking rules on in-memory payloads,
`promote --shift-guard` refusing / accepting / recording (suite runner replaced by canned payloads),
`tune`'s selection over a study's top trials, and one small real run of the shared suite core."""
import json
import os
import shutil

import optuna
import pytest
from click.testing import CliRunner

from workflows import promote as promote_mod
from workflows import shift_suite
from workflows import tune as tune_mod
from workflows.promote import PromotionRefused, ShiftGuard, promote
from workflows.shift_suite import rank_candidates, select_candidate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESETS, SHIFTS = ("i", "iii"), ("nominal", "velocity_absent")


# ------------------------------------------------------------------------------------- canned payloads
def canned_payload(deltas: dict[str, dict[tuple, float]], bhat: float = 0.8, profile: str = "quick") -> dict:
    """A suite payload whose costs have the given IDF1 - Bhat IDF1 per (preset, shift), built through the
    suite's own aggregate / add_deltas / worst_cases."""
    rows = []
    for p in PRESETS:
        for s in SHIFTS:
            rows.append({"preset": p, "seed": 201, "shift": s, "cost": "Bhat", "idf1": bhat, "idsw": 3, "mota": 0.9,
                         "positives": 10, "negatives": 20, "tp": 9, "fp": 1, "nonfinite": 0})
            for label, cells in deltas.items():
                rows.append({"preset": p, "seed": 201, "shift": s, "cost": label, "idf1": bhat + cells.get((p, s), 0.0),
                             "idsw": 3, "mota": 0.9, "positives": 10, "negatives": 20, "tp": 9, "fp": 1,
                             "nonfinite": 0})
    agg = shift_suite.aggregate(rows)
    shift_suite.add_deltas(agg)
    return {"presets": list(PRESETS), "seeds": [201], "shifts": list(SHIFTS), "costs": ["Bhat", *deltas],
            "duration": 20.0, "profile": profile, "seconds": 1.0, "aggregate": agg, "rows": rows,
            "worst_case": shift_suite.worst_cases(agg), "pair_view": shift_suite.pair_view(agg), "notes": []}


def cand(label, value, trial=None):
    return {"label": label, "value": value, "trial": trial}


# ------------------------------------------------------------------------------------- selection rules
def test_worst_case_mode_ranks_by_worst_then_objective():
    cands = [cand("a", 0.90), cand("b", 0.80), cand("c", 0.85), cand("d", 0.70)]
    worst = {"a": -0.040, "b": -0.002, "c": -0.002, "d": 0.001}
    chosen, table = select_candidate(cands, worst, "worst-case")
    assert chosen["label"] == "d"
    assert [r["label"] for r in table] == ["d", "c", "b", "a"]      # c before b: same worst case, better objective
    assert [r["rank"] for r in table] == [1, 2, 3, 4]
    assert [r["passes"] for r in table] == [True, True, True, False]


def test_constraint_mode_takes_the_best_objective_among_those_that_pass():
    cands = [cand("a", 0.90), cand("b", 0.80), cand("c", 0.85), cand("d", 0.70)]
    worst = {"a": -0.040, "b": -0.002, "c": -0.0051, "d": 0.001}
    chosen, table = select_candidate(cands, worst, "constraint", tolerance=0.005)
    assert chosen["label"] == "b"                                   # c is just below -0.005, a far below
    assert [(r["label"], r["rank"]) for r in table] == [("b", 1), ("d", 2), ("a", None), ("c", None)]
    # a looser tolerance lets c in, and its objective beats b's
    chosen, _ = select_candidate(cands, worst, "constraint", tolerance=0.006)
    assert chosen["label"] == "c"
    # ties on the objective go to the better worst case
    chosen, _ = select_candidate([cand("x", 0.8), cand("y", 0.8)], {"x": -0.001, "y": 0.002}, "constraint")
    assert chosen["label"] == "y"


def test_no_eligible_candidate_and_failed_exports_are_ruled_out():
    cands = [cand("a", 0.9), cand("b", 0.8)]
    chosen, table = select_candidate(cands, {"a": -0.02, "b": -0.03}, "constraint")
    assert chosen is None and all(r["rank"] is None for r in table)
    # b's export failed (no worst case): ruled out in worst-case mode, still ranked by plain objective
    chosen, table = select_candidate(cands, {"a": -0.02}, "worst-case")
    assert chosen["label"] == "a" and table[1]["label"] == "b" and table[1]["rank"] is None
    chosen, _ = select_candidate(cands, {}, "objective")
    assert chosen["label"] == "a"
    with pytest.raises(ValueError, match="unknown selection mode"):
        rank_candidates(cands, {}, "median")


def test_robustness_record_reads_the_worst_cell_from_a_payload():
    payload = canned_payload({"mlp": {("iii", "velocity_absent"): -0.03, ("i", "nominal"): 0.01},
                              "lr": {("i", "velocity_absent"): -0.001}})
    rec = shift_suite.robustness_record(payload, "mlp", 0.005)
    assert rec["worst"] == pytest.approx(-0.03) and rec["worst_cell"] == ["iii", "velocity_absent"]
    assert rec["passes"] is False and rec["cells_below"] == 1 and rec["cells"] == 4
    assert rec["profile"] == "quick" and rec["shifts"] == list(SHIFTS) and rec["seeds"] == [201]
    rec = shift_suite.robustness_record(payload, "lr", 0.005)
    assert rec["passes"] is True and rec["worst_cell"] == ["i", "velocity_absent"]
    table = shift_suite.cell_table(payload, ["mlp", "lr"])
    line = next(x for x in table.splitlines() if x.startswith("iii") and "velocity_absent" in x)
    assert "-0.030*" in line
    with pytest.raises(ValueError, match="no worst case for 'tcn'"):
        shift_suite.worst_of(payload, "tcn")


# ------------------------------------------------------------------------------------- promote --shift-guard
def write_run(path):
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps({"splits": {}}))
    (path / "model_config.json").write_text(json.dumps({"kind": "mlp"}))
    return path


def make_artifact(path, tag):
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps({"tag": tag}))
    return path


def fake_export(run_dir, kind, out_dir, data_dir=None, say=None):
    os.makedirs(out_dir)
    with open(os.path.join(out_dir, "manifest.json"), "w") as fh:
        json.dump({"tag": "new", "kind": kind}, fh)


def tag_of(path):
    return json.loads((path / "manifest.json").read_text())["tag"]


@pytest.fixture
def canned_suite(monkeypatch):
    """Replace the suite runner: the candidate's deltas come from `state["deltas"]`; calls are recorded."""
    state = {"deltas": {}, "calls": []}

    def run_profile(costs, profile="quick", **kwargs):
        labels = [c[1] for c in costs if c[1] != "Bhat"]
        state["calls"].append({"labels": labels, "profile": profile, "artifacts": [c[2].get("artifact") for c in costs],
                               "manifest_there": [os.path.isfile(os.path.join(c[2]["artifact"], "manifest.json"))
                                                  for c in costs if c[2]["type"] == "onnx"]})
        return canned_payload({lb: state["deltas"].get(lb, {}) for lb in labels}, profile=profile)

    monkeypatch.setattr(shift_suite, "run_profile", run_profile)
    monkeypatch.setattr(promote_mod, "export_with_checks", fake_export)
    return state


def test_shift_guard_refuses_a_failing_candidate_and_leaves_the_artifact(tmp_path, canned_suite):
    run = write_run(tmp_path / "run")
    dest = make_artifact(tmp_path / "artifacts" / "mlp", "old")
    make_artifact(tmp_path / "artifacts" / "mlp.prev", "older")
    canned_suite["deltas"] = {"mlp": {("iii", "velocity_absent"): -0.012}}
    out = CliRunner().invoke(promote_mod.main, [str(run), "--to", str(dest), "--shift-guard"])
    assert out.exit_code == 1, out.output
    assert "worst case -0.0120 on iii / velocity_absent" in out.output and "left unchanged" in out.output
    assert tag_of(dest) == "old" and tag_of(tmp_path / "artifacts" / "mlp.prev") == "older"
    assert "robustness" not in json.loads((dest / "manifest.json").read_text())
    assert sorted(os.listdir(tmp_path / "artifacts")) == ["mlp", "mlp.prev"]       # no staging left behind
    call = canned_suite["calls"][0]
    assert call["labels"] == ["mlp"] and call["profile"] == "quick" and call["manifest_there"] == [True]
    # a looser tolerance accepts the same candidate; --shift-full asks for the full profile
    out = CliRunner().invoke(promote_mod.main, [str(run), "--to", str(dest), "--shift-guard",
                                                "--shift-tolerance", "0.02", "--shift-full"])
    assert out.exit_code == 0, out.output
    assert canned_suite["calls"][-1]["profile"] == "full"
    assert json.loads((dest / "manifest.json").read_text())["robustness"]["tolerance"] == 0.02


def test_shift_guard_accepts_a_passing_candidate_and_records_it(tmp_path, canned_suite):
    run = write_run(tmp_path / "run")
    dest = make_artifact(tmp_path / "artifacts" / "mlp", "old")
    canned_suite["deltas"] = {"mlp": {("i", "velocity_absent"): -0.004, ("iii", "nominal"): 0.02}}
    out = CliRunner().invoke(promote_mod.main, [str(run), "--to", str(dest), "--shift-guard"])
    assert out.exit_code == 0, out.output
    assert "worst case -0.0040 on i / velocity_absent" in out.output and "passes" in out.output
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["tag"] == "new" and tag_of(tmp_path / "artifacts" / "mlp.prev") == "old"
    rob = manifest["robustness"]
    assert rob["worst"] == pytest.approx(-0.004) and rob["worst_cell"] == ["i", "velocity_absent"]
    assert rob["passes"] is True and rob["tolerance"] == 0.005 and rob["profile"] == "quick"
    assert rob["shifts"] == list(SHIFTS) and rob["seeds"] == [201]


def test_force_promotes_a_failing_candidate_with_its_record_and_needs_the_guard(tmp_path, canned_suite):
    run = write_run(tmp_path / "run")
    dest = make_artifact(tmp_path / "artifacts" / "mlp", "old")
    canned_suite["deltas"] = {"mlp": {("i", "nominal"): -0.1}}
    msgs = []
    promote(str(run), str(dest), shift_guard=ShiftGuard(force=True, progress=False), say=msgs.append)
    assert json.loads((dest / "manifest.json").read_text())["robustness"]["passes"] is False
    assert any("--force" in m for m in msgs)
    out = CliRunner().invoke(promote_mod.main, [str(run), "--to", str(dest), "--force"])
    assert out.exit_code == 2 and "--force only relaxes --shift-guard" in out.output
    with pytest.raises(ValueError, match="unknown shift profile"):
        ShiftGuard(profile="huge")
    # without the guard no suite runs
    n = len(canned_suite["calls"])
    promote(str(run), str(dest), say=lambda s: None)
    assert len(canned_suite["calls"]) == n


# ------------------------------------------------------------------------------------- tune --select
def study_with_trials(tmp_path, values):
    study = optuna.create_study(direction="maximize", study_name="mlp-idf1")
    study.set_user_attr("setup", {"model": "mlp"})
    for n, v in enumerate(values):
        run = tmp_path / "runs" / f"trial_{n}"
        study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=v,
                                                  user_attrs={"run_dir": str(run)}))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, params={}, distributions={}))
    return study


def test_tune_selects_among_the_top_trials_and_writes_the_summary(tmp_path, canned_suite):
    study = study_with_trials(tmp_path, [0.70, 0.90, 0.85, 0.80])
    exported = []

    def exporter(run_dir, kind, out, data_dir):
        exported.append(os.path.basename(run_dir))
        if run_dir.endswith("trial_3"):
            raise RuntimeError("parity check failed")
        fake_export(run_dir, kind, out)

    # top 3 by objective: trials 1 (0.90), 2 (0.85), 3 (0.80; its export fails); trial 0 is not a candidate
    canned_suite["deltas"] = {"trial_1": {("iii", "velocity_absent"): -0.05}, "trial_2": {("i", "nominal"): -0.001}}
    rec = tune_mod.select_by_shift(study, "worst-case", top_k=3, progress=False, say=lambda s: None, exporter=exporter)
    assert sorted(exported) == ["trial_1", "trial_2", "trial_3"]
    assert canned_suite["calls"][-1]["labels"] == ["trial_1", "trial_2"]    # one suite run, Bhat shared
    assert rec["chosen"] == 2 and rec["promote"].endswith("--shift-guard") and "trial_2" in rec["promote"]
    assert [(r["trial"], r["rank"]) for r in rec["table"]] == [(2, 1), (1, 2), (3, None)]
    assert rec["table"][2]["export_failed"] == "parity check failed"
    assert rec["table"][1]["worst_cell"] == ["iii", "velocity_absent"]
    path = tune_mod.write_summary(study, "idf1", str(tmp_path / "runs"), rec)
    summary = json.loads(open(path).read())
    assert summary["best_by_objective"]["trial"] == 1 and summary["recommended_trial"] == 2
    assert summary["selection"]["table"][0]["worst"] == pytest.approx(-0.001)
    # as a constraint with a tolerance that trial 2 misses: nothing qualifies
    rec = tune_mod.select_by_shift(study, "constraint", top_k=2, tolerance=0.0005, progress=False,
                                   say=lambda s: None, exporter=exporter)
    assert rec["chosen"] is None and rec["promote"] is None


# ------------------------------------------------------------------------------------- the real suite
def test_real_suite_on_a_tiny_scenario_through_the_shared_core(tmp_path, monkeypatch):
    src = os.path.join(REPO, "artifacts", "lr")
    if not os.path.isfile(os.path.join(src, "manifest.json")):
        pytest.skip("artifacts/lr is absent")
    art = tmp_path / "lr"
    shutil.copytree(src, art)
    monkeypatch.setitem(shift_suite.PROFILES, "tiny", {"duration": 10.0, "seeds": (201,), "presets": ("ii",),
                                                       "shifts": ("nominal", "velocity_absent")})
    # Bhattacharyya against itself: every delta is exactly zero, so the worst case is 0 and passes
    payload = shift_suite.run_profile([shift_suite.BHAT, ("bhat2", "Bhat2", {"type": "bhattacharyya"})], "tiny",
                                      progress=False)
    assert payload["profile"] == "tiny" and payload["shifts"] == ["nominal", "velocity_absent"]
    assert [r["cost"] for r in payload["rows"]] == ["Bhat", "Bhat2"] * 2
    assert all(r["positives"] > 0 and 0 < r["idf1"] <= 1 for r in payload["rows"])
    assert payload["worst_case"][0]["worst"] == 0.0
    # the LR artifact through the guard: the record lands in the manifest, which still loads
    record = promote_mod.shift_check(str(art), "lr", ShiftGuard(profile="tiny", progress=False), say=lambda s: None)
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["robustness"] == json.loads(json.dumps(record))
    assert record["cells"] == 2 and -1 <= record["worst"] <= 1 and record["presets"] == ["ii"]
    from runtime.onnx_cost import OnnxCostFunction
    OnnxCostFunction(str(art))
