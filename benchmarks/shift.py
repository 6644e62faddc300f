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
import os
import platform
import sys
from typing import Any, Mapping, Sequence

import click
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, REPO)

import pp_lite  # noqa: E402
from runtime.cost import ConfigError, load_cost_function  # noqa: E402
from runtime.files import atomic_write_bytes, atomic_write_text  # noqa: E402
from runtime.onnx_cost import ArtifactError  # noqa: E402
from training.shifts import SHIFTS, SHIFT_NAMES, available_shifts  # noqa: E402
# The suite's core (also run by `promote --shift-guard` and `tune --select`); re-exported here.
from workflows.shift_suite import (BASELINE, HELD_OUT_SEEDS, METRICS, PRESETS, QUICK_DURATION_S,  # noqa: E402,F401
                                   TOLERANCE, PairLabels, RecordingCost, add_deltas, aggregate, pair_counts,
                                   pair_view, run_cell, run_suite, worst_cases)

# Artifact folder -> the label the other benchmarks use.
LEARNED = {"lr": "LR", "mlp": "MLP", "siamese": "SNN", "tcn": "TCN", "transformer": "Transformer"}


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
        if name.endswith(".prev"):  # promote's backup of the artifact it replaced, not a shipped cost
            notes.append(f"{name}: skipped, a backup kept by promote")
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
    for note in notes:
        click.echo(f"note: {note}", err=True)

    payload = run_suite(costs, presets=preset_list, seeds=seed_list, shifts=shift_list, duration=duration,
                        params=params, config_path=config_path)
    payload["notes"] = notes + payload["notes"]
    payload.update({"quick": bool(quick), "command": " ".join(["python", "benchmarks/shift.py", *sys.argv[1:]]),
                    "artifacts": os.path.relpath(os.path.abspath(artifacts_dir), REPO),
                    "machine": f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
                               "one worker",
                    "simulator_version": _simulator_version(), "git": _git_head()})
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
