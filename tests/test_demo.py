"""`make demo`'s code path end to end on the tiny profile: simulate, mine, train all five models, export,
stitch with pp_lite, evaluate, and a summary that has a row per model and points at every picture."""
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from workflows.demo import KINDS, LABELS, PROFILES, headline_table, main, meaning, run_demo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    dirs = {k: str(root / k) for k in ("data", "runs", "artifacts")}
    summary = run_demo(dirs["data"], dirs["runs"], dirs["artifacts"], profile="tiny", progress=False,
                       say=lambda line: None)
    return summary, dirs


@pytest.mark.slow
def test_tiny_demo_trains_exports_and_scores_every_model(demo):
    summary, d = demo
    for kind in KINDS:
        run = os.path.join(d["runs"], kind)
        assert os.path.isfile(os.path.join(run, "metrics.json")), kind
        assert os.path.isfile(os.path.join(run, "evaluation.png")), kind
        if kind != "lr":
            assert os.path.isfile(os.path.join(run, "curves.png")), kind
        artifact = os.path.join(d["artifacts"], kind)
        manifest = json.load(open(os.path.join(artifact, "manifest.json")))
        assert manifest["model"] == kind and os.path.isfile(os.path.join(artifact, "calibration.png"))
    # the stitching: Bhattacharyya and every learned cost on each preset of the profile
    presets = PROFILES["tiny"].data["presets"]
    costs = ["Bhattacharyya"] + [LABELS[k] for k in KINDS]
    assert sorted((r["preset"], r["cost"]) for r in summary["tracking"]) == sorted((p, c) for p in presets for c in costs)
    for r in summary["tracking"]:
        assert 0.0 <= r["idf1"] <= 1.0 and r["idsw"] >= 0 and os.path.isfile(r["rec"])
    # the headline table has one row per cost (the baseline and every model)
    rows = summary["table"].splitlines()[2:]
    assert [row.split()[0] for row in rows] == costs
    assert summary["meaning"].startswith("The learned costs beat the Bhattacharyya baseline's IDF1 in ")


@pytest.mark.slow
def test_tiny_demo_summary_points_at_every_picture(demo):
    summary, d = demo
    pictures = summary["pictures"]
    assert all(os.path.isfile(p) for p in pictures)
    names = {os.path.relpath(p, d["runs"]) if p.startswith(d["runs"]) else os.path.relpath(p, d["artifacts"])
             for p in pictures}
    assert os.path.join("tracking", "time_space_ii_Bhattacharyya.png") in names       # scenario ii, baseline
    assert sum(n.startswith(os.path.join("tracking", "time_space_ii_")) for n in names) == 2  # and the best model
    assert {os.path.join(k, "calibration.png") for k in KINDS} <= names
    md = open(os.path.join(d["runs"], "demo_summary.md")).read()
    assert summary["table"] in md and all(p in md for p in pictures)
    stored = json.load(open(os.path.join(d["runs"], "demo_summary.json")))
    assert [s["stage"] for s in stored["stages"]] == ["simulate", "mine", "train", "export", "stitch"]
    assert stored["peak_rss_mb"]["self"] > 0


def test_headline_table_and_meaning_read_the_numbers():
    rows = [{"preset": p, "cost": c, "idf1": v, "idsw": s} for p, c, v, s in (
        ("i", "Bhattacharyya", 0.90, 10), ("i", "MLP", 0.95, 4), ("ii", "Bhattacharyya", 0.80, 7), ("ii", "MLP", 0.70, 9))]
    table = headline_table(rows, ("i", "ii"))
    lines = table.splitlines()
    assert "free flow (i)" in lines[0] and "snow (ii)" in lines[0]
    assert lines[2].split() == ["Bhattacharyya", "0.900", "10", "0.800", "7"]
    assert lines[3].split() == ["MLP", "0.950", "4", "0.700", "9"]
    text = meaning(rows, ("i", "ii"), PROFILES["full"])
    assert "in 1 of 2" in text and "largest gain is MLP on free flow (i) (0.900 -> 0.950)" in text
    assert "largest loss MLP on snow (ii) (0.800 -> 0.700)" in text


def test_demo_command_refuses_an_unknown_model_in_one_line():
    out = CliRunner().invoke(main, ["--models", "mlp,gbm"])
    assert out.exit_code == 2 and "unknown model kind(s) gbm" in out.output and "Traceback" not in out.output


def test_training_demo_is_an_alias_of_the_workflow():
    for module in ("workflows.demo", "training.demo"):
        out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=REPO,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        assert "--full" in out.stdout and "--tiny" in out.stdout
