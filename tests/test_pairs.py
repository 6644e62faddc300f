"""Pair mining labels, split hygiene (no vehicle on two sides, scaler fitted after the split), the npz loader."""
import json

import numpy as np
import pytest

from training.pairs import concat_pairs, load_real_dataset, mine_pairs

T0 = 1623877175.0


def frag(oid, vehicle, start, end, direction=1, y=12.0, speed=60.0, x0=0.0):
    n = int(round((end - start) / 0.04)) + 1
    t = [T0 + start + 0.04 * k for k in range(n)]
    x = [x0 + direction * speed * (tk - T0) for tk in t]
    return {"_id": {"$oid": oid}, "timestamp": t, "x_position": x, "y_position": [y] * n,
            "length": [15.0] * n, "width": [6.0] * n, "height": [5.0] * n, "velocity": [speed] * n,
            "detection_confidence": [0.9] * n, "direction": direction,
            "gt_ids": [[{"$oid": vehicle}]]}


def hand_built():
    return [
        frag("f1", "V1", 0.0, 2.0), frag("f2", "V1", 2.5, 4.0), frag("f3", "V1", 4.6, 6.0),
        frag("g1", "V2", 1.0, 3.0, y=24.0), frag("g2", "V2", 3.4, 5.0, y=24.0),
        frag("w1", "W1", 0.0, 3.0, direction=-1, y=90.0, x0=2000.0),
        frag("late", "V3", 30.0, 31.0),         # starts more than TIME_WIN after everything ends
        frag("tiny", "V4", 1.0, 1.08),          # 3 samples: dropped by the feed
    ]


def labelled(sp):
    ids = [d["_id"] for d in sp.docs]
    return {(ids[a], ids[b]): int(l) for a, b, l in zip(sp.a, sp.b, sp.label)}


def test_mining_labels_consecutive_skipping_and_other_vehicle():
    sp = mine_pairs(hand_built(), "hand/0", time_win=15.0)
    pairs = labelled(sp)
    assert pairs[("f1", "f2")] == 1 and pairs[("f2", "f3")] == 1 and pairs[("g1", "g2")] == 1
    assert pairs[("f1", "f3")] == -1                       # same vehicle, skips f2
    assert pairs[("f1", "g2")] == 0 and pairs[("g1", "f3")] == 0
    assert not any("w1" in p for p in pairs), "westbound never pairs with eastbound"
    assert not any("late" in p for p in pairs), "gap beyond TIME_WIN is no candidate"
    assert all(sp.gap >= 0) and all(sp.gap <= 15.0)
    assert sp.dropped_short == 1 and "tiny" not in [d["_id"] for d in sp.docs]
    assert sp.features.shape == (len(sp), 47) and np.isfinite(sp.features).all()
    assert np.isfinite(sp.bhat).all()
    s = sp.summary()
    assert s["positives"] == 3 and s["skipping_same_vehicle"] == 1 and s["negatives"] == len(sp) - 4


def test_candidate_set_is_exactly_the_stitcher_query():
    docs = hand_built()
    sp = mine_pairs(docs, "hand/0", time_win=15.0)
    got = set(labelled(sp))
    kept = [d for d in sp.docs]
    expected = set()
    for a in kept:
        for b in kept:
            gap = b["timestamp"][0] - a["timestamp"][-1]
            if a is not b and a["direction"] == b["direction"] and 0 <= gap <= 15.0:
                expected.add((a["_id"], b["_id"]))
    assert got == expected


def test_concat_offsets_indices():
    one = mine_pairs(hand_built(), "hand/0")
    both = concat_pairs([one, one])
    assert len(both) == 2 * len(one) and len(both.docs) == 2 * len(one.docs)
    assert (both.a[len(one):] == one.a + len(one.docs)).all()
    assert both.names == ["hand/0", "hand/0"] and set(both.source[len(one):]) == {1}


def test_split_by_vehicle_puts_no_vehicle_on_two_sides(tmp_path):
    docs = []
    for v in range(40):
        for k in range(3):
            docs.append(frag(f"v{v}f{k}", f"V{v}", 0.5 * v + 2.0 * k, 0.5 * v + 2.0 * k + 1.5, y=12.0 * (v % 4)))
    (tmp_path / "RAW_i.json").write_text(json.dumps(docs))
    splits = load_real_dataset(str(tmp_path), presets=("i",), seed=3)
    owners = {}
    for name, sp in splits.items():
        for a, b in zip(sp.a, sp.b):
            for g in (sp.gt[a], sp.gt[b]):
                owners.setdefault(g, set()).add(name)
    assert owners and all(len(s) == 1 for s in owners.values())


def test_npz_loader_on_a_small_synthetic_file(tmp_path):
    from runtime.features import FEATURE_NAMES
    from training.lr import load_feature_npz

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 47))
    path = tmp_path / "mini.npz"
    np.savez(path, X=X, y=np.arange(20) % 2, feature_names=np.array(FEATURE_NAMES))
    X2, y2, names = load_feature_npz(str(path))
    assert names == list(FEATURE_NAMES) and X2.shape == (20, 47) and y2.sum() == 10
    np.savez(path, X=X, y=np.arange(19) % 2, feature_names=np.array(FEATURE_NAMES))
    with pytest.raises(ValueError, match="inconsistent shapes"):
        load_feature_npz(str(path))


def _synthetic_pairs(n_pos=20, n_neg=400, seed=0):
    from training.pairs import ScenarioPairs

    rng = np.random.default_rng(seed)
    n = n_pos + n_neg
    label = np.r_[np.ones(n_pos, np.int64), np.zeros(n_neg, np.int64)]
    return ScenarioPairs(["i/1"], [], [], np.arange(n), np.arange(n) + 1, label, rng.random(n),
                         rng.normal(size=(n, 47)), rng.random(n) * 10, np.zeros(n, np.int64))


def test_subsample_keeps_the_hardest_negatives_by_the_given_score():
    from training.train import subsample_negatives

    sp = _synthetic_pairs()
    neg = np.flatnonzero(sp.label == 0)
    hardness = np.random.default_rng(1).permutation(len(sp)).astype(float)  # unrelated to the Bhattacharyya cost
    for score in (None, hardness):
        kept = subsample_negatives(sp, 4.0, seed=0, hard_fraction=0.5, hardness=score)
        assert (kept.label == 1).sum() == 20 and (kept.label == 0).sum() == 80
        ranking = sp.bhat if score is None else score
        hardest = set(neg[np.argsort(ranking[neg], kind="stable")[:40]])
        assert hardest <= set(kept.a[kept.label == 0])       # every one of the 40 hardest is kept
    with pytest.raises(ValueError, match="hardness has shape"):
        subsample_negatives(sp, 4.0, seed=0, hardness=np.zeros(3))


def test_warm_start_hard_negatives_need_the_warm_start_run(tmp_path):
    from training.pairs import DatasetSpec
    from training.train import train_run

    with pytest.raises(ValueError, match="hard_negatives must be one of"):
        train_run("tcn", str(tmp_path / "a"), DatasetSpec(), hard_negatives="random")
    with pytest.raises(ValueError, match="give init_features_from"):
        train_run("tcn", str(tmp_path / "b"), DatasetSpec(), hard_negatives="warm-start")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
