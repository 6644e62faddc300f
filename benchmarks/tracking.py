"""Tracking-quality benchmark: every shipped stitch cost through pp_lite on held-out simulated scenarios.

For each preset (i free flow, ii snow, iii stop-and-go) and seed, simulate GT and RAW, stitch with
the Bhattacharyya baseline and with every learned cost whose artifact exists under artifacts/, and
score the result with `training.evaluate`. References: RAW fragments as-is, the oracle grouping of
fragments by GT vehicle, the "perfect cost" (1 for a true consecutive pair, no edge otherwise) with
both solvers, and Bhattacharyya with the reference's eligibility window. Prints one table and writes
benchmarks/results/tracking.md and tracking.json.

    python benchmarks/tracking.py            # presets i, ii, iii; seeds 101, 102
    python benchmarks/tracking.py --quick    # 20 s scenarios, seed 101
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from typing import Any, Mapping, Sequence

import click
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, REPO)

import pp_lite  # noqa: E402
from runtime.cost import INVALID_COST, ConfigError, StitchCostFunction, load_cost_function  # noqa: E402
from runtime.feed import prepare_fragments  # noqa: E402
from runtime.files import atomic_write_text  # noqa: E402
from runtime.fragment import Fragment, fragment_id  # noqa: E402
from runtime.onnx_cost import ArtifactError  # noqa: E402
from training.evaluate import evaluate_tracking  # noqa: E402
from training.io import gt_id_of  # noqa: E402
from training.simulate import simulate  # noqa: E402

PRESETS = ("i", "ii", "iii")
HELD_OUT_SEEDS = (101, 102)
LEARNED = (("LR", "lr"), ("MLP", "mlp"), ("SNN", "siamese"), ("TCN", "tcn"), ("Transformer", "transformer"))
QUICK_DURATION_S = 20.0
# Columns of the table: (key in a result row, header, format).
COLUMNS = (
    ("mota", "MOTA", "{:.3f}"), ("idf1", "IDF1", "{:.3f}"), ("precision", "Prec", "{:.3f}"),
    ("recall", "Rec", "{:.3f}"), ("idsw", "IDsw", "{:.1f}"), ("fp", "FP", "{:.0f}"), ("fn", "FN", "{:.0f}"),
    ("sw_per_gt", "Sw/GT", "{:.2f}"), ("fgmt_per_gt", "Fgmt/GT", "{:.2f}"), ("traj_per_gt", "Traj/GT", "{:.2f}"),
    ("cost_pairs", "cost pairs", "{:.0f}"), ("stitch_s", "stitch s", "{:.2f}"),
    ("objective_gap_pct", "gap %", "{:.2f}"),
)


class PerfectCost(StitchCostFunction):
    """Cost 1 for a true consecutive pair (same GT vehicle, no fragment of it in between), no edge otherwise.

    Consecutive means next in start-time order among the vehicle's fragments, the label rule of pair
    mining (FEATURES.md §4). Shows what the stitcher achieves when the cost is never wrong.
    """

    name = "perfect"

    def __init__(self, raw_docs: Sequence[Mapping[str, Any]]):
        docs, _ = prepare_fragments(raw_docs, on_bad_fragment="skip")
        by_vehicle: dict[str, list[Mapping[str, Any]]] = {}
        for doc in docs:
            gt = gt_id_of(doc)
            if gt is not None:
                by_vehicle.setdefault(gt, []).append(doc)
        self._next: dict[str, str] = {}
        for members in by_vehicle.values():
            members.sort(key=lambda d: (d["timestamp"][0], d["timestamp"][-1]))
            for a, b in zip(members, members[1:]):
                self._next[fragment_id(a)] = fragment_id(b)

    def compute_cost(self, track1, track2, TIME_WIN, param=None) -> float:
        gap = track2["timestamp"][0] - track1["timestamp"][-1]
        if not 0 <= gap <= TIME_WIN:
            return INVALID_COST
        return 1.0 if self._next.get(fragment_id(track1)) == fragment_id(track2) else INVALID_COST


def oracle_trajectories(raw_docs: Sequence[Mapping[str, Any]]) -> list[dict]:
    """REC documents grouping the prepared fragments by majority GT vehicle (unlabelled ones alone)."""
    docs, _ = prepare_fragments(raw_docs, on_bad_fragment="skip")
    groups: dict[str, list] = {}
    for doc in docs:
        key = gt_id_of(doc) or f"unlabelled:{fragment_id(doc)}"
        groups.setdefault(f"{doc['direction']}:{key}", []).append((Fragment.from_document(doc), doc))
    out = []
    for k, members in enumerate(groups.values()):
        rec, _ = pp_lite.assemble_trajectory(members, f"oracle_{k:05d}")
        out.append(rec)
    return out


def _methods(artifacts_dir: str, offline_costs: bool) -> tuple[list[tuple[str, str, dict]], list[str]]:
    """(label, solver, options) of every run, and notes on the costs left out."""
    methods = [("RAW (as-is)", "-", {"kind": "raw"}), ("oracle (GT grouping)", "-", {"kind": "oracle"}),
               ("perfect cost", "online", {"kind": "perfect"}), ("perfect cost", "offline", {"kind": "perfect"}),
               ("Bhat", "online", {"kind": "cost", "config": {"type": "bhattacharyya"}}),
               ("Bhat (legacy window)", "online", {"kind": "cost", "config": {"type": "bhattacharyya"},
                                                   "legacy_window": True})]
    if offline_costs:
        methods.append(("Bhat", "offline", {"kind": "cost", "config": {"type": "bhattacharyya"}}))
    notes = []
    for label, kind in LEARNED:
        folder = os.path.join(artifacts_dir, kind)
        if not os.path.isfile(os.path.join(folder, "manifest.json")):
            notes.append(f"{label}: skipped, no artifact at {os.path.relpath(folder, REPO)}/manifest.json")
            continue
        config = {"type": kind, "artifact": folder}
        try:
            load_cost_function(config)
        except (ConfigError, ArtifactError, ValueError, OSError) as exc:
            notes.append(f"{label}: skipped, artifact does not load ({exc})")
            continue
        methods.append((label, "online", {"kind": "cost", "config": config}))
        if offline_costs:
            methods.append((label, "offline", {"kind": "cost", "config": config}))
    return methods, notes


def run_instance(preset: str, seed: int, duration: float | None, methods, params: dict, say, bar=None) -> list[dict]:
    """All methods on one simulated scenario instance; one result row per method (`bar`: a tqdm bar
    advanced once per method)."""
    t0 = time.perf_counter()
    gt_docs, raw_docs = simulate(preset, seed, duration=duration)
    say(f"{preset}/seed {seed}: {len(gt_docs)} vehicles, {len(raw_docs)} fragments "
        f"(simulated in {time.perf_counter() - t0:.1f} s)")
    rows = []
    for label, solver, opts in methods:
        if bar is not None:
            bar.set_postfix_str(f"{preset}/seed {seed}: {label} {solver}")
        start = time.perf_counter()
        summary: dict = {}
        if opts["kind"] == "raw":
            rec_docs = raw_docs
        elif opts["kind"] == "oracle":
            rec_docs = oracle_trajectories(raw_docs)
        else:
            cost_fn = PerfectCost(raw_docs) if opts["kind"] == "perfect" else \
                load_cost_function(opts["config"], base_dir=REPO)
            rec_docs, summary = pp_lite.run(raw_docs, params, solver=solver, cost_fn=cost_fn,
                                            on_bad_fragment="skip", legacy_window=opts.get("legacy_window", False),
                                            name=preset)
        metrics = evaluate_tracking(gt_docs, rec_docs)
        row = {"scenario": preset, "seed": seed, "method": label, "solver": solver,
               "cost_pairs": summary.get("cost_pairs"), "stitch_s": summary.get("timings", {}).get("stitch_s"),
               "objective_gap_pct": summary.get("objective_gap_pct"),
               "online_objective": summary.get("online_objective"),
               "offline_objective": summary.get("offline_objective"),
               **{k: v for k, v in metrics.items() if not k.startswith("_")}}
        rows.append(row)
        say(f"  {label:<22} {solver:<7} MOTA {row['mota']:.3f}  IDF1 {row['idf1']:.3f}  IDsw {row['idsw']:>4}  "
            f"traj/GT {row['traj_per_gt']:.2f}  ({time.perf_counter() - start:.1f} s)")
        if bar is not None:
            bar.update(1)
    return rows


def aggregate(rows: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Mean over seeds per (scenario, method, solver), in first-seen order."""
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r["scenario"], r["method"], r["solver"]), []).append(r)
    out = []
    for (scenario, method, solver), members in groups.items():
        agg = {"scenario": scenario, "method": method, "solver": solver, "seeds": [m["seed"] for m in members]}
        for key, _, _ in COLUMNS:
            values = [m[key] for m in members if m.get(key) is not None]
            agg[key] = float(np.mean(values)) if values else None
        out.append(agg)
    return out


def render_table(agg: Sequence[Mapping[str, Any]], markdown: bool) -> str:
    headers = ["scenario", "method", "solver"] + [h for _, h, _ in COLUMNS]
    body = []
    for r in agg:
        cells = [r["scenario"], r["method"], r["solver"]]
        for key, _, fmt in COLUMNS:
            v = r.get(key)
            cells.append("-" if v is None else fmt.format(v))
        body.append(cells)
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(c) + " |" for c in body]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *body)]
    fmt_row = lambda cells: "  ".join(str(c).rjust(w) if i > 2 else str(c).ljust(w)  # noqa: E731
                                      for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt_row(headers)] + [fmt_row(c) for c in body])


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--presets", default=",".join(PRESETS), show_default=True,
              help="comma-separated scenario presets to run (i free flow, ii snow, iii stop-and-go)")
@click.option("--seeds", default=",".join(map(str, HELD_OUT_SEEDS)), show_default=True,
              help="comma-separated simulator seeds; use seeds no model was trained or calibrated on")
@click.option("--quick", is_flag=True,
              help=f"a fast check: {QUICK_DURATION_S:g} s scenarios, the first seed only; writes tracking_quick.*")
@click.option("--offline", "offline_costs", is_flag=True,
              help="also run every cost with the offline (exact assignment) solver")
@click.option("--config", "config_path", default=os.path.join(REPO, "parameters_Bhat.json"), show_default=True,
              type=click.Path(dir_okay=False, exists=True),
              help="parameters file giving thresholds and windows (its cost_function is replaced per method)")
@click.option("--artifacts", "artifacts_dir", default=os.path.join(REPO, "artifacts"), show_default=True,
              type=click.Path(file_okay=False), help="folder with one exported model per subfolder (lr, mlp, ...)")
@click.option("--out", "out_dir", default=os.path.join(REPO, "benchmarks", "results"), show_default=True,
              type=click.Path(file_okay=False), help="folder for tracking.md and tracking.json")
def main(presets, seeds, quick, offline_costs, config_path, artifacts_dir, out_dir):
    """Run the tracking-quality benchmark and write its table."""
    from tqdm import tqdm

    say = lambda line: tqdm.write(line, file=sys.stderr)  # noqa: E731  (keeps the progress bar intact)
    try:
        preset_list = [p.strip() for p in presets.split(",") if p.strip()]
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise click.ClickException(f"--seeds must be comma-separated integers, got {seeds!r}") from None
    bad = [p for p in preset_list if p not in PRESETS]
    if bad or not preset_list or not seed_list:
        raise click.ClickException(f"presets must be among {', '.join(PRESETS)} and seeds non-empty")
    duration = QUICK_DURATION_S if quick else None
    if quick:
        seed_list = seed_list[:1]
    params = pp_lite.load_parameters(config_path)
    methods, notes = _methods(artifacts_dir, offline_costs)
    for note in notes:
        say(f"note: {note}")
    start = time.perf_counter()
    rows = []
    # one bar with ETA over every (scenario instance, method) run
    with tqdm(total=len(preset_list) * len(seed_list) * len(methods), desc="tracking", unit="run",
              file=sys.stderr, dynamic_ncols=True) as bar:
        for preset in preset_list:
            for seed in seed_list:
                rows.extend(run_instance(preset, seed, duration, methods, params, say, bar))
    agg = aggregate(rows)
    elapsed = time.perf_counter() - start
    table = render_table(agg, markdown=False)
    click.echo(table)
    stem = "tracking_quick" if quick else "tracking"
    evaluator = rows[0]["evaluator"] if rows else ""
    header = [
        f"# Tracking benchmark{' (quick)' if quick else ''}",
        "",
        f"Presets {', '.join(preset_list)}; seeds {', '.join(map(str, seed_list))} (held out); "
        f"scenario length {'%g s' % duration if duration else 'preset default (60 / 51 / 50 s)'}; "
        f"thresholds and windows from {os.path.basename(config_path)} "
        f"(stitch_thresh {params['stitcher_args']['stitch_thresh']}, time_win {params['time_win']}, "
        f"mode {params.get('stitcher_mode', 'local')}).",
        f"Metrics: {evaluator}. Values are means over seeds. `cost pairs` and `stitch s` are pp_lite's "
        "pairs scored and stitching time (feed excluded); `gap %` is (offline - online) / offline objective.",
        f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}; "
        f"total {elapsed:.0f} s. Command: `{' '.join(['python', 'benchmarks/tracking.py', *sys.argv[1:]])}`.",
        "",
    ]
    if notes:
        header += ["Left out:", ""] + [f"- {n}" for n in notes] + [""]
    md = "\n".join(header + [render_table(agg, markdown=True), ""])
    atomic_write_text(os.path.join(out_dir, f"{stem}.md"), md)
    payload = {"presets": preset_list, "seeds": seed_list, "duration": duration, "config": os.path.basename(config_path),
               "notes": notes, "seconds": elapsed, "aggregate": agg, "rows": rows}
    atomic_write_text(os.path.join(out_dir, f"{stem}.json"), json.dumps(payload, indent=1, default=_json_default))
    say(f"wrote {os.path.join(out_dir, stem)}.md and .json ({elapsed:.0f} s)")


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    raise TypeError(type(obj).__name__)


if __name__ == "__main__":
    main()
