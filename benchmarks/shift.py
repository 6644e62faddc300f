"""Distribution-shift benchmark: every stitch cost through pp_lite under named shifts of held-out scenarios.

For each preset (i free flow, ii snow, iii stop-and-go), held-out seed and shift of `training.shifts`
(nominal; velocity absent; velocity noise x3; confidence absent; confidence rescaled; dimension noise
x2; per-camera position offsets; 4-10 s occlusions; denser traffic; the presets' speed regimes swapped;
an error model outside the training ranges), stitch with the Bhattacharyya baseline and every shipped
learned cost (pp_lite in-process, online, thresholds 3/4 from parameters_Bhat.json) and score with
`training.evaluate`. The headline per cost is its worst case: the minimum over preset x shift of its
IDF1 minus Bhattacharyya's IDF1 on the same cell. The pair view gives TPR and FPR at cost 3 on the
pairs the stitcher scored, labelled from gt_ids as `training.pairs` labels them (consecutive fragments
of one vehicle = 1; same vehicle skipping a fragment = left out; everything else = 0).

    python benchmarks/shift.py            # presets i, ii, iii; seeds 201, 202; every shift and cost
    python benchmarks/shift.py --quick    # 20 s scenarios, seed 201: a fast look
    python benchmarks/shift.py --artifacts runs/new_artifacts --costs bhat,lr

Writes benchmarks/results/shift/shift.{json,md,png} (shift_quick.* with --quick).
"""
from __future__ import annotations

import io
import json
import math
import os
import platform
import sys
import time
from typing import Any, Iterable, Mapping, Sequence

import click
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, REPO)

import pp_lite  # noqa: E402
from runtime.cost import ConfigError, StitchCostFunction, load_cost_function  # noqa: E402
from runtime.feed import prepare_fragments  # noqa: E402
from runtime.files import atomic_write_bytes, atomic_write_text  # noqa: E402
from runtime.fragment import fragment_id  # noqa: E402
from runtime.onnx_cost import ArtifactError  # noqa: E402
from training.evaluate import evaluate_tracking  # noqa: E402
from training.io import gt_id_of  # noqa: E402
from training.shifts import SHIFTS, SHIFT_NAMES, available_shifts, shifted_scenario  # noqa: E402

PRESETS = ("i", "ii", "iii")
# Held out: not the training seeds (11-15), not the tracking benchmark's (101, 102), not the tests'.
HELD_OUT_SEEDS = (201, 202)
QUICK_DURATION_S = 20.0
BASELINE = "Bhat"
TOLERANCE = 0.005     # the bar: every learned cost >= Bhattacharyya IDF1 - 0.005 on every cell
# Artifact folder -> the label the other benchmarks use.
LEARNED = {"lr": "LR", "mlp": "MLP", "siamese": "SNN", "tcn": "TCN", "transformer": "Transformer"}
METRICS = ("idf1", "idsw", "mota")


# ------------------------------------------------------------------------------------------ costs
def discover_costs(artifacts_dir: str) -> tuple[list[tuple[str, str, dict]], list[str]]:
    """(key, label, cost_function config) of Bhattacharyya and every loadable artifact, and notes on the rest.

    `key` is what `--costs` selects: "bhat" or the artifact's folder name.
    """
    costs = [("bhat", BASELINE, {"type": "bhattacharyya"})]
    notes = []
    folders = sorted(os.listdir(artifacts_dir)) if os.path.isdir(artifacts_dir) else []
    order = {k: i for i, k in enumerate(LEARNED)}
    folders.sort(key=lambda f: (order.get(f, len(order)), f))
    for name in folders:
        folder = os.path.join(artifacts_dir, name)
        if not os.path.isfile(os.path.join(folder, "manifest.json")):
            continue
        config = {"type": "onnx", "artifact": os.path.abspath(folder)}
        try:
            load_cost_function(config)
        except (ConfigError, ArtifactError, ValueError, OSError) as exc:
            notes.append(f"{name}: skipped, artifact does not load ({exc})")
            continue
        costs.append((name, LEARNED.get(name, name), config))
    if len(costs) == 1:
        notes.append(f"no artifacts found under {artifacts_dir}: Bhattacharyya only")
    return costs, notes


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


# ------------------------------------------------------------------------------------------ reporting
def _fmt(v, fmt: str) -> str:
    return "-" if v is None else fmt.format(v)


def _md_table(headers: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"] + \
        ["| " + " | ".join(row) + " |" for row in body]


def render_markdown(agg, worst, pairs, costs: Sequence[str], shifts: Sequence[str], presets: Sequence[str]) -> list[str]:
    learned = [c for c in costs if c != BASELINE]
    lines = ["## Headline: worst case per cost", "",
             f"Minimum over preset x shift of (IDF1 - {BASELINE} IDF1) on the same cell; the bar is >= -{TOLERANCE}.", ""]
    body = [[w["cost"], f"{w['worst']:+.3f}", f"{w['worst_cell'][0]} / {w['worst_cell'][1]}", f"{w['mean']:+.3f}",
             f"{w['cells_below']}/{w['cells']}", "yes" if w["passes"] else "no",
             _fmt(w["nominal_idf1"], "{:.3f}"), _fmt(w["nominal_delta"], "{:+.3f}")] for w in worst]
    lines += _md_table(["cost", "worst dIDF1", "worst cell (preset / shift)", "mean dIDF1",
                        f"cells < -{TOLERANCE}", "passes", "nominal IDF1", "nominal dIDF1"], body)
    index = {(r["preset"], r["shift"], r["cost"]): r for r in agg}
    lines += ["", "## IDF1 per preset x shift", "",
              f"{BASELINE}: IDF1; learned costs: IDF1 (IDF1 - {BASELINE}). Means over seeds.", ""]
    body = []
    for p in presets:
        for s in shifts:
            b = index.get((p, s, BASELINE))
            if b is None:
                continue
            cells = [p, s, f"{b['idf1']:.3f}"]
            for c in learned:
                r = index.get((p, s, c))
                cells.append("-" if r is None else f"{r['idf1']:.3f} ({r['idf1'] - b['idf1']:+.3f})")
            body.append(cells)
    lines += _md_table(["preset", "shift", BASELINE] + learned, body)
    lines += ["", "## ID switches per preset x shift", "", "Means over seeds.", ""]
    body = []
    for p in presets:
        for s in shifts:
            if (p, s, BASELINE) not in index:
                continue
            body.append([p, s] + [_fmt(index.get((p, s, c), {}).get("idsw"), "{:.1f}") for c in costs])
    lines += _md_table(["preset", "shift"] + list(costs), body)
    pv = {(g["shift"], g["cost"]): g for g in pairs}
    lines += ["", "## Pair view: TPR / FPR at cost 3 per shift", "",
              "Pairs the online stitcher scored, pooled over presets and seeds, labelled from gt_ids as "
              "training/pairs.py labels them. TPR = true links with cost <= 3; FPR = other pairs with cost <= 3.", ""]
    body = []
    for s in shifts:
        cells = [s]
        for c in costs:
            g = pv.get((s, c))
            cells.append("-" if g is None or g["tpr"] is None or g["fpr"] is None
                         else f"{100 * g['tpr']:.1f}% / {100 * g['fpr']:.2f}%")
        body.append(cells)
    lines += _md_table(["shift"] + list(costs), body)
    bad = [g for g in pairs if g["nonfinite"]]
    if bad:
        lines += ["", "Non-finite costs: " + ", ".join(f"{g['cost']} on {g['shift']}: {g['nonfinite']}" for g in bad)]
    return lines


def heatmap_png(agg, costs: Sequence[str], shifts: Sequence[str], presets: Sequence[str], title: str) -> bytes:
    """PNG bytes: one panel per preset, learned cost x shift, colour = IDF1 - Bhattacharyya IDF1 (0 white)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    learned = [c for c in costs if c != BASELINE] or [BASELINE]
    index = {(r["preset"], r["shift"], r["cost"]): r.get("d_idf1") for r in agg}
    data = np.full((len(presets), len(learned), len(shifts)), np.nan)
    for k, p in enumerate(presets):
        for i, c in enumerate(learned):
            for j, s in enumerate(shifts):
                v = index.get((p, s, c))
                if v is not None:
                    data[k, i, j] = v
    finite = data[np.isfinite(data)]
    # Colour saturates at +-0.05 IDF1 so that one large gain does not wash out the losses; numbers are exact.
    span = min(0.05, max(0.01, float(np.max(np.abs(finite))) if finite.size else 0.01))
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-span, vmax=span)
    height = 0.9 + len(presets) * (0.45 + 0.32 * len(learned))
    fig, axes = plt.subplots(len(presets), 1, figsize=(max(7.0, 0.72 * len(shifts) + 2.2), height),
                             sharex=True, squeeze=False)
    im = None
    for k, (p, ax) in enumerate(zip(presets, axes[:, 0])):
        im = ax.imshow(data[k], cmap="RdBu", aspect="auto", norm=norm)
        for i in range(len(learned)):
            for j in range(len(shifts)):
                v = data[k, i, j]
                if np.isfinite(v):
                    ax.text(j, i, f"{100 * v:+.1f}", ha="center", va="center", fontsize=7,
                            color="white" if abs(v) > 0.6 * span else "black")
        ax.set_yticks(range(len(learned)), learned, fontsize=8)
        ax.set_ylabel(f"preset {p}", fontsize=9)
    axes[-1, 0].set_xticks(range(len(shifts)), list(shifts), rotation=35, ha="right", fontsize=8)
    axes[0, 0].set_title(title, fontsize=9)
    fig.colorbar(im, ax=axes[:, 0].tolist(), label=f"IDF1 - {BASELINE} IDF1 (cell text: x100)", fraction=0.025,
                 pad=0.01, extend="both")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _simulator_version() -> str | None:
    from training import simulate as sim
    return getattr(sim, "SIMULATOR_VERSION", None)


def _git_head() -> str | None:
    """The repository's HEAD commit and whether the working tree had changes (results depend on both)."""
    import subprocess
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}{' (working tree modified)' if dirty else ''}" if head else None


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    raise TypeError(type(obj).__name__)


def _csv(value: str, what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise click.BadParameter(f"{what}: give at least one, comma-separated")
    return items


# ------------------------------------------------------------------------------------------ CLI
@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--presets", default=",".join(PRESETS), show_default=True,
              help="comma-separated scenario presets (i free flow, ii snow, iii stop-and-go)")
@click.option("--seeds", default=",".join(map(str, HELD_OUT_SEEDS)), show_default=True,
              help="comma-separated simulator seeds, held out from training (11-15) and the other benchmarks")
@click.option("--shifts", "shifts_opt", default="all", show_default=True,
              help=f"comma-separated shifts, or all: {', '.join(SHIFT_NAMES)}")
@click.option("--costs", "costs_opt", default="all", show_default=True,
              help="comma-separated costs: bhat and artifact folder names (lr, mlp, siamese, tcn, transformer); "
                   "Bhattacharyya always runs (it is the reference)")
@click.option("--artifacts", "artifacts_dir", default=os.path.join(REPO, "artifacts"), show_default=True,
              type=click.Path(file_okay=False), help="folder with one exported model per subfolder")
@click.option("--quick", is_flag=True,
              help=f"a fast look: {QUICK_DURATION_S:g} s scenarios, the first seed only; writes shift_quick.*")
@click.option("--config", "config_path", default=os.path.join(REPO, "parameters_Bhat.json"), show_default=True,
              type=click.Path(dir_okay=False, exists=True),
              help="parameters file giving thresholds and windows (its cost_function is replaced per cost)")
@click.option("--out", "out_dir", default=os.path.join(REPO, "benchmarks", "results", "shift"), show_default=True,
              type=click.Path(file_okay=False), help="folder for shift.md, shift.json and shift.png")
@click.option("--from-json", "from_json", default=None, type=click.Path(dir_okay=False, exists=True),
              help="run nothing: rewrite the .md and .png next to this earlier shift.json from its numbers")
def main(presets, seeds, shifts_opt, costs_opt, artifacts_dir, quick, config_path, out_dir, from_json):
    """Run the distribution-shift benchmark and write its tables and heatmap."""
    from tqdm import tqdm

    if from_json:
        with open(from_json, encoding="utf-8") as fh:
            payload = json.load(fh)
        stem = os.path.splitext(os.path.basename(from_json))[0]
        write_report(payload, os.path.dirname(os.path.abspath(from_json)), stem, write_json=False)
        return

    preset_list = _csv(presets, "--presets")
    bad = [p for p in preset_list if p not in PRESETS]
    if bad:
        raise click.BadParameter(f"unknown preset(s) {', '.join(bad)}; choose from {', '.join(PRESETS)}")
    try:
        seed_list = [int(s) for s in _csv(seeds, "--seeds")]
    except ValueError:
        raise click.BadParameter(f"--seeds must be comma-separated integers, got {seeds!r}") from None
    supported = available_shifts()
    shift_list = list(supported) if shifts_opt == "all" else _csv(shifts_opt, "--shifts")
    bad = [s for s in shift_list if s not in SHIFTS]
    if bad:
        raise click.BadParameter(f"unknown shift(s) {', '.join(bad)}; choose from {', '.join(SHIFT_NAMES)}")
    notes = [f"{s}: skipped, this simulator cannot produce it" for s in shift_list if s not in supported]
    shift_list = [s for s in shift_list if s in supported]
    costs, cost_notes = discover_costs(artifacts_dir)
    notes += cost_notes
    if costs_opt != "all":
        wanted = set(_csv(costs_opt, "--costs"))
        known = {k for k, _, _ in costs}
        missing = sorted(wanted - known)
        if missing:
            raise click.BadParameter(f"--costs: {', '.join(missing)} not available; available: {', '.join(sorted(known))}")
        costs = [c for c in costs if c[0] == "bhat" or c[0] in wanted]
    duration = QUICK_DURATION_S if quick else None
    if quick:
        seed_list = seed_list[:1]
    params = pp_lite.load_parameters(config_path)
    cost_labels = [label for _, label, _ in costs]
    for note in notes:
        click.echo(f"note: {note}", err=True)

    start = time.perf_counter()
    rows: list[dict] = []
    sim_seconds = 0.0
    total = len(preset_list) * len(seed_list) * len(shift_list) * len(costs)
    with tqdm(total=total, unit="run", desc="shift", file=sys.stderr, dynamic_ncols=True,
              mininterval=1.0) as bar:
        for preset in preset_list:
            for seed in seed_list:
                t0 = time.perf_counter()
                nominal = shifted_scenario("nominal", preset, seed, duration)
                sim_seconds += time.perf_counter() - t0
                for shift in shift_list:
                    bar.set_postfix_str(f"{preset}/{seed}/{shift}")
                    t0 = time.perf_counter()
                    gt_docs, raw_docs = nominal if shift == "nominal" else \
                        shifted_scenario(shift, preset, seed, duration, nominal=nominal)
                    sim_seconds += time.perf_counter() - t0
                    rows.extend(run_cell(gt_docs, raw_docs, costs, params, preset=preset, seed=seed, shift=shift,
                                         progress=lambda row: bar.update(1)))
    elapsed = time.perf_counter() - start
    agg = aggregate(rows)
    add_deltas(agg)
    payload = {"presets": preset_list, "seeds": seed_list, "shifts": shift_list, "costs": cost_labels,
               "duration": duration, "quick": bool(quick), "config": os.path.basename(config_path),
               "thresholds": {"stitch_thresh": params["stitcher_args"]["stitch_thresh"],
                              "master_stitch_thresh": params["stitcher_args"].get("master_stitch_thresh"),
                              "time_win": params["time_win"], "mode": params.get("stitcher_mode", "local")},
               "command": " ".join(["python", "benchmarks/shift.py", *sys.argv[1:]]),
               "artifacts": os.path.relpath(os.path.abspath(artifacts_dir), REPO),
               "machine": f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, one worker",
               "baseline": BASELINE, "tolerance": TOLERANCE, "notes": notes, "seconds": elapsed,
               "simulate_seconds": sim_seconds, "simulator_version": _simulator_version(), "git": _git_head(),
               "worst_case": worst_cases(agg), "pair_view": pair_view(agg), "aggregate": agg, "rows": rows}
    write_report(payload, out_dir, "shift_quick" if quick else "shift", write_json=True)


def write_report(payload: Mapping[str, Any], out_dir: str, stem: str, write_json: bool) -> None:
    """Write `stem`.md and `stem`.png (and `stem`.json when `write_json`) from a benchmark payload."""
    agg, worst, pairs = payload["aggregate"], payload["worst_case"], payload["pair_view"]
    costs, shifts, presets = payload["costs"], payload["shifts"], payload["presets"]
    th = payload.get("thresholds") or {}
    duration = payload.get("duration")
    header = [
        f"# Distribution-shift benchmark{' (quick)' if payload.get('quick') else ''}", "",
        f"Presets {', '.join(presets)}; held-out seeds {', '.join(map(str, payload['seeds']))}; scenario length "
        f"{'%g s' % duration if duration else 'preset default'}; pp_lite online, thresholds from "
        f"{payload.get('config')} (stitch_thresh {th.get('stitch_thresh', '?')}, master "
        f"{th.get('master_stitch_thresh', '?')}, time_win {th.get('time_win', '?')}, mode {th.get('mode', '?')}); "
        f"costs from {payload.get('artifacts')}.",
        f"Machine: {payload.get('machine', '?')}; total {payload['seconds']:.0f} s "
        f"({payload.get('simulate_seconds', 0):.0f} s simulating). Command: `{payload.get('command')}`. "
        f"Simulator {payload.get('simulator_version') or '?'}, code {payload.get('git') or '?'}.", "",
        "Shifts: " + "; ".join(f"**{s}**: {SHIFTS[s].description}" for s in shifts if s in SHIFTS) + ".", "",
    ]
    if payload.get("notes"):
        header += ["Notes:", ""] + [f"- {n}" for n in payload["notes"]] + [""]
    body = render_markdown(agg, worst, pairs, costs, shifts, presets)
    click.echo("\n".join(body[:len(worst) + 6]))
    os.makedirs(out_dir, exist_ok=True)
    atomic_write_text(os.path.join(out_dir, f"{stem}.md"), "\n".join(header + body + ["", f"![heatmap]({stem}.png)", ""]))
    if write_json:
        atomic_write_text(os.path.join(out_dir, f"{stem}.json"), json.dumps(payload, indent=1, default=_json_default))
    title = (f"IDF1 - {BASELINE} IDF1 per cost, preset and shift; seeds {', '.join(map(str, payload['seeds']))}"
             f"{', %g s scenarios' % duration if duration else ''}")
    atomic_write_bytes(os.path.join(out_dir, f"{stem}.png"), heatmap_png(agg, costs, shifts, presets, title))
    click.echo(f"wrote {os.path.join(out_dir, stem)}.md{', .json' if write_json else ''} and .png "
               f"({payload['seconds']:.0f} s)", err=True)


if __name__ == "__main__":
    main()
