"""Distribution shifts (training/shifts.py) and the shift benchmark's logic (benchmarks/shift.py)."""
from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
import pytest
from click.testing import CliRunner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from benchmarks import shift as bench  # noqa: E402
from runtime.cost import INVALID_COST, load_cost_function  # noqa: E402
from runtime.feed import prepare_fragments  # noqa: E402
from runtime.fragment import Fragment, fragment_id  # noqa: E402
from training import shifts  # noqa: E402
from training import simulate as sim  # noqa: E402
from training.io import gt_id_of  # noqa: E402

PRESET, SEED, DURATION = "ii", 7, 15.0
RANDOM_SHIFTS = ("velocity_noise_x3", "dimension_noise_x2", "camera_offsets", "occlusions")


def _dump(docs) -> str:
    return json.dumps(docs, sort_keys=True)


@pytest.fixture(scope="module")
def nominal():
    gt, raw = sim.simulate(PRESET, SEED, DURATION)
    assert len(raw) > 30
    return gt, raw


def _by_id(docs):
    return {fragment_id(d): d for d in docs}


# ------------------------------------------------------------------------------------ the transforms
@pytest.mark.parametrize("name", shifts.DOCUMENT_SHIFTS)
def test_document_shift_is_deterministic_keeps_gt_and_does_not_mutate(nominal, name):
    gt, raw = nominal
    gt_before, raw_before = _dump(gt), _dump(raw)
    gt1, out1 = shifts.shifted_scenario(name, PRESET, SEED, DURATION, nominal=(gt, raw))
    gt2, out2 = shifts.shifted_scenario(name, PRESET, SEED, DURATION, nominal=(gt, raw))
    assert _dump(out1) == _dump(out2)                       # same (shift, preset, seed) -> same documents
    assert _dump(gt1) == gt_before and _dump(gt2) == gt_before   # GT untouched
    assert _dump(raw) == raw_before                         # input not mutated
    # the output shares nothing mutable with the input: editing it leaves the input as it was
    for doc in out1:
        for value in doc.values():
            if isinstance(value, list) and value:
                if isinstance(value[0], list):
                    value[0].append(0)
                else:
                    value.append(0)
    assert _dump(raw) == raw_before
    # every output document passes the runtime's fragment validation
    fresh = shifts.apply_shift(name, raw, PRESET, SEED)
    for i, doc in enumerate(fresh):
        Fragment.from_document(doc, i)
    prepare_fragments(fresh, on_bad_fragment="fail")


def test_simulating_again_gives_the_same_gt(nominal):
    gt, _ = nominal
    gt_again, _ = shifts.shifted_scenario("velocity_absent", PRESET, SEED, DURATION)
    assert _dump(gt_again) == _dump(gt)


@pytest.mark.parametrize("name", RANDOM_SHIFTS)
def test_random_shifts_depend_on_the_seed(nominal, name):
    _, raw = nominal
    a = shifts.apply_shift(name, raw, PRESET, SEED)
    b = shifts.apply_shift(name, raw, PRESET, SEED + 1)
    assert _dump(a) != _dump(b)
    assert _dump(a) != _dump(raw)


def test_field_shifts(nominal):
    _, raw = nominal
    no_vel = shifts.apply_shift("velocity_absent", raw, PRESET, SEED)
    no_conf = shifts.apply_shift("confidence_absent", raw, PRESET, SEED)
    assert all("velocity" not in d and "detection_confidence" in d for d in no_vel)
    assert all("detection_confidence" not in d and "velocity" in d for d in no_conf)
    rescaled = shifts.apply_shift("confidence_rescaled", raw, PRESET, SEED)
    a, b = shifts.CONFIDENCE_RESCALE
    for old, new in zip(raw, rescaled):
        np.testing.assert_allclose(new["detection_confidence"], a + b * np.asarray(old["detection_confidence"]),
                                   atol=1e-4)
        assert new["x_position"] == old["x_position"] and new["velocity"] == old["velocity"]


def test_velocity_noise_is_about_three_times_the_simulators(nominal):
    _, raw = nominal
    noisy = shifts.apply_shift("velocity_noise_x3", raw, PRESET, SEED)
    extra = np.concatenate([np.asarray(n["velocity"]) - np.asarray(o["velocity"]) for o, n in zip(raw, noisy)])
    old = np.concatenate([np.asarray(o["velocity"]) for o in raw])
    assert (np.concatenate([n["velocity"] for n in noisy]) >= 0).all()
    p = sim.PRESETS[PRESET]
    nominal_sd = math.hypot(p.speed_sigma, p.speed_bias)
    start_sd = getattr(p, "speed_start_sigma", 0.0)      # a start-up error decays within the fragment
    # the added noise has sd sqrt(3^2 - 1) x the simulator's (clipping at 0 ft/s shrinks it a little)
    assert 0.6 * math.sqrt(8) * nominal_sd < np.std(extra) < 1.4 * math.sqrt(8) * math.hypot(nominal_sd, start_sd)
    assert not np.allclose(old, old + extra)


def test_dimension_noise_keeps_boxes_positive(nominal):
    _, raw = nominal
    noisy = shifts.apply_shift("dimension_noise_x2", raw, PRESET, SEED)
    for old, new in zip(raw, noisy):
        for field in ("length", "width", "height"):
            arr = np.atleast_1d(np.asarray(new[field], dtype=float))
            assert (arr > 0).all()
    changed = [np.asarray(n["length"]) - np.asarray(o["length"]) for o, n in zip(raw, noisy)]
    assert np.std(np.concatenate([np.atleast_1d(c) for c in changed])) > 0.1


def test_camera_offsets_are_constant_per_node(nominal):
    _, raw = nominal
    moved = shifts.apply_shift("camera_offsets", raw, PRESET, SEED)
    per_node: dict = {}
    for old, new in zip(raw, moved):
        dx = np.asarray(new["x_position"]) - np.asarray(old["x_position"])
        dy = np.asarray(new["y_position"]) - np.asarray(old["y_position"])
        np.testing.assert_allclose(dx, dx[0], atol=2e-3)
        np.testing.assert_allclose(dy, dy[0], atol=2e-3)
        assert new["starting_x"] == new["x_position"][0] and new["ending_x"] == new["x_position"][-1]
        per_node.setdefault(old["compute_node_id"], set()).add((round(dx[0], 2), round(dy[0], 2)))
    assert len(per_node) > 1
    offsets = []
    for node, values in per_node.items():
        assert len(values) == 1, f"node {node} has more than one offset: {values}"
        (dx, dy), = values
        assert abs(dx) <= shifts.CAMERA_OFFSET_FT[0] + 0.01 and abs(dy) <= shifts.CAMERA_OFFSET_FT[1] + 0.01
        offsets.append((dx, dy))
    assert len(set(offsets)) > 1


def test_occlusions_split_fragments_and_keep_gt_ids(nominal):
    _, raw = nominal
    out = shifts.apply_shift("occlusions", raw, PRESET, SEED)
    before, after = _by_id(raw), _by_id(out)
    assert len(after) == len(out)                           # every _id unique
    new_ids = [fid for fid in after if fid not in before]
    gone = [fid for fid in before if fid not in after]
    assert gone and len(new_ids) == 2 * len(gone)
    # each piece lies inside exactly one removed parent (same samples), with the parent's gt_ids
    sample_owner = {}
    for fid in gone:
        for t, x in zip(before[fid]["timestamp"], before[fid]["x_position"]):
            sample_owner[(t, x)] = fid
    pieces: dict = {}
    for fid in new_ids:
        doc = after[fid]
        samples = list(zip(doc["timestamp"], doc["x_position"]))
        parent = before[sample_owner[samples[0]]]
        assert all(sample_owner[s] == fragment_id(parent) for s in samples)
        assert doc["gt_ids"] == parent["gt_ids"] and len(parent["gt_ids"]) == 1
        assert gt_id_of(doc) == gt_id_of(parent)
        idx = [parent["timestamp"].index(t) for t in doc["timestamp"]]
        assert doc["x_position"] == [parent["x_position"][i] for i in idx]
        assert doc["velocity"] == [parent["velocity"][i] for i in idx]
        assert doc["first_timestamp"] == doc["timestamp"][0] and doc["last_timestamp"] == doc["timestamp"][-1]
        assert len(doc["timestamp"]) >= 4
        pieces.setdefault(fragment_id(parent), []).append(doc)
    for fid, (first, second) in pieces.items():
        first, second = sorted((first, second), key=lambda d: d["timestamp"][0])
        hole = second["timestamp"][0] - first["timestamp"][-1]
        lo, hi = shifts.OCCLUSION_S
        assert lo <= hole <= hi + 0.2, (fid, hole)
    # unsplit fragments are unchanged
    for fid, doc in after.items():
        if fid in before:
            assert _dump(doc) == _dump(before[fid])


def test_simulator_shifts_change_the_traffic_deterministically(nominal):
    gt, raw = nominal
    names = [n for n in shifts.SIMULATOR_SHIFTS if n in shifts.available_shifts()]
    assert "denser_traffic" in names and "speed_regime_swap" in names
    presets_before = dict(sim.PRESETS)
    for name in names:
        gt1, raw1 = shifts.shifted_scenario(name, PRESET, SEED, DURATION)
        gt2, raw2 = shifts.shifted_scenario(name, PRESET, SEED, DURATION)
        assert _dump(raw1) == _dump(raw2) and _dump(gt1) == _dump(gt2)
        assert _dump(raw1) != _dump(raw)
        prepare_fragments(raw1, on_bad_fragment="fail")
    assert sim.PRESETS == presets_before                   # no preset left patched
    dense_gt, _ = shifts.shifted_scenario("denser_traffic", PRESET, SEED, DURATION)
    assert len(dense_gt) > len(gt)

    def mean_speed(docs):
        v = [np.abs(np.diff(d["x_position"]) / np.diff(d["timestamp"])) for d in docs if len(d["timestamp"]) > 1]
        return float(np.mean(np.concatenate(v)))

    swapped_gt, _ = shifts.shifted_scenario("speed_regime_swap", PRESET, SEED, DURATION)
    assert shifts.SPEED_REGIME_SOURCE[PRESET] == "i"
    assert mean_speed(swapped_gt) > 1.5 * mean_speed(gt)   # snow noise, free-flow speeds


def test_outside_error_model_is_beyond_the_ranges():
    if "error_model_outside" not in shifts.available_shifts():
        pytest.skip("training.simulate has no ERROR_RANGES")
    model = shifts.outside_error_model()
    assert model
    for name, value in model.items():
        _, hi = sim.ERROR_RANGES[name]
        for v, h in zip(np.atleast_1d(value), np.atleast_1d(hi)):
            assert v == pytest.approx(shifts.OUTSIDE_RANGE_FACTOR * h) and (v > h or h == 0)


def test_unknown_names_are_refused(nominal):
    _, raw = nominal
    with pytest.raises(ValueError, match="unknown shift"):
        shifts.apply_shift("rain", raw, PRESET, SEED)
    with pytest.raises(ValueError, match="unknown scenario"):
        shifts.apply_shift("nominal", raw, "iv", SEED)
    with pytest.raises(ValueError, match="shifted_scenario"):
        shifts.apply_shift("denser_traffic", raw, PRESET, SEED)


# ------------------------------------------------------------------------------------ finite costs
def _cost_configs():
    configs = [("bhattacharyya", {"type": "bhattacharyya"})]
    folder = os.path.join(REPO, "artifacts")
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if os.path.isfile(os.path.join(folder, name, "manifest.json")) and not name.endswith(".prev"):
            configs.append((name, {"type": "onnx", "artifact": os.path.join(folder, name)}))
    return configs


@pytest.fixture(scope="module")
def candidate_groups(nominal):
    """(later fragment, its candidate earlier fragments) for the shifted field variants, as pp_lite feeds them."""
    _, raw = nominal
    variants = {}
    for name in ("velocity_absent", "confidence_absent", "confidence_rescaled"):
        docs, _ = prepare_fragments(shifts.apply_shift(name, raw, PRESET, SEED))
        both = [{k: v for k, v in d.items() if k not in ("velocity", "detection_confidence")} for d in docs]
        for label, ds in ((name, docs), ("both_absent", both)):
            groups = []
            for b in ds:
                cands = [a for a in ds if a["direction"] == b["direction"] and a is not b
                         and 0 <= b["timestamp"][0] - a["timestamp"][-1] <= 15]
                if cands:
                    groups.append((b, cands))
            variants[label] = groups[:40]
    return variants


@pytest.mark.parametrize("key,config", _cost_configs(), ids=[k for k, _ in _cost_configs()])
def test_costs_are_finite_without_tracker_fields(candidate_groups, key, config):
    fn = load_cost_function(config)
    param = {"cx": 0.2, "mx": 0.1, "cy": 2.0, "my": 0.1}
    for variant, groups in candidate_groups.items():
        assert sum(len(c) for _, c in groups) > 20
        batch_all = []
        for b, cands in groups:
            batch = np.asarray(fn.compute_costs(cands, b, 15, param), dtype=float)
            single = np.array([fn.compute_cost(a, b, 15, param) for a in cands], dtype=float)
            assert np.isfinite(batch).all() and np.isfinite(single).all(), (key, variant)
            np.testing.assert_allclose(batch, single, rtol=1e-4, atol=1e-3, err_msg=f"{key} {variant}")
            batch_all.append(batch)
        costs = np.concatenate(batch_all)
        valid = costs[costs < INVALID_COST]       # INVALID_COST (finite) is allowed, e.g. touching fragments
        assert valid.size >= 0.95 * costs.size and np.ptp(valid) > 0, (key, variant)


# ------------------------------------------------------------------------------------ the benchmark
def _row(preset, shift, cost, seed, idf1, idsw=0, tp=9, pos=10, fp=1, neg=100):
    return {"preset": preset, "shift": shift, "cost": cost, "seed": seed, "idf1": idf1, "idsw": idsw, "mota": idf1,
            "positives": pos, "negatives": neg, "tp": tp, "fp": fp, "nonfinite": 0}


def test_worst_case_and_pair_view_on_a_tiny_table():
    rows = [
        _row("i", "nominal", "Bhat", 1, 0.90), _row("i", "nominal", "Bhat", 2, 0.80),
        _row("i", "nominal", "LR", 1, 0.95), _row("i", "nominal", "LR", 2, 0.85, tp=10),
        _row("i", "velocity_absent", "Bhat", 1, 0.90), _row("i", "velocity_absent", "Bhat", 2, 0.80),
        _row("i", "velocity_absent", "LR", 1, 0.80), _row("i", "velocity_absent", "LR", 2, 0.80, fp=3),
        _row("ii", "nominal", "Bhat", 1, 0.70), _row("ii", "nominal", "LR", 1, 0.698),
    ]
    agg = bench.aggregate(rows)
    bench.add_deltas(agg)
    cell = {(r["preset"], r["shift"], r["cost"]): r for r in agg}
    assert cell[("i", "nominal", "LR")]["idf1"] == pytest.approx(0.90)
    assert cell[("i", "nominal", "LR")]["d_idf1"] == pytest.approx(0.05)
    assert cell[("i", "velocity_absent", "LR")]["d_idf1"] == pytest.approx(-0.05)
    assert cell[("i", "nominal", "LR")]["tpr"] == pytest.approx(19 / 20)      # pooled over seeds
    assert cell[("i", "velocity_absent", "LR")]["fpr"] == pytest.approx(4 / 200)
    (worst,) = bench.worst_cases(agg)
    assert worst["cost"] == "LR" and worst["worst"] == pytest.approx(-0.05)
    assert worst["worst_cell"] == ["i", "velocity_absent"]
    assert worst["cells"] == 3 and worst["cells_below"] == 1 and not worst["passes"]
    assert worst["nominal_delta"] == pytest.approx((0.05 - 0.002) / 2)
    pv = {(g["shift"], g["cost"]): g for g in bench.pair_view(agg)}
    assert pv[("nominal", "LR")]["tpr"] == pytest.approx((19 + 9) / 30)
    assert pv[("velocity_absent", "Bhat")]["fpr"] == pytest.approx(2 / 200)
    # a learned cost within the tolerance everywhere passes
    ok = [r for r in rows if r["shift"] == "nominal"]
    (w,) = bench.worst_cases(bench.aggregate(ok))
    assert w["passes"] and w["worst"] == pytest.approx(-0.002)
    md = "\n".join(bench.render_markdown(agg, bench.worst_cases(agg), bench.pair_view(agg), ["Bhat", "LR"],
                                         ["nominal", "velocity_absent"], ["i", "ii"]))
    assert "| LR | -0.050 | i / velocity_absent |" in md
    png = bench.heatmap_png(agg, ["Bhat", "LR"], ["nominal", "velocity_absent"], ["i", "ii"], "t")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_pair_labels_follow_training_pairs(nominal):
    from training.pairs import mine_pairs

    _, raw = nominal
    mined = mine_pairs(raw, "x")
    labels = bench.PairLabels(raw)
    ids = [fragment_id(d) for d in mined.docs]
    got = np.array([labels.label(ids[a], ids[b]) for a, b in zip(mined.a.tolist(), mined.b.tolist())])
    np.testing.assert_array_equal(got, mined.label)
    assert (got == 1).any() and (got == 0).any()
    pairs = [(ids[a], ids[b], c) for a, b, c in zip(mined.a.tolist(), mined.b.tolist(), mined.bhat.tolist())]
    counts = bench.pair_counts(pairs, labels, 3.0)
    assert counts["positives"] == int((mined.label == 1).sum())
    assert counts["tp"] == int(((mined.label == 1) & (mined.bhat <= 3.0)).sum())
    assert counts["fp"] == int(((mined.label == 0) & (mined.bhat <= 3.0)).sum())


def test_recording_cost_passes_costs_through(nominal):
    _, raw = nominal
    docs, _ = prepare_fragments(raw)
    inner = load_cost_function({"type": "bhattacharyya"})
    rec = bench.RecordingCost(inner)
    b = docs[-1]
    cands = [a for a in docs if a["direction"] == b["direction"] and 0 <= b["timestamp"][0] - a["timestamp"][-1] <= 15]
    out = rec.compute_costs(cands, b, 15, None)
    np.testing.assert_array_equal(out, inner.compute_costs(cands, b, 15, None))
    assert [p[:2] for p in rec.pairs] == [(fragment_id(a), fragment_id(b)) for a in cands]


def test_cli_help():
    result = CliRunner().invoke(bench.main, ["--help"])
    assert result.exit_code == 0
    for option in ("--quick", "--artifacts", "--costs", "--shifts", "--seeds"):
        assert option in result.output


def test_cli_refuses_unknown_shift_and_cost(tmp_path):
    r = CliRunner().invoke(bench.main, ["--shifts", "rain", "--out", str(tmp_path)])
    assert r.exit_code != 0 and "unknown shift" in r.output
    r = CliRunner().invoke(bench.main, ["--costs", "nope", "--artifacts", str(tmp_path), "--out", str(tmp_path)])
    assert r.exit_code != 0 and "not available" in r.output


def test_cli_quick_run_writes_tables_and_heatmap(tmp_path):
    r = CliRunner().invoke(bench.main, ["--quick", "--presets", "ii", "--shifts", "nominal,velocity_absent",
                                        "--artifacts", str(tmp_path / "none"), "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    payload = json.loads((tmp_path / "shift_quick.json").read_text())
    assert payload["costs"] == ["Bhat"] and payload["shifts"] == ["nominal", "velocity_absent"]
    assert len(payload["rows"]) == 2 and all(0 < row["idf1"] <= 1 for row in payload["rows"])
    assert (tmp_path / "shift_quick.png").read_bytes()[:4] == b"\x89PNG"
    md = (tmp_path / "shift_quick.md").read_text()
    assert "Pair view" in md and "| nominal |" in md
    # --from-json rewrites the report from the numbers alone
    (tmp_path / "shift_quick.md").unlink()
    (tmp_path / "shift_quick.png").unlink()
    r = CliRunner().invoke(bench.main, ["--from-json", str(tmp_path / "shift_quick.json")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "shift_quick.md").read_text() == md
    assert (tmp_path / "shift_quick.png").read_bytes()[:4] == b"\x89PNG"


def test_discover_costs_skips_promote_backups(tmp_path):
    import shutil

    repo_artifacts = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "artifacts")
    shutil.copytree(os.path.join(repo_artifacts, "lr"), tmp_path / "lr")
    shutil.copytree(os.path.join(repo_artifacts, "lr"), tmp_path / "lr.prev")
    costs, notes = bench.discover_costs(str(tmp_path))
    assert [key for key, _, _ in costs] == ["bhat", "lr"]
    assert any(n.startswith("lr.prev: skipped") for n in notes)
