"""Tests of the I-24 scenario simulator: schema, determinism, traffic physics and tracking-error targets."""
from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from runtime.fragment import Fragment
from training.io import gt_id_of, load_fragments, save_fragments
from training.simulate import PRESETS, ScenarioPreset, main, scenario_stats, simulate, write_scenario

# Published sizes of the real I-24 validation sets (REFERENCE.md §7.1): GT vehicles, RAW fragments.
REAL_SIZES = {"i": (313, 789), "ii": (99, 411), "iii": (266, 1112)}
# ii: more than the real 4.2, since the real pairs ask for 2 s fragments (docs/realism.md, limitations).
FRAGMENTS_PER_VEHICLE = {"i": (2.0, 3.2), "ii": (3.4, 6.8), "iii": (3.4, 6.0)}
# iii: eastbound flows freely, westbound is congested (the real pairs' speeds, docs/realism.md).
SPEED_MEAN = {"i": (95.0, 115.0), "ii": (30.0, 45.0), "iii": (40.0, 75.0)}
OID = re.compile(r"^[0-9a-f]{24}$")


@pytest.fixture(scope="module")
def scenario():
    """Each preset simulated once with seed 0 (a few seconds each), shared by the tests below."""
    cache = {}

    def get(name):
        if name not in cache:
            gt, raw = simulate(name, 0)
            cache[name] = (gt, raw, scenario_stats(gt, raw))
        return cache[name]

    return get


@pytest.mark.parametrize("name", ["i", "ii", "iii"])
def test_every_document_validates_and_has_the_i24_fields(scenario, name):
    gt, raw, _ = scenario(name)
    for doc in gt + raw:
        frag = Fragment.from_document(doc)
        assert OID.match(doc["_id"]["$oid"])
        assert doc["first_timestamp"] == doc["timestamp"][0] and doc["last_timestamp"] == doc["timestamp"][-1]
        assert doc["starting_x"] == doc["x_position"][0] and doc["ending_x"] == doc["x_position"][-1]
        assert isinstance(doc["compute_node_id"], int)
        assert frag.length is not None and frag.width is not None and frag.height is not None
    for doc in gt:
        assert "velocity" not in doc and "detection_confidence" not in doc and "gt_ids" not in doc
        assert doc["coarse_vehicle_class"] in range(6)
    for doc in raw:
        frag = Fragment.from_document(doc)
        assert frag.n >= 2
        assert frag.velocity is not None and (frag.velocity >= 0).all()
        assert frag.confidence is not None and ((frag.confidence > 0) & (frag.confidence <= 1)).all()
        assert isinstance(doc["local_fragment_id"], int)
        assert all(len(entry) == 1 and OID.match(entry[0]["$oid"]) for entry in doc["gt_ids"])
        assert gt_id_of(doc) == doc["gt_ids"][0][0]["$oid"]
    ids = [d["_id"]["$oid"] for d in gt + raw]
    assert len(set(ids)) == len(ids)
    # RAW comes in the order a tracker emits fragments: by end time.
    ends = [d["last_timestamp"] for d in raw]
    assert ends == sorted(ends)


@pytest.mark.parametrize("name", ["i", "ii", "iii"])
def test_preset_statistics_match_the_real_benchmark(scenario, name):
    _, _, stats = scenario(name)
    real_vehicles, real_fragments = REAL_SIZES[name]
    assert abs(stats["vehicles"] - real_vehicles) <= 0.4 * real_vehicles
    assert abs(stats["fragments"] - real_fragments) <= 0.4 * real_fragments
    lo, hi = FRAGMENTS_PER_VEHICLE[name]
    assert lo <= stats["fragments_per_vehicle"] <= hi
    lo, hi = SPEED_MEAN[name]
    assert lo <= stats["speed_mean"] <= hi
    # Consecutive fragments of one vehicle are separated by short gaps (hand-offs, dropouts).
    assert stats["gap_share_0p1_4s"] >= 0.85
    assert 0.1 <= stats["gap_quantiles"]["p50"] <= 2.0
    assert stats["vehicles_eb"] > 0.3 * stats["vehicles"] and stats["vehicles_wb"] > 0.3 * stats["vehicles"]
    assert stats["fragments_eb"] + stats["fragments_wb"] == stats["fragments"]
    assert stats["vehicles_observed"] >= 0.95 * stats["vehicles"]


def _speeds_by_direction(gt):
    out = {1: [], -1: []}
    for doc in gt:
        t, x = np.asarray(doc["timestamp"]), np.asarray(doc["x_position"])
        out[doc["direction"]].append(np.abs(np.diff(x) / np.diff(t)))
    return {d: np.concatenate(v) for d, v in out.items()}


def test_speed_regimes_differ_as_in_the_three_conditions(scenario):
    free, snow, jam = (scenario(n)[2] for n in ("i", "ii", "iii"))
    assert free["speed_p05"] > 85.0 and free["speed_p95"] < 125.0 and free["stopped_share"] == 0.0
    assert snow["speed_p05"] > 22.0 and snow["speed_p95"] < 50.0 and snow["stopped_share"] == 0.0
    # iii as in the real pairs: eastbound free flow, westbound stop-and-go where vehicles come (nearly)
    # to a stand and later drive at up to ~50 ft/s.
    by_dir = _speeds_by_direction(scenario("iii")[0])
    assert np.median(by_dir[1]) > 90.0 and np.mean(by_dir[1] < 5.0) < 0.01
    wb = by_dir[-1]
    assert wb.min() < 3.0 and np.mean(wb < 5.0) > 0.01
    assert 15.0 < np.median(wb) < 45.0 and np.quantile(wb, 0.95) < 60.0


@pytest.mark.parametrize("name", ["i", "iii"])
def test_gt_geometry_lanes_directions_and_25hz_grid(scenario, name):
    gt, _, _ = scenario(name)
    for doc in gt:
        t = np.asarray(doc["timestamp"])
        x = np.asarray(doc["x_position"])
        y = np.asarray(doc["y_position"])
        frames = (t - PRESETS[name].start_time) / 0.04
        np.testing.assert_allclose(frames, np.round(frames), atol=1e-4)
        np.testing.assert_allclose(np.diff(t), 0.04, atol=1e-6)
        assert -100.0 - 1e-6 <= x.min() and x.max() <= 2200.0 + 1e-6
        # The back bumper never moves against the direction of travel.
        assert (doc["direction"] * np.diff(x) >= -1e-9).all()
        if doc["direction"] == 1:
            assert 0.0 <= y.min() and y.max() <= 48.0
        else:
            assert 72.0 <= y.min() and y.max() <= 120.0
        length = doc["length"][0]
        assert 12.0 <= length <= 75.0 and 5.5 <= doc["width"][0] <= 9.0 and 4.0 <= doc["height"][0] <= 14.0
    lengths = np.array([doc["length"][0] for doc in gt])
    assert (lengths > 40.0).any() and np.median(lengths) < 20.0     # mostly cars, some trucks
    changers = sum(np.ptp(doc["y_position"]) > 9.0 for doc in gt)
    assert 0 < changers < 0.3 * len(gt)                             # occasional lane changes


@pytest.mark.parametrize("name", ["i", "ii"])
def test_raw_times_are_jittered_tracker_times_but_strictly_increasing(scenario, name):
    _, raw, _ = scenario(name)
    steps = np.concatenate([np.diff(doc["timestamp"]) for doc in raw])
    assert (steps > 0.015).all() and (steps < 0.25).all()
    assert abs(np.median(steps) - 0.04) < 0.002
    assert np.std(steps[steps < 0.06]) > 0.001      # not a perfect grid
    assert np.mean(np.abs(steps - 0.04) < 1e-6) < 0.5


def _measurement_errors(gt, raw):
    """x, y and speed errors of single-vehicle fragments against their GT vehicle."""
    by_id = {doc["_id"]["$oid"]: doc for doc in gt}
    ex, ey, ev = [], [], []
    for doc in raw:
        if len(doc["gt_ids"]) != 1 or gt_id_of(doc) not in by_id:
            continue
        truth = by_id[gt_id_of(doc)]
        t = np.asarray(doc["timestamp"])
        gx = np.interp(t, truth["timestamp"], truth["x_position"])
        gy = np.interp(t, truth["timestamp"], truth["y_position"])
        speed = np.abs(np.gradient(np.asarray(truth["x_position"]), np.asarray(truth["timestamp"])))
        ex.append(np.asarray(doc["x_position"]) - gx)
        ey.append(np.asarray(doc["y_position"]) - gy)
        ev.append(np.asarray(doc["velocity"]) - np.interp(t, truth["timestamp"], speed))
    return np.concatenate(ex), np.concatenate(ey), np.concatenate(ev)


def test_raw_fragments_follow_their_vehicle_with_smooth_realistic_noise(scenario):
    free = _measurement_errors(*scenario("i")[:2])
    snow = _measurement_errors(*scenario("ii")[:2])
    for ex, ey, ev in (free, snow):
        assert abs(np.median(ex)) < 0.5 and abs(np.median(ey)) < 0.2 and abs(np.median(ev)) < 1.5
        assert 0.3 < np.std(ex) < 3.0 and 0.1 < np.std(ey) < 1.0 and 1.5 < np.std(ev) < 15.0
    # The tracker reports filtered states: the lateral error is smooth, its second difference from one
    # sample to the next far below its size (real v1 curvature is ~0.0005 in free flow).
    _, raw, _ = scenario("i")
    rough = [np.std(np.diff(doc["y_position"], 2)) for doc in raw[:200]
             if len(doc["gt_ids"]) == 1 and len(doc["y_position"]) > 50]
    assert len(rough) > 50 and np.median(rough) < 0.02
    curv = []
    from runtime.features import FEATURE_NAMES, FeatureExtractor
    extractor = FeatureExtractor("i24-47-v1")
    for doc in raw[:60]:
        curv.append(extractor.pair(doc, doc)[FEATURE_NAMES.index("curvature_a_mean")])
    assert np.median(curv) < 0.003
    conf_free = scenario("i")[2]["detection_confidence_mean"]
    conf_snow = scenario("ii")[2]["detection_confidence_mean"]
    assert 0.89 <= conf_free <= 0.97 and conf_snow < conf_free - 0.02
    # The tracker does not report detections below its 0.3 threshold.
    assert min(min(doc["detection_confidence"]) for doc in raw) >= 0.3


@pytest.mark.parametrize("name", ["i", "iii"])
def test_identity_switches_and_false_positives_are_labelled(scenario, name):
    gt, raw, stats = scenario(name)
    assert stats["id_switches"] >= 3 and stats["false_positives"] >= 3
    by_id = {doc["_id"]["$oid"]: doc for doc in gt}
    assert not set(stats["false_positive_gt_ids"]) & set(by_id)
    for doc in raw:
        labels = [entry[0]["$oid"] for entry in doc["gt_ids"]]
        if len(labels) < 2:
            continue
        assert len(set(labels)) == len(labels) and set(labels) <= set(by_id)
        # The majority label comes first: most samples lie nearer to that vehicle than to the other.
        t = np.asarray(doc["timestamp"])
        pos = np.stack([doc["x_position"], doc["y_position"]], axis=1)

        def distance(gid):
            truth = by_id[gid]
            inside = (t >= truth["timestamp"][0]) & (t <= truth["timestamp"][-1])
            ref = np.stack([np.interp(t, truth["timestamp"], truth["x_position"]),
                            np.interp(t, truth["timestamp"], truth["y_position"])], axis=1)
            return np.where(inside, np.linalg.norm(pos - ref, axis=1), np.inf)

        nearer_first = distance(labels[0]) < distance(labels[1])
        assert nearer_first.mean() >= 0.45


def test_same_seed_gives_identical_json_and_another_seed_differs():
    first = simulate("ii", 11, duration=12.0)
    again = simulate("ii", 11, duration=12.0)
    other = simulate("ii", 12, duration=12.0)
    assert json.dumps(first) == json.dumps(again)
    assert json.dumps(first) != json.dumps(other)
    # One seed gives independent instances of different presets.
    assert json.dumps(simulate("i", 11, duration=12.0)[1][:3]) != json.dumps(first[1][:3])


def test_duration_override_and_round_trip_through_save_and_load(tmp_path):
    gt, raw = simulate("ii", 5, duration=20.0)
    stats = scenario_stats(gt, raw)
    assert stats["duration_s"] <= 20.0 + 1e-6 and stats["vehicles"] > 10
    save_fragments(tmp_path / "GT_ii.json", gt)
    save_fragments(tmp_path / "RAW_ii.json", raw)
    assert load_fragments(tmp_path / "GT_ii.json") == gt
    assert load_fragments(tmp_path / "RAW_ii.json") == raw


def test_write_scenario_writes_both_sets_and_returns_their_stats(tmp_path):
    stats = write_scenario("iii", 2, tmp_path / "out", duration=8.0)
    gt = load_fragments(tmp_path / "out" / "GT_iii.json")
    raw = load_fragments(tmp_path / "out" / "RAW_iii.json")
    assert stats["vehicles"] == len(gt) and stats["fragments"] == len(raw)
    assert stats["preset"] == "iii" and stats["seed"] == 2


def test_bad_arguments_are_rejected_with_clear_errors():
    with pytest.raises(ValueError, match="unknown scenario 'iv'"):
        simulate("iv", 0)
    with pytest.raises(ValueError, match="seed"):
        simulate("i", -1)
    with pytest.raises(ValueError, match="duration"):
        simulate("i", 0, duration=0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["i"].duration = 10.0
    with pytest.raises(ValueError, match="handoff_failure"):
        dataclasses.replace(PRESETS["i"], handoff_failure=1.5)
    with pytest.raises(ValueError, match="class_mix"):
        dataclasses.replace(PRESETS["ii"], class_mix=(1.0,))
    assert set(PRESETS) == {"i", "ii", "iii"} and all(isinstance(p, ScenarioPreset) for p in PRESETS.values())


def test_cli_writes_both_files_and_prints_one_line(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["ii", "--seed", "3", "--out", str(tmp_path), "--duration", "10"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ii seed=3:") and "fragments" in lines[0]
    assert len(load_fragments(tmp_path / "GT_ii.json")) > 0
    assert len(load_fragments(tmp_path / "RAW_ii.json")) > 0


def test_cli_help_and_bad_input():
    runner = CliRunner()
    help_text = runner.invoke(main, ["--help"]).output
    for option in ("--seed", "--out", "--duration", "all"):
        assert option in help_text
    for args, reason in ((["iv", "--seed", "1", "--out", "x"], "unknown scenario"),
                         (["i", "--seed", "-2", "--out", "x"], "--seed must be non-negative"),
                         (["i", "--seed", "1", "--out", "x", "--duration", "-5"], "--duration")):
        result = runner.invoke(main, args)
        assert result.exit_code != 0
        assert len(result.output.strip().splitlines()) == 1 and reason in result.output


# --- the error-model interface: ranges, draws, overrides, randomised instances -----------------------

def test_error_ranges_cover_every_preset_and_draws_stay_inside():
    from training.simulate import ERROR_RANGES, draw_error_model

    def inside(value, lo, hi):
        if isinstance(lo, tuple):
            return all(a - 1e-12 <= v <= b + 1e-12 for v, a, b in zip(value, lo, hi)) and len(value) == len(lo)
        return lo - 1e-12 <= value <= hi + 1e-12

    for name, (lo, hi) in ERROR_RANGES.items():
        assert hasattr(PRESETS["i"], name), name
        for preset in PRESETS.values():      # the calibrated presets lie inside the ranges
            assert inside(getattr(preset, name), lo, hi), (preset.name, name, getattr(preset, name), lo, hi)
    rng = np.random.default_rng(0)
    for _ in range(20):
        model = draw_error_model(rng)
        assert set(model) == set(ERROR_RANGES)
        sorted_ok = {k: (min(ERROR_RANGES[k][0]), max(ERROR_RANGES[k][1])) for k in ("blind_zone", "gap_bounds")}
        for name, value in model.items():
            lo, hi = ERROR_RANGES[name]
            if name in sorted_ok:
                assert list(value) == sorted(value) and sorted_ok[name][0] <= value[0] <= value[1] <= sorted_ok[name][1]
            else:
                assert inside(value, lo, hi), (name, value)
        dataclasses.replace(PRESETS["ii"], **model)      # every draw is a valid preset


def test_randomize_is_deterministic_per_seed_and_differs_from_the_preset():
    from training.simulate import resolve_preset

    first = simulate("ii", 4, duration=8.0, randomize=True)
    again = simulate("ii", 4, duration=8.0, randomize=True)
    plain = simulate("ii", 4, duration=8.0)
    assert json.dumps(first) == json.dumps(again)
    assert json.dumps(first[1]) != json.dumps(plain[1])
    # GT traffic does not depend on the tracker-error model (camera nodes may: camera_spacing is drawn).
    def motion(gt):
        return [(d["timestamp"], d["x_position"], d["y_position"], d["length"]) for d in gt]
    assert motion(first[0]) == motion(plain[0])
    a, b = resolve_preset("ii", 4, randomize=True), resolve_preset("ii", 5, randomize=True)
    assert a != b and a.speed_sigma != PRESETS["ii"].speed_sigma
    # error_model pins fields on top of a draw
    pinned = resolve_preset("ii", 4, randomize=True, error_model={"speed_sigma": 1.25})
    assert pinned.speed_sigma == 1.25 and pinned.position_sigma == a.position_sigma


def test_error_model_overrides_are_validated_and_presets_can_be_objects():
    gt, raw = simulate("i", 3, duration=6.0, error_model={"confidence_floor": 0.3, "low_confidence_share": 0.0})
    assert min(min(d["detection_confidence"]) for d in raw) >= 0.3
    with pytest.raises(ValueError, match="unknown ScenarioPreset field.*'speed_sigmaa'"):
        simulate("i", 3, duration=6.0, error_model={"speed_sigmaa": 1.0})
    with pytest.raises(ValueError, match="position_sigma needs 2 numbers"):
        simulate("i", 3, duration=6.0, error_model={"position_sigma": [1.0]})
    with pytest.raises(ValueError, match="handoff_failure"):
        simulate("i", 3, duration=6.0, error_model={"handoff_failure": 2.0})
    # A ScenarioPreset object changes traffic too; a copy with the same fields gives the same documents.
    same = dataclasses.replace(PRESETS["i"])
    assert json.dumps(simulate(same, 3, duration=6.0)) == json.dumps(simulate("i", 3, duration=6.0))
    sparse = dataclasses.replace(PRESETS["i"], demand_per_lane=0.2)
    assert len(simulate(sparse, 3, duration=6.0)[0]) < len(simulate("i", 3, duration=6.0)[0])


def test_write_scenario_records_the_error_model_and_the_cli_replays_it(tmp_path):
    from training.simulate import ERROR_MODEL_FIELDS

    runner = CliRunner()
    result = runner.invoke(main, ["iii", "--seed", "6", "--out", str(tmp_path / "a"), "--duration", "6",
                                  "--randomize"])
    assert result.exit_code == 0, result.output
    assert "error model drawn" in result.output
    record = json.loads((tmp_path / "a" / "SIM_iii.json").read_text())
    assert record["randomize"] is True and set(record["error_model"]) == set(ERROR_MODEL_FIELDS)
    # Replaying the recorded model without --randomize writes the same RAW set.
    result = runner.invoke(main, ["iii", "--seed", "6", "--out", str(tmp_path / "b"), "--duration", "6",
                                  "--error-model", str(tmp_path / "a" / "SIM_iii.json")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a" / "RAW_iii.json").read_bytes() == (tmp_path / "b" / "RAW_iii.json").read_bytes()
    bad = runner.invoke(main, ["iii", "--seed", "6", "--out", str(tmp_path / "c"), "--error-model", '{"nope": 1}'])
    assert bad.exit_code != 0 and "unknown ScenarioPreset field" in bad.output
