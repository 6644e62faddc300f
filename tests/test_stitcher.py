"""runtime.stitcher: the online min-cost-flow stitcher and the exact offline solver on hand-built fragments."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest

import runtime.stitcher as stitcher_mod
from runtime.cost import INVALID_COST, ConfigError, StitchCostFunction
from runtime.fragment import Fragment
from runtime.stitcher import (OnlineStitcher, StitchConfig, candidate_edges, hungarian_max, offline_stitch,
                              solve_assignment)

PARAMS = {
    "time_win": 15,
    "master_time_win": 20,
    "stitcher_mode": "local",
    "stitcher_args": {"cx": 0.2, "mx": 0.1, "cy": 2, "my": 0.1, "stitch_thresh": 3, "master_stitch_thresh": 4},
}


def config(mode="local", **kw) -> StitchConfig:
    return StitchConfig.from_parameters(dict(PARAMS, stitcher_mode=mode), **kw)


class TableCost(StitchCostFunction):
    """Costs from a table keyed by (earlier id, later id); records every batch call."""

    name = "table"

    def __init__(self, table):
        self.table = dict(table)
        self.batches: list[tuple[str, list[str], float, dict]] = []

    def compute_cost(self, track1, track2, TIME_WIN, param=None):
        return self.table.get((track1["_id"], track2["_id"]), INVALID_COST)

    def compute_costs(self, tracks1, track2, TIME_WIN, param=None):
        self.batches.append((track2["_id"], [t["_id"] for t in tracks1], TIME_WIN, dict(param)))
        return super().compute_costs(tracks1, track2, TIME_WIN, param)


def frag(fid, t0, t1, direction=1):
    t = np.arange(round(t0 * 25), round(t1 * 25) + 1) / 25.0
    doc = {"_id": fid, "timestamp": t.tolist(), "x_position": (100 + 60 * direction * t).tolist(),
           "y_position": [12.0] * t.size, "direction": direction}
    return Fragment.from_document(doc), doc


def stitch_online(items, cost, cfg, sweep_every=16):
    st = OnlineStitcher(cost, cfg, sweep_every=sweep_every)
    paths, emitted_before_flush = [], 0
    for f, d in sorted(items, key=lambda it: it[0].last_timestamp):
        paths.extend(st.add(f, d))
    emitted_before_flush = len(paths)
    paths.extend(st.flush())
    return [[f.id for f, _ in p] for p in paths], st, emitted_before_flush


def as_set(paths):
    return sorted(tuple(p) for p in paths)


def test_simple_chain_and_singletons():
    items = [frag("A", 0, 10), frag("B", 11, 20), frag("C", 21, 30), frag("X", 40, 50)]
    cost = TableCost({("A", "B"): 1.0, ("B", "C"): 0.5, ("A", "C"): 2.9})
    paths, st, _ = stitch_online(items, cost, config())
    assert as_set(paths) == [("A", "B", "C"), ("X",)]
    assert st.stats.objective == pytest.approx(2.0 + 2.5)


def test_alternating_path_with_a_losing_first_step():
    # C arrives first and takes B (margin 2.5). D can only use B (margin 2): D takes B (-0.5 net), C
    # falls back to A (+2): total 4 > 2.5. The reference's rule (every step must gain) misses it.
    items = [frag("A", 0, 10), frag("B", 0.5, 11), frag("C", 12, 20), frag("D", 13, 21)]
    table = {("A", "C"): 1.0, ("B", "C"): 0.5, ("B", "D"): 1.0}
    paths, st, _ = stitch_online(items, TableCost(table), config())
    assert as_set(paths) == [("A", "C"), ("B", "D")]
    assert st.stats.objective == pytest.approx(4.0)
    assert st.stats.augmentations == 2
    off_paths, _, off_stats = offline_stitch(items, TableCost(table), config())
    assert as_set([[f.id for f, _ in p] for p in off_paths]) == as_set(paths)
    assert off_stats.objective == pytest.approx(4.0)


def test_alternating_path_ending_at_a_fragment_left_without_predecessor():
    items = [frag("B", 0, 10), frag("C", 11, 20), frag("D", 12, 21)]
    table = {("B", "C"): 2.0, ("B", "D"): 1.0}  # margins 1 and 2: D steals B, C stays a head
    paths, st, _ = stitch_online(items, TableCost(table), config())
    assert as_set(paths) == [("B", "D"), ("C",)]
    assert st.stats.objective == pytest.approx(2.0)


def _random_instance(seed, n_max=22):
    rng = random.Random(seed)
    n = rng.randint(2, n_max)
    items = []
    for i in range(n):
        t0 = rng.uniform(0, 40)
        items.append(frag(f"f{i:02d}", t0, t0 + rng.uniform(0.3, 20)))
    table = {}
    for a, _ in items:
        for b, _ in items:
            if a is not b and rng.random() < 0.5:
                table[(a.id, b.id)] = rng.uniform(0, 4)
    return items, table


@pytest.mark.parametrize("seed", range(60))
def test_online_equals_offline_and_every_fragment_once(seed):
    items, table = _random_instance(seed)
    paths, st, _ = stitch_online(items, TableCost(table), config(), sweep_every=1 + seed % 3)
    flat = [fid for p in paths for fid in p]
    assert sorted(flat) == sorted(f.id for f, _ in items)  # each exactly once
    off_paths, edges, off_stats = offline_stitch(items, TableCost(table), config())
    assert sorted(fid for p in off_paths for fid in (f.id for f, _ in p)) == sorted(flat)
    weight = {(e.pred, e.succ): e.weight for e in edges}
    online_total = sum(weight[(p[i], p[i + 1])] for p in paths for i in range(len(p) - 1))
    assert online_total == pytest.approx(st.stats.objective, abs=1e-9)
    assert online_total == pytest.approx(off_stats.objective, abs=1e-9)
    for p in paths:  # links respect the real-gap gate
        ends = {f.id: f for f, _ in items}
        for a, b in zip(p, p[1:]):
            assert 0 <= ends[b].first_timestamp - ends[a].last_timestamp <= 15


def test_one_batch_call_per_new_fragment_with_all_gap_eligible_candidates():
    items, table = _random_instance(7, n_max=30)
    cost = TableCost(table)
    stitch_online(items, cost, config())
    by_id = {f.id: f for f, _ in items}
    seen = set()
    for new, cands, tw, _ in cost.batches:
        assert new not in seen
        seen.add(new)
        f = by_id[new]
        expected = {g.id for g in by_id.values()
                    if g.id != new and 0 <= f.first_timestamp - g.last_timestamp <= 15}
        assert set(cands) == expected and tw == 15
    assert all(not {g.id for g in by_id.values() if g.id != fid and
                    0 <= by_id[fid].first_timestamp - g.last_timestamp <= 15}
               for fid in by_id.keys() - seen)


def test_master_mode_uses_master_threshold_and_window():
    # cost 3.5: above stitch_thresh 3, below master_stitch_thresh 4. Gap 17 s: outside 15, inside 20.
    items = [frag("A", 0, 10), frag("B", 11, 20), frag("C", 37, 45)]
    table = {("A", "B"): 3.5, ("B", "C"): 1.0}
    local_paths, _, _ = stitch_online(items, TableCost(table), config("local"))
    assert as_set(local_paths) == [("A",), ("B",), ("C",)]
    cost = TableCost(table)
    master_paths, st, _ = stitch_online(items, cost, config("master"))
    assert as_set(master_paths) == [("A", "B", "C")]
    assert st.stats.objective == pytest.approx(0.5 + 3.0)
    assert {tw for _, _, tw, _ in cost.batches} == {20.0}
    assert all(p["stitch_thresh"] == 4.0 and p["time_win"] == 20.0 for *_, p in cost.batches)
    cfg = config("master")
    assert (cfg.stitch_thresh, cfg.time_win) == (4.0, 20.0)
    assert (config().stitch_thresh, config().time_win) == (3.0, 15.0)


def test_blind_spot_long_successor_is_linked_and_reference_window_misses_it():
    # A ends at 10; B starts 1 s later and lasts 30 s, so it arrives (by last_timestamp) at 41. Short
    # fragments C0..C13 end in between; their starts move past A's end + TIME_WIN.
    items = [frag("A", 0, 10), frag("B", 11, 41)]
    items += [frag(f"C{j:02d}", 12 + 2 * j, 13 + 2 * j) for j in range(14)]
    table = {("A", "B"): 1.0}
    paths, _, _ = stitch_online(items, TableCost(table), config())
    assert ("A", "B") in as_set(paths)
    cost = TableCost(table)
    legacy_paths, _, _ = stitch_online(items, cost, config(legacy_window=True))
    assert ("A",) in as_set(legacy_paths) and ("B",) in as_set(legacy_paths)
    assert all("A" not in cands for new, cands, *_ in cost.batches if new == "B")


def test_paths_are_emitted_once_final_not_only_at_flush():
    items = [frag("A", 0, 10), frag("B", 11, 20)]
    items += [frag("C", 200, 210), frag("D", 211, 220)]  # 200 s later: A, B can no longer change
    table = {("A", "B"): 1.0, ("C", "D"): 1.0}
    st = OnlineStitcher(TableCost(table), config(), sweep_every=1)
    out = []
    for f, d in items:
        out.append([[g.id for g, _ in p] for p in st.add(f, d)])
    assert out[:3] == [[], [], [["A", "B"]]]
    assert [[g.id for g, _ in p] for p in st.flush()] == [["C", "D"]]


def test_nan_cost_and_cost_at_threshold():
    items = [frag("A", 0, 10), frag("B", 11, 20), frag("C", 21, 30)]
    paths, st, _ = stitch_online(items, TableCost({("A", "B"): math.nan, ("B", "C"): 3.0}), config())
    assert st.stats.edges == 1  # cost == thresh is an edge (of zero margin), NaN is none
    assert st.stats.objective == 0.0


def test_feed_order_and_duplicates_are_checked():
    st = OnlineStitcher(TableCost({}), config())
    st.add(*frag("A", 0, 10))
    with pytest.raises(ValueError, match="order"):
        st.add(*frag("B", 0, 5))
    with pytest.raises(ValueError, match="twice"):
        st.add(*frag("A", 0, 10))


def test_config_errors():
    with pytest.raises(ConfigError, match="stitcher_mode"):
        StitchConfig.from_parameters(dict(PARAMS, stitcher_mode="global"))
    with pytest.raises(ConfigError, match="stitcher_args"):
        StitchConfig.from_parameters({"time_win": 15})
    bad = dict(PARAMS, stitcher_args={"stitch_thresh": "3"})
    with pytest.raises(ConfigError, match="stitch_thresh"):
        StitchConfig.from_parameters(bad)
    with pytest.raises(ConfigError, match="master_time_win"):
        StitchConfig.from_parameters({k: v for k, v in PARAMS.items() if k != "master_time_win"} |
                                     {"stitcher_mode": "master"})


def test_weight_gain_scales_margins():
    items = [frag("A", 0, 10), frag("B", 11, 20)]
    params = dict(PARAMS, stitcher_args=dict(PARAMS["stitcher_args"], weight_gain=2.0))
    cfg = StitchConfig.from_parameters(params)
    _, st, _ = stitch_online(items, TableCost({("A", "B"): 1.0}), cfg)
    assert st.stats.objective == pytest.approx(4.0)


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (5, 3), (6, 6), (2, 7)])
def test_numpy_hungarian_matches_scipy(shape):
    from scipy.optimize import linear_sum_assignment
    rng = np.random.default_rng(sum(shape))
    for _ in range(20):
        b = rng.random(shape) * (rng.random(shape) < 0.6)
        r, c = hungarian_max(b)
        r2, c2 = linear_sum_assignment(b, maximize=True)
        assert len(set(r)) == len(r) == min(shape) and len(set(c)) == len(c)
        assert b[r, c].sum() == pytest.approx(b[r2, c2].sum())


def test_offline_without_scipy_uses_numpy_fallback(monkeypatch):
    items, table = _random_instance(11)
    edges = candidate_edges(items, TableCost(table), config())
    _, with_scipy = solve_assignment(edges)
    monkeypatch.setattr(stitcher_mod, "_linear_sum_assignment_max", stitcher_mod.hungarian_max)
    links, without = solve_assignment(edges)
    assert without == pytest.approx(with_scipy)
    assert len({e.pred for e in links}) == len(links) == len({e.succ for e in links})


def test_long_connected_stream_is_emitted_as_it_goes():
    # Dense traffic: false edges (cost 2-3) between neighbouring vehicles besides the true ones
    # (0.2-1) make the edge graph one connected piece, so exact finality reaches back to the start.
    # path_timeout emits finished vehicles anyway and keeps memory bounded.
    rng = random.Random(3)
    params = dict(PARAMS, stitcher_args=dict(PARAMS["stitcher_args"], max_fragment_duration=5.0))
    cfg = StitchConfig.from_parameters(params)
    assert cfg.path_timeout == 2 * (15 + 5)
    items, vehicle = [], {}
    for v in range(60):                          # a vehicle every 2 s, 5 fragments each
        t = 2.0 * v
        for k in range(5):
            dur = rng.uniform(1.0, 3.0)
            fid = f"v{v:02d}_{k}"
            items.append(frag(fid, t, t + dur))
            vehicle[fid] = (v, k)
            t += dur + rng.uniform(0.2, 1.0)
    items.sort(key=lambda it: it[0].last_timestamp)
    table = {}
    for k, (g, _) in enumerate(items):
        for f, _ in items[k + 1:]:
            if 0 <= f.first_timestamp - g.last_timestamp <= 15:
                (vg, kg), (vf, kf) = vehicle[g.id], vehicle[f.id]
                if vg == vf and kf == kg + 1:
                    table[(g.id, f.id)] = rng.uniform(0.2, 1.0)
                elif abs(vg - vf) <= 1 and rng.random() < 0.5:   # look-alike neighbours
                    table[(g.id, f.id)] = rng.uniform(2.0, 3.0)
    st = OnlineStitcher(TableCost(table), cfg)
    paths, live = [], []
    for f, d in items:
        paths.extend(st.add(f, d))
        live.append(st.live)
    emitted_early = sum(len(p) for p in paths)
    paths.extend(st.flush())
    assert emitted_early > 100 and st.stats.timed_out > 0
    assert max(live) < 150                       # ~ path_timeout (40 s) of arrivals at 2.5/s, plus chain tails
    assert sorted(f.id for p in paths for f, _ in p) == sorted(f.id for f, _ in items)
    _, _, off = offline_stitch(items, TableCost(table), cfg)
    assert st.stats.objective == pytest.approx(off.objective, rel=1e-3)   # timed out != wrong, here


def test_path_timeout_config():
    args = dict(PARAMS["stitcher_args"], path_timeout=100.0)
    assert StitchConfig.from_parameters(dict(PARAMS, stitcher_args=args)).path_timeout == 100.0
    with pytest.raises(ConfigError, match="path_timeout"):
        StitchConfig.from_parameters(dict(PARAMS, stitcher_args=dict(args, path_timeout=30.0)))
