"""pp_lite end to end: feed, stitch, write; the CLI contract; no training stack in the pipeline process."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import pp_lite
from runtime.cost import INVALID_COST, StitchCostFunction
from runtime.fragment import Fragment, fragment_id

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {
    "parameters_Bhat.json": "bhattacharyya", "parameters_LR.json": "lr", "parameters_MLP.json": "mlp",
    "parameters_SNN.json": "siamese", "parameters_TCN.json": "tcn", "parameters_Transformer.json": "transformer",
}


def params(**over):
    p = pp_lite.load_parameters(os.path.join(REPO, "parameters_Bhat.json"))
    p.update(over)
    return p


@pytest.fixture(scope="module")
def scenario_dir(tmp_path_factory):
    """A short simulated snow scenario (ii) on disk: GT_ii.json, RAW_ii.json."""
    simulate = pytest.importorskip("training.simulate")
    out = tmp_path_factory.mktemp("data")
    simulate.write_scenario("ii", 5, out, duration=20)
    return out


@pytest.fixture(scope="module")
def raw_docs(scenario_dir):
    with open(scenario_dir / "RAW_ii.json") as fh:
        return json.load(fh)


class GapCost(StitchCostFunction):
    """A cheap stand-in: links by end-to-start distance (no Bhattacharyya needed)."""

    name = "gap-distance"

    def compute_cost(self, track1, track2, TIME_WIN, param=None):
        gap = track2["timestamp"][0] - track1["timestamp"][-1]
        if not 0 <= gap <= TIME_WIN:
            return INVALID_COST
        dy = abs(track2["y_position"][0] - track1["y_position"][-1])
        dx = abs(track2["x_position"][0] - track1["x_position"][-1]) / max(gap, 0.04)
        return 0.5 * dy + 0.05 * abs(dx - 40.0) + 0.1 * gap


def doc(fid, t0, n, direction=1, hz=30.0, y=12.0):
    t = t0 + np.arange(n) / hz
    return {"_id": {"$oid": fid}, "timestamp": t.tolist(), "x_position": (100 + 40 * direction * (t - 1000)).tolist(),
            "y_position": [y] * n, "direction": direction, "length": 15.0, "width": [6.0] * n,
            "velocity": [40.0] * n}


def check_rec(rec_docs, summary, raw):
    kept = set(fragment_id(d) for d in raw) - set(summary["dropped_short_ids"]) - \
        {s["_id"] for s in summary["skipped"]}
    seen = [fid for r in rec_docs for fid in r["fragment_ids"]]
    assert len(seen) == len(set(seen)) and set(seen) == kept  # every kept fragment in exactly one trajectory
    ids = [r["_id"] for r in rec_docs]
    assert len(set(ids)) == len(ids) and all(isinstance(i, str) for i in ids)
    for r in rec_docs:
        f = Fragment.from_document(r)   # valid I-24 document, strictly increasing timestamps
        assert isinstance(r["length"], float) and isinstance(r["width"], float)
        assert r["first_timestamp"] == f.t[0] and r["last_timestamp"] == f.t[-1]
        assert r["starting_x"] == f.x[0] and r["ending_x"] == f.x[-1]
        k = np.rint(f.t * 25)
        assert np.allclose(k / 25, f.t, atol=1e-3, rtol=0)


def test_end_to_end_bhattacharyya_online_and_offline(raw_docs):
    pytest.importorskip("runtime.bhattacharyya")
    rec, summary = pp_lite.run(raw_docs, params(), name="ii")
    check_rec(rec, summary, raw_docs)
    assert summary["cost_function"]["type"] == "bhattacharyya"
    assert summary["cost_batches"] <= summary["fragments_stitched"]
    assert summary["trajectories_out"] < summary["fragments_stitched"]   # it does stitch
    assert summary["objective_gap_pct"] == pytest.approx(0.0, abs=1e-9)
    off, off_summary = pp_lite.run(raw_docs, params(), solver="offline")
    check_rec(off, off_summary, raw_docs)
    assert off_summary["offline_objective"] == pytest.approx(summary["online_objective"])
    assert off_summary["online_objective"] == pytest.approx(summary["online_objective"])
    chains = lambda docs: sorted(tuple(r["fragment_ids"]) for r in docs)
    assert chains(off) == chains(rec)


def test_fill_bridges_gaps_on_the_grid_and_no_fill_leaves_them(raw_docs):
    rec, summary = pp_lite.run(raw_docs, params(), cost_fn=GapCost())
    check_rec(rec, summary, raw_docs)
    multi = [r for r in rec if len(r["fragment_ids"]) > 1]
    assert multi and summary["filled_samples"] > 0
    for r in multi:
        steps = np.diff(np.rint(np.asarray(r["timestamp"]) * 25))
        assert (steps == 1).all()  # contiguous 25 Hz after filling
    bare, bare_summary = pp_lite.run(raw_docs, params(), cost_fn=GapCost(), fill=False)
    assert bare_summary["filled_samples"] == 0
    assert sum(len(r["timestamp"]) for r in bare) == sum(len(r["timestamp"]) for r in rec) - summary["filled_samples"]


def test_assemble_trajectory_constant_velocity_fill_and_overlap():
    a = Fragment.from_document(doc("a", 1000.0, 10, hz=25.0))
    b_doc = doc("b", 1000.0 + 0.36 + 0.2, 10, hz=25.0)
    b = Fragment.from_document(b_doc)
    out, filled = pp_lite.assemble_trajectory([(b, b_doc), (a, {})], "t0")
    assert out["fragment_ids"] == ["a", "b"] and filled == 4   # 0.36 -> 0.56: grid points 0.40..0.52
    t = np.asarray(out["timestamp"])
    x = np.asarray(out["x_position"])
    np.testing.assert_allclose(np.diff(x) / np.diff(t), 40.0)   # straight line across the gap
    touching_doc = doc("c", 1000.36, 10, hz=25.0)               # starts on a's last sample
    touching = Fragment.from_document(touching_doc)
    out, _ = pp_lite.assemble_trajectory([(a, {}), (touching, touching_doc)], "t1")
    assert len(out["timestamp"]) == 19 and (np.diff(out["timestamp"]) > 0).all()


def test_short_bad_and_duplicate_fragments(raw_docs):
    docs = [doc("a", 1000.0, 40), doc("b", 1001.5, 40), doc("tiny", 1003.0, 3),
            {"_id": {"$oid": "broken"}, "timestamp": [1.0, 0.5], "x_position": [0, 1], "y_position": [0, 1],
             "direction": 1},
            doc("a", 1005.0, 40)]
    with pytest.raises(ValueError, match="broken.*timestamp"):
        pp_lite.run(docs, params(), cost_fn=GapCost())
    rec, summary = pp_lite.run(docs, params(), cost_fn=GapCost(), on_bad_fragment="skip")
    assert [s["_id"] for s in summary["skipped"]] == ["broken", "a"]
    assert summary["dropped_short_ids"] == ["tiny"] and summary["resampled"] == 3
    assert sorted(f for r in rec for f in r["fragment_ids"]) == ["a", "b"]
    assert "2 skipped as invalid" in pp_lite.summary_line(summary)


def test_master_mode_from_the_config(raw_docs):
    calls = []

    class Spy(GapCost):
        def compute_costs(self, tracks1, track2, TIME_WIN, param=None):
            calls.append((TIME_WIN, param["stitch_thresh"]))
            return super().compute_costs(tracks1, track2, TIME_WIN, param)

    _, summary = pp_lite.run(raw_docs, params(stitcher_mode="master"), cost_fn=Spy())
    assert summary["stitcher"]["stitch_thresh"] == 4.0 and summary["stitcher"]["time_win"] == 20.0
    assert set(calls) == {(20.0, 4.0)}


def test_shipped_parameter_files():
    for name, kind in CONFIGS.items():
        p = pp_lite.load_parameters(os.path.join(REPO, name))
        assert p["cost_function"]["type"] == kind
        assert p["stitcher_args"]["stitch_thresh"] == 3 and p["stitcher_args"]["master_stitch_thresh"] == 4
        assert p["time_win"] == 15 and p["master_time_win"] == 20


def run_cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, os.path.join(REPO, "pp_lite.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_cli_writes_rec_and_meta_and_keeps_training_out_of_the_process(scenario_dir, tmp_path):
    pytest.importorskip("runtime.bhattacharyya")
    probe = (
        "import sys, runpy; sys.argv = ['pp_lite.py'] + sys.argv[1:]\n"
        "try:\n    runpy.run_path(%r, run_name='__main__')\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'sklearn', 'training', 'export'})\n"
        "print('HEAVY', bad)\n" % os.path.join(REPO, "pp_lite.py"))
    res = subprocess.run([sys.executable, "-c", probe, "ii", "--config", os.path.join(REPO, "parameters_Bhat.json"),
                          "--tag", "Bhat", "--data", str(scenario_dir), "--out", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "HEAVY []" in res.stdout
    assert "trajectories" in res.stdout and "pairs/s" in res.stdout
    rec = json.loads((tmp_path / "REC_ii_Bhat.json").read_text())
    meta = json.loads((tmp_path / "REC_ii_Bhat.meta.json").read_text())
    assert isinstance(rec, list) and len(rec) == meta["trajectories_out"]
    for key in ("parameters", "cost_function", "skipped", "resampled", "timings", "online_objective",
                "offline_objective", "objective_gap_pct", "cost_pairs", "dropped_short"):
        assert key in meta
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]


def test_cli_errors_are_one_line(tmp_path):
    res = run_cli("iii", "--config", "parameters_Bhat.json", "--tag", "x", "--data", str(tmp_path))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "simulate-scenario iii --seed N" in lines[0] and "make demo" in lines[0]
    (tmp_path / "RAW_i.json").write_text(json.dumps([doc("a", 1000.0, 40), {"_id": "z", "timestamp": []}]))
    res = run_cli("i", "--config", "parameters_Bhat.json", "--tag", "x", "--data", str(tmp_path))
    assert res.returncode == 1 and "'z'" in res.stderr and "x_position" in res.stderr
    assert not (tmp_path / "REC_i_x.json").exists()
    bad_cfg = tmp_path / "cfg.json"
    bad_cfg.write_text(json.dumps({"time_win": 15, "stitcher_mode": "global"}))
    res = run_cli("i", "--config", str(bad_cfg), "--tag", "x", "--data", str(tmp_path))
    assert res.returncode == 1 and "stitcher_mode" in res.stderr
    missing = tmp_path / "cfg_missing_artifact.json"
    missing.write_text(json.dumps(dict(params(), cost_function={"type": "lr", "artifact": str(tmp_path / "nope")})))
    res = run_cli("i", "--config", str(missing), "--tag", "x", "--data", str(tmp_path))
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1 and "nope" in res.stderr
    res = run_cli("--help")
    assert res.returncode == 0 and "--on-bad-fragment" in res.stdout and "--solver" in res.stdout


# ---- any RAW file: --raw FILE [--out FILE], the pp-lite console script's form -----------------------------

def test_raw_file_form_any_name_out_file_and_meta_beside(scenario_dir, tmp_path):
    raw = tmp_path / "some folder" / "my fragments.json"  # any path and name, not RAW_{s}.json
    raw.parent.mkdir()
    raw.write_bytes((scenario_dir / "RAW_ii.json").read_bytes())
    out = tmp_path / "elsewhere" / "stitched.json"
    out.parent.mkdir()
    res = run_cli("--raw", str(raw), "--config", os.path.join(REPO, "parameters_Bhat.json"), "--out", str(out),
                  "--quiet", cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    rec = json.loads(out.read_text())
    meta = json.loads((tmp_path / "elsewhere" / "stitched.meta.json").read_text())
    assert len(rec) == meta["trajectories_out"] > 0
    assert meta["raw_file"] == str(raw) and meta["name"] == "my fragments"
    n_in = len(json.loads(raw.read_text()))
    assert sum(len(d["fragment_ids"]) for d in rec) + meta["dropped_short"] + len(meta["skipped"]) == n_in
    # the same stitch as the scenario form on the same fragments
    res = run_cli("ii", "--config", "parameters_Bhat.json", "--tag", "B", "--data", str(scenario_dir),
                  "--out", str(tmp_path), "--quiet")
    assert res.returncode == 0, res.stderr
    assert [d["fragment_ids"] for d in json.loads((tmp_path / "REC_ii_B.json").read_text())] == \
        [d["fragment_ids"] for d in rec]


def test_raw_file_form_defaults_no_config_and_output_beside_the_raw_file(scenario_dir, tmp_path):
    raw = tmp_path / "RAW_mine.json"
    raw.write_bytes((scenario_dir / "RAW_ii.json").read_bytes())
    res = run_cli("--raw", str(raw), "--quiet", cwd=str(tmp_path))  # reference parameters, Bhattacharyya
    assert res.returncode == 0, res.stderr
    meta = json.loads((tmp_path / "REC_mine_bhattacharyya.meta.json").read_text())
    assert meta["cost_function"]["type"] == "bhattacharyya" and meta["config_file"] is None
    assert meta["parameters"]["stitcher_args"]["stitch_thresh"] == 3
    assert (tmp_path / "REC_mine_bhattacharyya.json").is_file()


def test_raw_file_form_shipped_model_from_another_folder(scenario_dir, tmp_path):
    raw = tmp_path / "frags.json"
    raw.write_bytes((scenario_dir / "RAW_ii.json").read_bytes())
    res = run_cli("--raw", str(raw), "--cost", "mlp", "--tag", "M", "--quiet", cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    meta = json.loads((tmp_path / "REC_frags_M.meta.json").read_text())
    assert meta["cost_function"]["model"] == "mlp" and meta["trajectories_out"] > 0


def test_cli_form_errors(tmp_path):
    res = run_cli("--raw", str(tmp_path / "missing.json"))
    assert res.returncode == 1 and "missing.json not found" in res.stderr and len(res.stderr.splitlines()) == 1
    res = run_cli()
    assert res.returncode == 2 and "either a SCENARIO" in res.stderr
    res = run_cli("ii", "--raw", "x.json")
    assert res.returncode == 2 and "either a SCENARIO" in res.stderr
    res = run_cli("ii", "--config", "parameters_Bhat.json")
    assert res.returncode == 2 and "--tag is required" in res.stderr
    (tmp_path / "obj.json").write_text("{}")
    res = run_cli("--raw", str(tmp_path / "obj.json"))
    assert res.returncode == 1 and "expected a JSON array" in res.stderr
    res = run_cli("--raw", str(tmp_path / "obj.json"), "--out", str(tmp_path))
    assert res.returncode == 1 and "is a folder" in res.stderr


def test_version_and_short_help():
    from runtime import __version__

    res = run_cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"pp_lite.py {__version__}"
    res = run_cli("-h")
    assert res.returncode == 0 and "--raw FILE" in res.stdout


def test_script_under_an_interpreter_without_onnxruntime_says_what_to_do():
    code = ("import sys, runpy\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'onnxruntime':\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "sys.argv = ['pp_lite.py', '--help']\n"
            "runpy.run_path(%r, run_name='__main__')\n" % os.path.join(REPO, "pp_lite.py"))
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"pp_lite.py: error: onnxruntime is not installed for {sys.executable}; run `make` and use "
        ".venv/bin/python pp_lite.py (or .venv/bin/pp-lite), or `pip install .` first"]
