"""The shift suite's reusable core: stitch costs through pp_lite under `training.shifts`, worst case per cost.

`benchmarks/shift.py` (the full benchmark, its tables and heatmap), `promote --shift-guard` (check a
candidate artifact before it is swapped in) and `tune --select worst-case|constraint` (choose among the
top trials of a study) all run the suite through `run_suite` and read its `worst_case` list.

    from workflows.shift_suite import BHAT, onnx_cost, run_profile
    payload = run_profile([BHAT, onnx_cost("cand", "/tmp/x/mlp")], "quick")
    payload["worst_case"]       # [{"cost": "cand", "worst": -0.012, "worst_cell": ["iii", "velocity_absent"], ...}]

A cost is a tuple (key, label, cost_function config); Bhattacharyya ("bhat", "Bhat") is the reference
and always runs, once per cell, whatever the number of other costs.
"""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

import pp_lite
from runtime.cost import StitchCostFunction, load_cost_function
from runtime.feed import prepare_fragments
from runtime.fragment import fragment_id
from training.evaluate import evaluate_tracking
from training.io import gt_id_of
from training.shifts import SHIFTS, SHIFT_NAMES, available_shifts, shifted_scenario

__all__ = ["PRESETS", "HELD_OUT_SEEDS", "QUICK_DURATION_S", "BASELINE", "TOLERANCE", "METRICS", "PROFILES", "BHAT",
           "REPO", "DEFAULT_CONFIG", "Cost", "onnx_cost", "RecordingCost", "PairLabels", "pair_counts", "run_cell",
           "aggregate", "add_deltas", "worst_cases", "pair_view", "run_suite", "run_profile", "worst_of",
           "robustness_record", "cell_table", "rank_candidates", "select_candidate", "SELECT_MODES"]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO, "parameters_Bhat.json")
PRESETS = ("i", "ii", "iii")
# Held out: not the training seeds (11-15), not the tracking benchmark's (101, 102), not the tests'.
HELD_OUT_SEEDS = (201, 202)
QUICK_DURATION_S = 20.0
BASELINE = "Bhat"
TOLERANCE = 0.005     # the bar: every learned cost >= Bhattacharyya IDF1 - 0.005 on every cell
METRICS = ("idf1", "idsw", "mota")
# quick: 20 s scenarios, the first held-out seed; full: the presets' durations, both seeds. All presets and shifts.
PROFILES = {"quick": {"duration": QUICK_DURATION_S, "seeds": HELD_OUT_SEEDS[:1]},
            "full": {"duration": None, "seeds": HELD_OUT_SEEDS}}

Cost = tuple  # (key, label, cost_function config)
BHAT: Cost = ("bhat", BASELINE, {"type": "bhattacharyya"})


def onnx_cost(label: str, artifact: str) -> Cost:
    """The suite's cost tuple for an exported artifact folder."""
    return (label, label, {"type": "onnx", "artifact": os.path.abspath(artifact)})


class RecordingCost(StitchCostFunction):
    """Passes every call to `inner` and records (earlier id, later id, cost) of each scored pair."""

    def __init__(self, inner: StitchCostFunction):
        self.inner = inner
        self.name = inner.name
        self.pairs: list[tuple[str, str, float]] = []

    def compute_cost(self, track1, track2, TIME_WIN, param=None) -> float:
        cost = float(self.inner.compute_cost(track1, track2, TIME_WIN, param))
        self.pairs.append((fragment_id(track1), fragment_id(track2), cost))
        return cost

    def compute_costs(self, tracks1, track2, TIME_WIN, param=None) -> np.ndarray:
        costs = np.asarray(self.inner.compute_costs(tracks1, track2, TIME_WIN, param), dtype=np.float64)
        succ = fragment_id(track2)
        self.pairs.extend((fragment_id(t1), succ, c) for t1, c in zip(tracks1, costs.tolist()))
        return costs

    def describe(self) -> dict:
        return self.inner.describe()


# ------------------------------------------------------------------------------------------ pairs
class PairLabels:
    """Labels of (earlier, later) fragment pairs from gt_ids, the rule of `training.pairs`:
    1 = same GT vehicle (majority gt_ids) and the later is that vehicle's next fragment; -1 = same
    vehicle, skipping a fragment (left out of the pair view); 0 = anything else."""

    def __init__(self, raw_docs: Sequence[Mapping[str, Any]]):
        docs, _ = prepare_fragments(raw_docs, on_bad_fragment="skip")
        self.gt: dict[str, str | None] = {}
        by_vehicle: dict[str, list[Mapping[str, Any]]] = {}
        for doc in docs:
            fid, gid = fragment_id(doc), gt_id_of(doc)
            self.gt[fid] = gid
            if gid is not None:
                by_vehicle.setdefault(gid, []).append(doc)
        self.successor: dict[str, str] = {}
        for members in by_vehicle.values():
            members.sort(key=lambda d: (d["timestamp"][0], d["timestamp"][-1]))
            for a, b in zip(members, members[1:]):
                self.successor[fragment_id(a)] = fragment_id(b)

    def label(self, a: str, b: str) -> int:
        ga = self.gt.get(a)
        if ga is None or ga != self.gt.get(b):
            return 0
        return 1 if self.successor.get(a) == b else -1


def pair_counts(pairs: Iterable[tuple[str, str, float]], labels: PairLabels, thresh: float) -> dict:
    """Positives, negatives, those at or below `thresh` (edges), non-finite costs, median positive cost."""
    pos = neg = tp = fp = nonfinite = 0
    pos_costs = []
    for a, b, cost in pairs:
        if not math.isfinite(cost):
            nonfinite += 1
        lab = labels.label(a, b)
        if lab == 1:
            pos += 1
            tp += cost <= thresh
            pos_costs.append(cost)
        elif lab == 0:
            neg += 1
            fp += cost <= thresh
    return {"positives": pos, "negatives": neg, "tp": int(tp), "fp": int(fp), "nonfinite": nonfinite,
            "median_positive_cost": float(np.median(pos_costs)) if pos_costs else None}


# ------------------------------------------------------------------------------------------ running
def run_cell(gt_docs, raw_docs, costs, params, *, preset: str, seed: int, shift: str, progress=None) -> list[dict]:
    """Every cost on one (preset, seed, shift) scenario: one row per cost."""
    labels = PairLabels(raw_docs)
    thresh = float(params["stitcher_args"]["stitch_thresh"])
    rows = []
    for key, label, config in costs:
        start = time.perf_counter()
        recorder = RecordingCost(load_cost_function(config, base_dir=REPO))
        rec_docs, summary = pp_lite.run(raw_docs, params, solver="online", cost_fn=recorder,
                                        on_bad_fragment="skip", name=f"{preset}_{shift}")
        metrics = evaluate_tracking(gt_docs, rec_docs, hota=False)
        row = {"preset": preset, "seed": seed, "shift": shift, "cost": label, "key": key,
               "fragments": len(raw_docs), "vehicles": len(gt_docs), "skipped": len(summary["skipped"]),
               **{m: metrics[m] for m in METRICS},
               **pair_counts(recorder.pairs, labels, thresh),
               "seconds": time.perf_counter() - start}
        rows.append(row)
        if progress is not None:
            progress(row)
    return rows


def aggregate(rows: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Per (preset, shift, cost): metric means over seeds, pair counts summed (TPR/FPR pooled)."""
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r["preset"], r["shift"], r["cost"]), []).append(r)
    out = []
    for (preset, shift, cost), members in groups.items():
        agg = {"preset": preset, "shift": shift, "cost": cost, "seeds": [m["seed"] for m in members]}
        for m in METRICS:
            agg[m] = float(np.mean([x[m] for x in members]))
        for k in ("positives", "negatives", "tp", "fp", "nonfinite"):
            agg[k] = int(sum(x.get(k, 0) for x in members))
        agg["tpr"] = agg["tp"] / agg["positives"] if agg["positives"] else None
        agg["fpr"] = agg["fp"] / agg["negatives"] if agg["negatives"] else None
        out.append(agg)
    return out


def add_deltas(agg: Sequence[dict], baseline: str = BASELINE) -> None:
    """Set `d_idf1` (IDF1 minus the baseline's on the same preset x shift) and `d_idsw` on every row."""
    base = {(r["preset"], r["shift"]): r for r in agg if r["cost"] == baseline}
    for r in agg:
        b = base.get((r["preset"], r["shift"]))
        r["d_idf1"] = None if b is None else r["idf1"] - b["idf1"]
        r["d_idsw"] = None if b is None else r["idsw"] - b["idsw"]


def worst_cases(agg: Sequence[Mapping[str, Any]], baseline: str = BASELINE, tolerance: float = TOLERANCE) -> list[dict]:
    """The headline: per cost (baseline left out), the minimum over preset x shift of IDF1 - baseline IDF1.

    Returns one dict per cost, in first-seen order: worst (the minimum), worst_cell (preset, shift),
    mean delta, cells, cells_below (delta < -tolerance), passes (worst >= -tolerance), and the nominal
    IDF1 and delta averaged over presets.
    """
    base = {(r["preset"], r["shift"]): r["idf1"] for r in agg if r["cost"] == baseline}
    by_cost: dict[str, list] = {}
    for r in agg:
        if r["cost"] != baseline and (r["preset"], r["shift"]) in base:
            by_cost.setdefault(r["cost"], []).append(r)
    out = []
    for cost, members in by_cost.items():
        deltas = [(m["idf1"] - base[(m["preset"], m["shift"])], m) for m in members]
        worst, cell = min(deltas, key=lambda d: d[0])
        nominal = [(d, m) for d, m in deltas if m["shift"] == "nominal"]
        out.append({
            "cost": cost, "worst": worst, "worst_cell": [cell["preset"], cell["shift"]],
            "mean": float(np.mean([d for d, _ in deltas])), "cells": len(deltas),
            "cells_below": sum(d < -tolerance for d, _ in deltas), "passes": worst >= -tolerance,
            "nominal_idf1": float(np.mean([m["idf1"] for _, m in nominal])) if nominal else None,
            "nominal_delta": float(np.mean([d for d, _ in nominal])) if nominal else None,
        })
    return out


def pair_view(agg: Sequence[Mapping[str, Any]]) -> list[dict]:
    """TPR and FPR at cost <= stitch_thresh per (shift, cost), pooled over presets and seeds."""
    groups: dict[tuple, dict] = {}
    for r in agg:
        g = groups.setdefault((r["shift"], r["cost"]), {"shift": r["shift"], "cost": r["cost"], "positives": 0,
                                                        "negatives": 0, "tp": 0, "fp": 0, "nonfinite": 0})
        for k in ("positives", "negatives", "tp", "fp", "nonfinite"):
            g[k] += r[k]
    for g in groups.values():
        g["tpr"] = g["tp"] / g["positives"] if g["positives"] else None
        g["fpr"] = g["fp"] / g["negatives"] if g["negatives"] else None
    return list(groups.values())


def run_suite(costs: Sequence[Cost], *, presets: Sequence[str] = PRESETS, seeds: Sequence[int] = HELD_OUT_SEEDS,
              shifts: Sequence[str] | None = None, duration: float | None = None, params: Mapping | None = None,
              config_path: str = DEFAULT_CONFIG, tolerance: float = TOLERANCE, progress: bool = True,
              desc: str = "shift") -> dict:
    """Run every cost on every preset x seed x shift and return the payload the benchmark writes.

    Parameters
    ----------
    costs : (key, label, cost_function config) tuples; Bhattacharyya is added first when absent (it is the
        reference of every delta) and runs once per cell.
    presets, seeds : the scenarios (held-out seeds by default).
    shifts : names from `training.shifts` (default: every shift this simulator supports); unsupported ones
        are skipped with a note, unknown ones raise ValueError.
    duration : scenario length in seconds (None: each preset's own).
    params : pp_lite parameters (default: read from `config_path`, parameters_Bhat.json).
    progress : a tqdm bar on stderr, one step per (cell, cost).

    Returns
    -------
    dict with presets, seeds, shifts, costs (labels), duration, thresholds, baseline, tolerance, notes,
    seconds, simulate_seconds, worst_case, pair_view, aggregate and rows.
    """
    from tqdm import tqdm

    costs = list(costs)
    if not any(label == BASELINE for _, label, _ in costs):
        costs.insert(0, BHAT)
    labels = [label for _, label, _ in costs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"cost labels must be unique, got {', '.join(labels)}")
    bad = [p for p in presets if p not in PRESETS]
    if bad:
        raise ValueError(f"unknown preset(s) {', '.join(bad)}; choose from {', '.join(PRESETS)}")
    supported = available_shifts()
    shifts = list(supported) if shifts is None else list(shifts)
    bad = [s for s in shifts if s not in SHIFTS]
    if bad:
        raise ValueError(f"unknown shift(s) {', '.join(bad)}; choose from {', '.join(SHIFT_NAMES)}")
    notes = [f"{s}: skipped, this simulator cannot produce it" for s in shifts if s not in supported]
    shifts = [s for s in shifts if s in supported]
    if params is None:
        params = pp_lite.load_parameters(config_path)

    start = time.perf_counter()
    rows: list[dict] = []
    sim_seconds = 0.0
    total = len(presets) * len(seeds) * len(shifts) * len(costs)
    with tqdm(total=total, unit="run", desc=desc, file=sys.stderr, dynamic_ncols=True, mininterval=1.0,
              disable=not progress) as bar:
        for preset in presets:
            for seed in seeds:
                t0 = time.perf_counter()
                nominal = shifted_scenario("nominal", preset, seed, duration)
                sim_seconds += time.perf_counter() - t0
                for shift in shifts:
                    bar.set_postfix_str(f"{preset}/{seed}/{shift}")
                    t0 = time.perf_counter()
                    gt_docs, raw_docs = nominal if shift == "nominal" else \
                        shifted_scenario(shift, preset, seed, duration, nominal=nominal)
                    sim_seconds += time.perf_counter() - t0
                    rows.extend(run_cell(gt_docs, raw_docs, costs, params, preset=preset, seed=seed, shift=shift,
                                         progress=lambda row: bar.update(1)))
    agg = aggregate(rows)
    add_deltas(agg)
    sa = params["stitcher_args"]
    return {"presets": list(presets), "seeds": [int(s) for s in seeds], "shifts": shifts, "costs": labels,
            "duration": duration, "config": os.path.basename(config_path),
            "thresholds": {"stitch_thresh": sa["stitch_thresh"], "master_stitch_thresh": sa.get("master_stitch_thresh"),
                           "time_win": params["time_win"], "mode": params.get("stitcher_mode", "local")},
            "baseline": BASELINE, "tolerance": tolerance, "notes": notes,
            "seconds": time.perf_counter() - start, "simulate_seconds": sim_seconds,
            "worst_case": worst_cases(agg, tolerance=tolerance), "pair_view": pair_view(agg),
            "aggregate": agg, "rows": rows}


def run_profile(costs: Sequence[Cost], profile: str = "quick", **kwargs) -> dict:
    """`run_suite` with a named profile: quick (20 s scenarios, seed 201) or full (preset durations, 201 + 202);
    every preset and every supported shift. The payload carries `profile`."""
    if profile not in PROFILES:
        raise ValueError(f"unknown shift profile {profile!r}; choose from {', '.join(PROFILES)}")
    prof = PROFILES[profile]
    for key in ("presets", "shifts"):      # a profile may narrow them (tests do); the shipped ones do not
        if key in prof:
            kwargs.setdefault(key, prof[key])
    payload = run_suite(costs, seeds=prof["seeds"], duration=prof["duration"], **kwargs)
    payload["profile"] = profile
    return payload


# ------------------------------------------------------------------------------------------ reading a payload
def worst_of(payload: Mapping[str, Any], label: str) -> dict:
    """The `worst_case` entry of cost `label`; ValueError when the payload has none (no cell shared with Bhat)."""
    for w in payload.get("worst_case", []):
        if w["cost"] == label:
            return w
    raise ValueError(f"the shift suite has no worst case for {label!r} (costs: {', '.join(payload.get('costs', []))})")


def robustness_record(payload: Mapping[str, Any], label: str, tolerance: float) -> dict:
    """What a promoted manifest records: the candidate's worst case and the suite that measured it."""
    w = worst_of(payload, label)
    return {"worst": float(w["worst"]), "worst_cell": list(w["worst_cell"]), "mean": float(w["mean"]),
            "cells": int(w["cells"]), "cells_below": int(sum(
                1 for r in payload["aggregate"] if r["cost"] == label and r.get("d_idf1") is not None
                and r["d_idf1"] < -tolerance)),
            "passes": bool(w["worst"] >= -tolerance), "tolerance": float(tolerance), "baseline": BASELINE,
            "profile": payload.get("profile"), "presets": list(payload["presets"]), "shifts": list(payload["shifts"]),
            "seeds": list(payload["seeds"]), "duration": payload.get("duration"),
            "nominal_idf1": w.get("nominal_idf1"), "nominal_delta": w.get("nominal_delta")}


def cell_table(payload: Mapping[str, Any], labels: Sequence[str]) -> str:
    """Plain-text per-cell table: Bhat IDF1 and each cost's IDF1 - Bhat IDF1 per preset x shift; '*' marks
    each cost's worst cell."""
    index = {(r["preset"], r["shift"], r["cost"]): r for r in payload["aggregate"]}
    worst = {w["cost"]: tuple(w["worst_cell"]) for w in payload.get("worst_case", [])}
    width = max([10] + [len(lb) + 2 for lb in labels])
    lines = [f"{'preset':<7}{'shift':<22}{'Bhat':>8}" + "".join(f"{lb:>{width}}" for lb in labels)]
    for p in payload["presets"]:
        for s in payload["shifts"]:
            b = index.get((p, s, BASELINE))
            if b is None:
                continue
            cells = []
            for lb in labels:
                r = index.get((p, s, lb))
                text = "-" if r is None else f"{r['idf1'] - b['idf1']:+.3f}" + ("*" if worst.get(lb) == (p, s) else " ")
                cells.append(f"{text:>{width}}")
            lines.append(f"{p:<7}{s:<22}{b['idf1']:>8.3f}" + "".join(cells))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ selection
SELECT_MODES = ("objective", "worst-case", "constraint")


def rank_candidates(candidates: Sequence[Mapping[str, Any]], worst: Mapping[str, float], mode: str,
                    tolerance: float = TOLERANCE) -> list[dict]:
    """The selection table: one row per candidate, best first, with `rank` (1 = chosen) or None (ruled out).

    candidates : dicts with `label` (the suite's cost label) and `value` (the study objective, higher is
        better), plus anything else to carry (trial number, run folder).
    worst : label -> worst case (min over cells of IDF1 - Bhat IDF1); a candidate missing here (its export
        failed) is ruled out in the worst-case and constraint modes.
    mode : "objective" (highest value), "worst-case" (highest worst case; ties -> higher value) or
        "constraint" (highest value among candidates with worst >= -tolerance; ties -> higher worst case).
    """
    if mode not in SELECT_MODES:
        raise ValueError(f"unknown selection mode {mode!r}; choose from {', '.join(SELECT_MODES)}")
    rows = []
    for c in candidates:
        w = worst.get(c["label"])
        rows.append({**c, "worst": None if w is None else float(w),
                     "passes": None if w is None else bool(w >= -tolerance)})

    def key(r):
        w = -math.inf if r["worst"] is None else r["worst"]
        if mode == "worst-case":
            return (w, r["value"])
        return (r["value"], w)

    eligible = [r for r in rows if mode == "objective" or (r["worst"] is not None and
                                                          (mode == "worst-case" or r["passes"]))]
    ranked = sorted(eligible, key=key, reverse=True)
    for i, r in enumerate(ranked, 1):
        r["rank"] = i
    chosen_ids = {id(r) for r in ranked}
    out = [r for r in rows if id(r) not in chosen_ids]
    for r in out:
        r["rank"] = None
    return ranked + out


def select_candidate(candidates: Sequence[Mapping[str, Any]], worst: Mapping[str, float], mode: str,
                     tolerance: float = TOLERANCE) -> tuple[dict | None, list[dict]]:
    """(the chosen candidate or None when none is eligible, the selection table of `rank_candidates`)."""
    table = rank_candidates(candidates, worst, mode, tolerance)
    chosen = table[0] if table and table[0]["rank"] == 1 else None
    return chosen, table
