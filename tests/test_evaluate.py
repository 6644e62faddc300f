"""training.evaluate: I-24 tracking metrics on hand-built GT/REC with known answers, cross-checked with motmetrics."""
from __future__ import annotations

import json

import motmetrics as mm
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from training.evaluate import (_earliest_time, _match, evaluate_tracking, frame_boxes, iou_matrix, main)

T0 = 1_623_877_175.0
DT = 0.04


def track(fid, frames, x0=100.0, y=6.0, v=50.0, L=15.0, W=6.0, direction=1, dx=0.0):
    frames = np.asarray(frames)
    t = T0 + frames * DT
    return {"_id": fid, "timestamp": t.tolist(), "x_position": (x0 + direction * v * frames * DT + dx).tolist(),
            "y_position": [y] * frames.size, "length": L, "width": W, "direction": direction}


def piecewise(fid, pieces, direction=1):
    """A tracker trajectory made of pieces [(frames, gt_kwargs, dx)], following given GT motions."""
    t, x, y = [], [], []
    for frames, kw, dx in pieces:
        d = track("tmp", frames, dx=dx, **kw)
        t += d["timestamp"]
        x += d["x_position"]
        y += d["y_position"]
    order = np.argsort(t)
    return {"_id": fid, "timestamp": list(np.asarray(t)[order]), "x_position": list(np.asarray(x)[order]),
            "y_position": list(np.asarray(y)[order]), "length": 15.0, "width": 6.0, "direction": direction}


A = dict(y=6.0)
B = dict(y=18.0)   # next lane: footprints of A and B never overlap
F = dict(y=42.0)


def scene():
    """GT: A and B, 100 frames each. r1 follows A then jumps to B (frames 60-64 missing), r2 follows B
    then A until frame 79 (1.5 ft off in x), r3 is a 10-frame false track in an empty lane."""
    gt = [track("A", range(100), **A), track("B", range(100), **B)]
    r1 = piecewise("r1", [(range(50), A, 0.0), ([f for f in range(50, 100) if not 60 <= f < 65], B, 0.0)])
    r2 = piecewise("r2", [(range(50), B, 1.5), (range(50, 80), A, 1.5)])
    r3 = track("r3", range(20, 30), **F)
    return gt, [r1, r2, r3]


IOU_SHIFTED = 13.5 / 16.5  # 15 ft boxes 1.5 ft apart, same lane


def test_known_metrics_of_a_hand_built_scene():
    gt, rec = scene()
    r = evaluate_tracking(gt, rec)
    assert r["idsw"] == 2                      # both identities swap at frame 50
    assert r["fn"] == 5 + 20                   # B frames 60-64, A frames 80-99
    assert r["fp"] == 10
    assert r["mota"] == pytest.approx(1 - (25 + 10 + 2) / 200)
    tp = 200 - 25
    assert r["precision"] == pytest.approx(tp / (tp + 10)) and r["recall"] == pytest.approx(tp / 200)
    matched_shifted = 50 + 30                  # r2's frames
    assert r["motp"] == pytest.approx((matched_shifted * IOU_SHIFTED + (tp - matched_shifted)) / tp)
    assert r["idf1"] == pytest.approx(2 * 100 / (200 + 185))  # A-r1 50 + B-r2 50 frames
    assert r["fragmentations"] == 1            # B: tracked, lost 60-64, tracked again
    assert r["gt_trajectories"] == 2 and r["rec_trajectories"] == 3
    assert r["traj_per_gt"] == pytest.approx(1.5) and r["sw_per_gt"] == pytest.approx(1.0)
    assert r["fgmt_per_gt"] == pytest.approx(0.5)
    assert r["obj_idsw"] == 2


def test_hand_built_scene_against_motmetrics_own_accumulator():
    """The same scene typed in as distance matrices, straight into motmetrics (integer ids: motmetrics
    1.4 stores ids as floats, and pandas 3 refuses string ids there)."""
    gt, rec = scene()
    acc = mm.MOTAccumulator(auto_id=False)
    nan = np.nan
    d_shift = 1 - IOU_SHIFTED
    for f in range(100):
        hyps, rows = [], {"A": [], "B": []}
        r1_on = f < 50 or not 60 <= f < 65
        if r1_on:
            hyps.append(11)
            rows["A"].append(0.0 if f < 50 else nan)
            rows["B"].append(nan if f < 50 else 0.0)
        if f < 80:
            hyps.append(12)
            rows["A"].append(nan if f < 50 else d_shift)
            rows["B"].append(d_shift if f < 50 else nan)
        if 20 <= f < 30:
            hyps.append(13)
            rows["A"].append(nan)
            rows["B"].append(nan)
        acc.update([1, 2], hyps, [rows["A"], rows["B"]], frameid=f)
    ref = mm.metrics.create().compute(acc, metrics=["mota", "num_switches", "num_misses", "num_false_positives",
                                                    "idf1", "motp", "num_fragmentations"], name="x").iloc[0]
    r = evaluate_tracking(gt, rec)
    assert r["mota"] == pytest.approx(ref["mota"])
    assert r["idsw"] == ref["num_switches"] and r["fn"] == ref["num_misses"]
    assert r["fp"] == ref["num_false_positives"] and r["fragmentations"] == ref["num_fragmentations"]
    assert r["idf1"] == pytest.approx(ref["idf1"])
    assert r["motp"] == pytest.approx(1 - ref["motp"])


def _random_scene(seed, n=25):
    rng = np.random.default_rng(seed)
    gt, rec = [], []
    for i in range(n):
        start = int(rng.integers(0, 150))
        frames = np.arange(start, start + int(rng.integers(20, 120)))
        lane = dict(y=float(rng.choice([6.0, 18.0, 30.0])), x0=float(rng.uniform(0, 400)),
                    v=float(rng.uniform(30, 90)))
        gt.append(track(f"g{i}", frames, **lane))
        cuts = np.sort(rng.choice(frames[1:-1], size=int(rng.integers(0, 3)), replace=False))
        for k, part in enumerate(np.split(frames, cuts)):
            if part.size >= 4:
                rec.append(track(f"r{i}_{k}", part, dx=float(rng.normal(0, 3)), **lane))
    return gt, rec


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_engine_events_identical_to_motmetrics_accumulator(seed):
    gt, rec = _random_scene(seed)
    t_ref = _earliest_time(gt, rec)
    g, r = frame_boxes(gt, t_ref), frame_boxes(rec, t_ref)
    fast = _match(g, r, 0.3, "fast", False)
    ref = _match(g, r, 0.3, "motmetrics", False)
    pd.testing.assert_frame_equal(fast.events, ref.events, check_dtype=False, check_index_type=False,
                                  check_categorical=False)
    assert sorted(fast.switches) == sorted(ref.switches)
    a = evaluate_tracking(gt, rec)
    b = evaluate_tracking(gt, rec, engine="motmetrics")
    for key in ("mota", "motp", "idf1", "fp", "fn", "idsw", "fragmentations", "mostly_tracked"):
        assert a[key] == pytest.approx(b[key]), key


def test_ground_truth_scores_perfectly_against_itself():
    gt, _ = _random_scene(4)
    r = evaluate_tracking(gt, gt)
    assert r["mota"] == 1.0 and r["idf1"] == 1.0 and r["motp"] == pytest.approx(1.0)
    assert r["idsw"] == r["fp"] == r["fn"] == 0 and r["traj_per_gt"] == 1.0


def test_frame_conventions_last_sample_wins_and_default_dimensions():
    doc = {"_id": {"$oid": "x"}, "timestamp": [T0, T0 + 0.01, T0 + 0.04], "x_position": [0.0, 5.0, 9.0],
           "y_position": [1.0, 1.0, 1.0], "direction": 1}
    boxes = frame_boxes([doc], T0)
    assert boxes.frame.tolist() == [0, 1] and boxes.x.tolist() == [5.0, 9.0]  # 0.01 s rounds to frame 0
    assert boxes.length.tolist() == [5.0, 5.0] and boxes.width.tolist() == [2.0, 2.0]
    iou = iou_matrix(np.array([[0.0, 0.0, 4.0, 2.0]]), np.array([[1.0, 0.0, 4.0, 2.0], [10.0, 0.0, 4.0, 2.0]]))
    np.testing.assert_allclose(iou, [[6.0 / 10.0, 0.0]])


def test_cli_prints_saves_json_and_plot(tmp_path):
    gt, rec = scene()
    (tmp_path / "GT.json").write_text(json.dumps(gt))
    (tmp_path / "REC.json").write_text(json.dumps(rec))
    out, png = tmp_path / "m.json", tmp_path / "ts.png"
    res = CliRunner().invoke(main_command(), ["--gt", str(tmp_path / "GT.json"), "--rec", str(tmp_path / "REC.json"),
                                              "--json", str(out), "--plot", str(png)])
    assert res.exit_code == 0, res.output
    assert "MOTA" in res.output and "IDsw" in res.output
    saved = json.loads(out.read_text())
    assert saved["idsw"] == 2 and saved["mota"] == pytest.approx(0.815)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bad_input_is_one_line_error(tmp_path):
    res = CliRunner().invoke(main_command(), ["--gt", str(tmp_path / "missing.json"), "--rec", str(tmp_path / "x")])
    assert res.exit_code != 0 and "not found" in res.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"_id": "z", "timestamp": [1.0, 0.5], "x_position": [0, 1], "y_position": [0, 1],
                                "direction": 1}]))
    res = CliRunner().invoke(main_command(), ["--gt", str(bad), "--rec", str(bad)])
    assert res.exit_code != 0 and "'z'" in res.output and "timestamp" in res.output


def main_command():
    from training.evaluate import _click_main
    return _click_main()


def test_main_is_click_entry_point():
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0


def test_hota_plumbing_with_a_stand_in_trackeval(monkeypatch):
    """TrackEval is optional and not installed here: check what evaluate hands it (contiguous ids,
    one IoU matrix per frame) with a stand-in that records the call."""
    import sys
    import types

    seen = {}

    class HOTA:
        def eval_sequence(self, data):
            seen.update(data)
            return {"HOTA": np.full(19, 0.5), "DetA": np.full(19, 0.6), "AssA": np.full(19, 0.4),
                    "LocA": np.full(19, 0.9)}

    metrics = types.ModuleType("trackeval.metrics")
    metrics.HOTA = HOTA
    package = types.ModuleType("trackeval")
    package.metrics = metrics
    monkeypatch.setitem(sys.modules, "trackeval", package)
    monkeypatch.setitem(sys.modules, "trackeval.metrics", metrics)
    gt, rec = scene()
    r = evaluate_tracking(gt, rec)
    assert (r["hota"], r["deta"], r["assa"], r["loca"]) == pytest.approx((0.5, 0.6, 0.4, 0.9))
    assert seen["num_timesteps"] == 100 and seen["num_gt_ids"] == 2 and seen["num_tracker_ids"] == 3
    assert seen["num_gt_dets"] == 200 and seen["num_tracker_dets"] == 185
    assert all(s.shape == (len(g), len(t)) for g, t, s in
               zip(seen["gt_ids"], seen["tracker_ids"], seen["similarity_scores"]))
    assert set(np.concatenate(seen["tracker_ids"]).tolist()) == {0, 1, 2}
    assert "trackeval HOTA" in r["evaluator"]


# ---- inputs that cannot be scored: refused (or warned about) before any matching --------------------------

def test_check_inputs_refuses_raw_or_rec_as_gt_and_disjoint_times():
    from training.evaluate import check_inputs

    gt, rec = scene()
    assert check_inputs(gt, rec) == []
    raw = [dict(d, gt_ids=[[{"$oid": "g"}]]) for d in rec]
    with pytest.raises(ValueError, match=r"GT holds RAW fragments \(\d+ of \d+ documents have gt_ids\), not ground "
                                         r"truth: pass the fragments pp-lite stitches as --rec"):
        check_inputs(raw, gt)
    with pytest.raises(ValueError, match="GT holds REC trajectories .* fragment_ids"):
        check_inputs([dict(d, fragment_ids=["a"]) for d in rec], gt)
    later = [dict(d, timestamp=[t + 3600.0 for t in d["timestamp"]]) for d in rec]  # another scenario's clock
    with pytest.raises(ValueError, match=r"GT \(t 1623877175\.00 to \d+\.\d\d\) and REC \(t 1623880775\.00 to "
                                         r"\d+\.\d\d\) do not overlap in time"):
        check_inputs(gt, later)
    half = [dict(d, timestamp=d["timestamp"][: len(d["timestamp"]) // 3]) for d in rec]
    for d in half:
        d["x_position"], d["y_position"] = d["x_position"][: len(d["timestamp"])], d["y_position"][: len(d["timestamp"])]
    warnings = check_inputs(gt, half)
    assert len(warnings) == 1 and "REC overlaps only" in warnings[0] and "np." not in warnings[0]


def test_cli_refuses_raw_as_gt_and_another_scenarios_file(tmp_path):
    gt, rec = scene()
    (tmp_path / "RAW.json").write_text(json.dumps([dict(d, gt_ids=[[{"$oid": "g"}]]) for d in rec]))
    (tmp_path / "GT.json").write_text(json.dumps(gt))
    (tmp_path / "OTHER.json").write_text(json.dumps([dict(d, timestamp=[t - 9e6 for t in d["timestamp"]])
                                                     for d in gt]))
    res = CliRunner().invoke(main_command(), ["--gt", str(tmp_path / "RAW.json"), "--rec", str(tmp_path / "GT.json")])
    assert res.exit_code == 1 and "RAW.json holds RAW fragments" in res.output and "MOTA" not in res.output
    res = CliRunner().invoke(main_command(), ["--gt", str(tmp_path / "GT.json"), "--rec", str(tmp_path / "OTHER.json")])
    assert res.exit_code == 1 and "do not overlap in time" in res.output and "MOTA" not in res.output


def test_cli_warns_when_nothing_matches(tmp_path):
    gt, rec = scene()
    elsewhere = [dict(d, y_position=[y + 500.0 for y in d["y_position"]]) for d in rec]  # same times, other road
    (tmp_path / "GT.json").write_text(json.dumps(gt))
    (tmp_path / "FAR.json").write_text(json.dumps(elsewhere))
    res = CliRunner().invoke(main_command(), ["--gt", str(tmp_path / "GT.json"), "--rec", str(tmp_path / "FAR.json")])
    assert res.exit_code == 0 and "warning: no tracker box matched a GT box (IoU >= 0.3)" in res.output
    (tmp_path / "REC.json").write_text(json.dumps(rec))
    res = CliRunner().invoke(main_command(), ["--gt", str(tmp_path / "GT.json"), "--rec", str(tmp_path / "REC.json")])
    assert res.exit_code == 0 and "warning" not in res.output


def test_cli_version():
    from runtime import __version__

    res = CliRunner().invoke(main_command(), ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"evaluate, version {__version__}"
