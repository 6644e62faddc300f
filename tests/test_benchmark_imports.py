"""Smoke tests of benchmarks/tracking.py and benchmarks/models.py: they import, and a small run of each works.

The full benchmarks take minutes; these run one short scenario and the shipped manifests, so a
broken import or a renamed field fails `make test` rather than the next person who runs them.
"""
from __future__ import annotations

import json
import os
import sys

import pytest
from click.testing import CliRunner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import pp_lite  # noqa: E402
from benchmarks import models, tracking  # noqa: E402

ARTIFACTS = os.path.join(REPO, "artifacts")
SHIPPED = [k for k in models.KINDS if os.path.isfile(os.path.join(ARTIFACTS, k, "manifest.json"))]


def test_tracking_one_short_scenario_all_reference_methods(tmp_path):
    methods, notes = tracking._methods(str(tmp_path), offline_costs=False)  # no artifacts here: references only
    assert len(notes) == len(tracking.LEARNED) and all("skipped, no artifact" in n for n in notes)
    params = pp_lite.load_parameters(os.path.join(REPO, "parameters_Bhat.json"))
    said = []
    rows = tracking.run_instance("ii", 101, 10.0, methods, params, said.append)
    by = {(r["method"], r["solver"]): r for r in rows}
    assert set(by) == {(label, solver) for label, solver, _ in methods}
    for row in rows:
        assert 0.0 <= row["idf1"] <= 1.0 and row["scenario"] == "ii" and row["seed"] == 101
    # the oracle groups fragments by their true vehicle: no stitcher does better on identity
    oracle = by[("oracle (GT grouping)", "-")]["idf1"]
    assert oracle >= by[("Bhat", "online")]["idf1"] - 1e-9 and oracle >= by[("RAW (as-is)", "-")]["idf1"]
    assert by[("perfect cost", "online")]["cost_pairs"] > 0 and by[("Bhat", "online")]["cost_pairs"] > 0
    agg = tracking.aggregate(rows + [dict(r, seed=102) for r in rows])
    assert len(agg) == len(rows) and all(a["seeds"] == [101, 102] for a in agg)
    assert agg[0]["idf1"] == pytest.approx(rows[0]["idf1"])
    table = tracking.render_table(agg, markdown=True)
    assert table.startswith("| scenario | method | solver | MOTA | IDF1") and "oracle (GT grouping)" in table
    assert said and said[0].startswith("ii/seed 101:")


@pytest.mark.skipif(not SHIPPED, reason="no shipped artifact under artifacts/")
def test_tracking_loads_every_shipped_artifact():
    methods, notes = tracking._methods(ARTIFACTS, offline_costs=False)
    learned = {opts["config"]["type"] for _, _, opts in methods if opts.get("config", {}).get("type") != "bhattacharyya"
               and opts["kind"] == "cost"}
    assert learned == set(SHIPPED), notes


def test_models_tables_from_the_shipped_manifests(tmp_path):
    out = tmp_path / "models.md"
    done = CliRunner().invoke(models.main, ["--runs", str(tmp_path / "no-runs"), "--artifacts", ARTIFACTS,
                                            "--out", str(out)])
    assert done.exit_code == 0, done.output
    text = out.read_text()
    assert "## Pair classification (test split)" in text and "## Calibration at the stitcher thresholds" in text
    calibration = models.calibration_table(ARTIFACTS)
    for kind in SHIPPED:
        with open(os.path.join(ARTIFACTS, kind, "manifest.json"), encoding="utf-8") as fh:
            cal = json.load(fh)["calibration"]
        row = next(line for line in calibration.splitlines() if line.startswith(f"| {models.NAMES[kind]} |"))
        assert f"| {cal['z_star']:.3f} |" in row and f"| {cal['s']:.3f} |" in row
    assert calibration.count("| calibration |") == len(SHIPPED) and calibration.count("| test |") == len(SHIPPED)
    # a run folder without metrics.json adds no row; the table is its header only
    assert models.classification_table([("lr", str(tmp_path / "no-runs" / "lr"))]).count("\n") == 1
    runs = models.shipped_runs(str(tmp_path / "no-runs"), None)
    assert runs == {k: str(tmp_path / "no-runs" / k) for k in models.KINDS}
