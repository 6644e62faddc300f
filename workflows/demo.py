"""`make demo`: the main job end to end, on the embedded default.

simulate the three I-24 scenarios -> mine candidate pairs -> train LR, MLP, Siamese, TCN, Transformer ->
export each with calibration folded in -> stitch the held-out scenarios with pp_lite -> evaluate -> a
short summary (headline table, what it means, where every picture is).

\b
    python -m workflows.demo            # the default schedule: all five models, fewer epochs and samples
    python -m workflows.demo --full     # the full schedule: two training seeds, more epochs
    python -m workflows.demo --tiny     # a smoke run: a 10 s scenario ii, tiny models (what the test runs)

Measured running times and memory are in docs/demo.md.

Exported models go to a separate folder (default artifacts_demo/), never over the shipped artifacts/.
Everything the demo writes is a normal run folder / artifact: `runs`, `promote` and `pp_lite` read them.
"""
from __future__ import annotations

import dataclasses
import gc
import json
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import click

KINDS = ("lr", "mlp", "siamese", "tcn", "transformer")
LABELS = {"lr": "LR", "mlp": "MLP", "siamese": "Siamese", "tcn": "TCN", "transformer": "Transformer"}
PRESET_NAMES = {"i": "free flow (i)", "ii": "snow (ii)", "iii": "stop-and-go (iii)"}
DEMO_SEED = 101  # held out: never used by training, validation, calibration or test
SEQUENCE = ("siamese", "tcn", "transformer")
SUMMARY = "demo_summary"


@dataclass(frozen=True)
class Profile:
    """What one demo schedule trains on and for how long."""

    name: str
    about: str
    data: Mapping[str, Any]                      # DatasetSpec keyword arguments
    train: Mapping[str, Mapping[str, Any]]       # per kind: TrainConfig overrides (epochs, ...)
    model: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)   # per kind: model Config overrides
    max_neg: Mapping[str, float] = field(default_factory=dict)            # per kind: training negatives per positive
    duration: float | None = None               # scenario length of the held-out stitching (None: presets')
    small_parity: bool = False                  # accept parity on however few test pairs there are
    # validation pairs used for early stopping: all positives and at most this many negatives per positive
    # (None: the natural ratio). Calibration and test always keep the natural ratio.
    val_neg_per_pos: float | None = None
    # export each model in a child process, so the export's own peak memory (validation on every test pair)
    # does not stack on what training left in this one
    export_in_child: bool = True


# The MLP configuration its tuning study chose, which the shipped MLP uses (docs/training.md).
SHIPPED_MLP_MODEL = {"hidden": (64, 32), "dropout": 0.19}
SHIPPED_MLP_TRAIN = {"epochs": 30, "lr": 0.0037, "patience": 6}

PROFILES = {
    "default": Profile(
        "default", "two training seeds, the shipped MLP's configuration (64-32, up to 30 epochs), sequence "
                   "models 1 epoch on 1 negative per positive, early stopping on all validation positives and "
                   "20 negatives per positive",
        data={"train_seeds": (11, 12)},
        train={"mlp": SHIPPED_MLP_TRAIN, **{k: {"epochs": 1} for k in SEQUENCE}},
        model={"mlp": SHIPPED_MLP_MODEL},
        max_neg={"mlp": 30.0, **{k: 1.0 for k in SEQUENCE}},
        val_neg_per_pos=20.0),
    "full": Profile(
        "full", "two training seeds, the shipped MLP's configuration, sequence models 4 epochs on 4 negatives "
                "per positive",
        data={},
        train={"mlp": SHIPPED_MLP_TRAIN, **{k: {"epochs": 4} for k in SEQUENCE}},
        model={"mlp": SHIPPED_MLP_MODEL}),
    "tiny": Profile(
        "tiny", "a smoke run: scenario ii only, 10 s long, 1 epoch of the sequence models, tiny models "
                "(numbers mean nothing)",
        data={"duration": 10.0, "train_seeds": (11, 12), "presets": ("ii",)},
        # the MLP gets enough steps to rank pairs the right way round (the calibration refuses one that does
        # not); the sequence models start from it and train one epoch
        train={"mlp": {"epochs": 4, "batch_size": 32, "lr": 5e-3},
               **{k: {"epochs": 1, "batch_size": 128} for k in SEQUENCE}},
        model={"mlp": {"hidden": (16,)},
               "siamese": {"hidden": 8, "layers": 1, "head_hidden": (16,), "window_length": 16},
               "tcn": {"channels": (8,), "head_hidden": (16,), "window_length": 16},
               "transformer": {"d_model": 8, "heads": 2, "layers": 1, "feedforward": 16, "head_hidden": (16,),
                               "window_length": 16}},
        max_neg={"mlp": 10.0, **{k: 2.0 for k in SEQUENCE}},
        duration=10.0, small_parity=True, export_in_child=False),
}


def _say(line: str = "") -> None:
    from tqdm import tqdm

    tqdm.write(line, file=sys.stdout)
    sys.stdout.flush()


def peak_rss_mb() -> dict:
    """Peak resident memory (MB) of this process and of its finished children (Linux reports KiB)."""
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 2 ** 20
    return {"self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale,
            "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale}


def cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (the export processes)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Stages:
    """Wall time and peak memory after each stage, for the summary and demo_summary.json."""

    def __init__(self):
        self.rows: list[dict] = []
        self.start = time.perf_counter()
        self._t = self.start
        self._cpu = cpu_seconds()
        self._name: str | None = None

    def begin(self, name: str, line: str) -> None:
        self._close()
        self._name, self._t, self._cpu = name, time.perf_counter(), cpu_seconds()
        _say(f"== {line}")

    def _close(self) -> None:
        if self._name is not None:
            # CPU seconds (all threads of this process) next to wall seconds: on a busy machine the wall time
            # grows with the load, the CPU time much less
            self.rows.append({"stage": self._name, "seconds": round(time.perf_counter() - self._t, 1),
                              "cpu_seconds": round(cpu_seconds() - self._cpu, 1),
                              "peak_rss_mb": round(peak_rss_mb()["self"], 0)})
            self._name = None

    def done(self) -> float:
        self._close()
        return time.perf_counter() - self.start


# ------------------------------------------------------------------------------------------------------
# Stitching and scoring the held-out scenarios

def stitch_and_score(data_dir: str, artifacts_dir: str, kinds: Sequence[str], presets: Sequence[str],
                     out_dir: str, config_path: str, progress: bool = True) -> dict:
    """pp_lite with Bhattacharyya and every exported cost on each held-out scenario in `data_dir`.

    Writes one REC file per (preset, cost) under `out_dir` and returns {"rows": [...]} with IDF1, IDsw,
    MOTA ... per (preset, cost), plus the switch points of scenario ii for the time-space diagrams.
    """
    from tqdm import tqdm

    import pp_lite
    from runtime.cost import load_cost_function
    from runtime.files import atomic_write_text
    from training.evaluate import evaluate_tracking
    from training.io import load_fragments

    params = pp_lite.load_parameters(config_path)
    costs = [("Bhattacharyya", {"type": "bhattacharyya"})]
    costs += [(LABELS[k], {"type": k, "artifact": os.path.abspath(os.path.join(artifacts_dir, k))}) for k in kinds]
    rows, details = [], {}
    bar = tqdm(total=len(presets) * len(costs), desc="stitch + evaluate", unit="run", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    with bar:
        for preset in presets:
            gt = load_fragments(os.path.join(data_dir, f"GT_{preset}.json"))
            raw = load_fragments(os.path.join(data_dir, f"RAW_{preset}.json"))
            for label, config in costs:
                bar.set_postfix_str(f"{preset} {label}")
                cost_fn = load_cost_function(config)
                t0 = time.perf_counter()
                rec, summary = pp_lite.run(raw, params, cost_fn=cost_fn, name=preset, on_bad_fragment="skip")
                stitch_s = time.perf_counter() - t0
                metrics = evaluate_tracking(gt, rec, hota=False, return_details=preset == "ii")
                if preset == "ii":
                    details[label] = {"rec": rec, "switch_points": metrics["_details"]["switch_points"]}
                path = os.path.join(out_dir, f"REC_{preset}_{label}.json")
                atomic_write_text(path, json.dumps(rec))
                rows.append({"preset": preset, "cost": label, "idf1": float(metrics["idf1"]),
                             "idsw": int(metrics["idsw"]), "mota": float(metrics["mota"]),
                             "traj_per_gt": float(metrics["traj_per_gt"]), "stitch_s": round(stitch_s, 2),
                             "cost_pairs": summary.get("cost_pairs"), "rec": path})
                bar.update(1)
    return {"rows": rows, "ii": details}


def time_space_pictures(data_dir: str, scored: Mapping, out_dir: str, seed: int | None = None) -> list[str]:
    """Time-space diagrams of scenario ii: Bhattacharyya and the learned cost with the best IDF1 on ii."""
    from training.evaluate import plot_time_space
    from training.io import load_fragments

    ii = [r for r in scored["rows"] if r["preset"] == "ii"]
    if not ii:
        return []
    learned = [r for r in ii if r["cost"] != "Bhattacharyya"]
    chosen = ["Bhattacharyya"] + ([max(learned, key=lambda r: (r["idf1"], -r["idsw"]))["cost"]] if learned else [])
    gt = load_fragments(os.path.join(data_dir, "GT_ii.json"))
    paths = []
    for label in chosen:
        row = next(r for r in ii if r["cost"] == label)
        path = os.path.join(out_dir, f"time_space_ii_{label}.png")
        plot_time_space(gt, scored["ii"][label]["rec"], scored["ii"][label]["switch_points"], path,
                        title=f"snow (ii), held-out seed {seed}: pp_lite with the {label} cost "
                              f"(IDF1 {row['idf1']:.3f}, {row['idsw']} ID switches)")
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------------------------
# The summary

def headline_table(rows: Sequence[Mapping], presets: Sequence[str]) -> str:
    """One row per cost, IDF1 and IDsw per preset (plain text, fixed width)."""
    costs = list(dict.fromkeys(r["cost"] for r in rows))
    by = {(r["cost"], r["preset"]): r for r in rows}
    width = max(len(c) for c in costs + ["cost"])
    head1 = " " * width + "".join(f"  {PRESET_NAMES.get(p, p):>19s}" for p in presets)
    head2 = f"{'cost':<{width}s}" + "".join(f"  {'IDF1':>12s} {'IDsw':>6s}" for _ in presets)
    lines = [head1, head2]
    for c in costs:
        cells = []
        for p in presets:
            r = by.get((c, p))
            cells.append(f"  {r['idf1']:12.3f} {r['idsw']:6d}" if r else f"  {'-':>12s} {'-':>6s}")
        lines.append(f"{c:<{width}s}" + "".join(cells))
    return "\n".join(lines)


def meaning(rows: Sequence[Mapping], presets: Sequence[str], profile: Profile) -> str:
    """One or two sentences read off the table (what beats the baseline where), not written in advance."""
    base = {r["preset"]: r for r in rows if r["cost"] == "Bhattacharyya"}
    learned = [r for r in rows if r["cost"] != "Bhattacharyya" and r["preset"] in base]
    if not learned:
        return "Only the Bhattacharyya baseline was stitched."
    better = [r for r in learned if r["idf1"] > base[r["preset"]]["idf1"] + 1e-9]
    fewer_sw = [r for r in learned if r["idsw"] < base[r["preset"]]["idsw"]]
    name = lambda r: PRESET_NAMES.get(r["preset"], r["preset"])  # noqa: E731
    delta = lambda r: r["idf1"] - base[r["preset"]]["idf1"]  # noqa: E731
    best, worst = max(learned, key=delta), min(learned, key=delta)
    text = (f"The learned costs beat the Bhattacharyya baseline's IDF1 in {len(better)} of {len(learned)} "
            f"(cost, scenario) cells and have fewer ID switches in {len(fewer_sw)}.")
    if delta(best) > 0:
        text += (f" The largest gain is {best['cost']} on {name(best)} "
                 f"({base[best['preset']]['idf1']:.3f} -> {best['idf1']:.3f})")
        text += (f", the largest loss {worst['cost']} on {name(worst)} "
                 f"({base[worst['preset']]['idf1']:.3f} -> {worst['idf1']:.3f})." if delta(worst) < 0 else ".")
    else:
        text += (f" The closest is {best['cost']} on {name(best)} ({base[best['preset']]['idf1']:.3f} -> "
                 f"{best['idf1']:.3f}).")
    if profile.name != "full":
        text += (f" These models come from the {profile.name} schedule ({profile.about}) and one held-out "
                 "instance per scenario, so differences of a few thousandths are noise; `--full` trains longer.")
    return text


def _pictures(runs_dir: str, artifacts_dir: str, kinds: Sequence[str], extra: Sequence[str]) -> list[str]:
    found = []
    for kind in kinds:
        for folder, names in ((os.path.join(runs_dir, kind), ("curves.png", "evaluation.png")),
                              (os.path.join(artifacts_dir, kind), ("calibration.png",))):
            found += [os.path.join(folder, n) for n in names if os.path.isfile(os.path.join(folder, n))]
    return found + [p for p in extra if os.path.isfile(p)]


def export_in_child(kind: str, run_dir: str, out_dir: str, data_dir: str, min_parity_pairs: int,
                    progress: bool = True) -> dict:
    """`export_artifact` in a fresh Python process (its progress bar on this stderr); returns the manifest.

    Raises ValueError with the export's one-line reason when it fails (nothing is installed then).
    """
    import subprocess

    cmd = [sys.executable, "-c", "import sys; from workflows.demo import _export_main; sys.exit(_export_main(sys.argv[1:]))",
           kind, run_dir, out_dir, data_dir, str(int(min_parity_pairs)), "1" if progress else "0"]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        reason = (done.stdout.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise ValueError(f"export of {run_dir} failed: {reason}")
    with open(os.path.join(out_dir, "manifest.json"), encoding="utf-8") as fh:
        return json.load(fh)


def _export_main(argv: Sequence[str]) -> int:
    """Child side of `export_in_child`: export, print one line (the reason) on failure, exit 0/1."""
    from export.export import export_artifact

    kind, run_dir, out_dir, data_dir, parity, progress = argv
    try:
        export_artifact(kind, run_dir, out_dir, data_dir=data_dir, min_parity_pairs=int(parity),
                        progress=progress == "1")
    except Exception as exc:  # ExportError, a ValidationError per check, CalibrationFitError, OSError
        print((str(exc).splitlines() or [type(exc).__name__])[0], flush=True)
        return 1
    return 0


# ------------------------------------------------------------------------------------------------------

def run_demo(data_dir: str = "data", runs_dir: str = "runs", artifacts_dir: str = "artifacts_demo", *,
             kinds: Sequence[str] = KINDS, profile: str | Profile = "default", seed: int = DEMO_SEED,
             config_path: str | None = None, progress: bool = True, say: Callable[[str], None] = _say) -> dict:
    """Run the demo and return its summary (also written to `runs_dir/demo_summary.json` and .md).

    Parameters
    ----------
    data_dir : simulated held-out scenarios (GT_/RAW_{s}.json) and the mined-pair cache.
    runs_dir : one training run folder per model kind, and `tracking/` (REC files, time-space diagrams).
    artifacts_dir : one exported artifact per model kind.
    kinds : model kinds to train (any of KINDS; sequence models warm-start from the MLP when it is trained).
    profile : "default", "full", "tiny" or a `Profile`.
    seed : the held-out simulator seed the stitching is scored on.
    config_path : pp_lite parameters file giving thresholds and windows (default parameters_Bhat.json).
    """
    from training.pairs import DatasetSpec
    from training.simulate import write_scenario

    prof = PROFILES[profile] if isinstance(profile, str) else profile
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown model kind(s) {', '.join(unknown)}; known: {', '.join(KINDS)}")
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    config_path = config_path or os.path.join(here, "parameters_Bhat.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"pp_lite parameters file {config_path} not found")
    spec = DatasetSpec(**dict(prof.data))
    presets = tuple(spec.presets)
    stages = Stages()

    stages.begin("simulate", f"1/5 simulate the I-24 scenario(s) {', '.join(presets)} (held-out seed {seed}) into {data_dir}/")
    for preset in presets:
        stats = write_scenario(preset, seed, data_dir, duration=prof.duration)
        say(f"  {preset}: {stats['vehicles']} vehicles, {stats['fragments']} fragments -> {stats['raw_path']}")

    from training.train import DEFAULT_MAX_NEG, load_splits, train_run

    stages.begin("mine", "2/5 mine candidate pairs (train seeds {}, validation {}, calibration {}, test {}; "
                 "presets {})".format(*(",".join(map(str, getattr(spec, f"{s}_seeds")))
                                        for s in ("train", "val", "cal", "test")), ", ".join(presets)))
    splits = load_splits(spec, data_dir, progress)
    for name, sp in splits.items():
        s = sp.summary()
        say(f"  {name:5s} {s['pairs']:6d} pairs, {s['positives']:5d} positive, natural ratio {s['neg_per_pos']}:1")
    if prof.val_neg_per_pos:
        from training.train import subsample_negatives

        splits["val"] = subsample_negatives(splits["val"], prof.val_neg_per_pos, seed=0)
        say(f"  early stopping on {len(splits['val'])} validation pairs (all positives, {prof.val_neg_per_pos:g} "
            "negatives per positive); calibration and test keep the natural ratio")

    stages.begin("train", "3/5 train " + ", ".join(kinds) + f" ({prof.name} schedule: {prof.about})")
    trained = {}
    for kind in kinds:
        t0 = time.perf_counter()
        run_dir = os.path.join(runs_dir, kind)
        # the sequence models start from the MLP trained just before (a frozen feature branch; see train_run)
        warm = os.path.join(runs_dir, "mlp") if kind in SEQUENCE and "mlp" in kinds else None
        metrics = train_run(kind, run_dir, spec, data_dir, splits=splits,
                            train_overrides=dict(prof.train.get(kind, {})),
                            model_overrides=dict(prof.model.get(kind, {})) or None,
                            max_neg_per_pos=prof.max_neg.get(kind, DEFAULT_MAX_NEG.get(kind)),
                            progress=progress, init_features_from=warm)
        test = metrics["splits"]["test"]
        trained[kind] = {"run": run_dir, "seconds": round(time.perf_counter() - t0, 1),
                         "test_ap": test["average_precision"], "test_roc_auc": test["roc_auc"],
                         "bhattacharyya_ap": test["bhattacharyya"]["average_precision"]}
        say(f"  {LABELS[kind]}: test AP {test['average_precision']:.4f} (Bhattacharyya on the same pairs "
            f"{test['bhattacharyya']['average_precision']:.4f}) in {trained[kind]['seconds']:.0f} s -> {run_dir}")
        gc.collect()

    from export.export import export_artifact
    from export.validate import MIN_PARITY_PAIRS

    stages.begin("export", f"4/5 export each model with its calibration folded in, every check run -> {artifacts_dir}/")
    parity = min(MIN_PARITY_PAIRS, max(1, len(splits["test"]))) if prof.small_parity else MIN_PARITY_PAIRS
    del splits
    gc.collect()
    exported = {}
    for kind in kinds:
        t0 = time.perf_counter()
        out = os.path.join(artifacts_dir, kind)
        if prof.export_in_child:
            manifest = export_in_child(kind, os.path.join(runs_dir, kind), out, data_dir, parity, progress)
        else:
            manifest = export_artifact(kind, os.path.join(runs_dir, kind), out, data_dir=data_dir,
                                       min_parity_pairs=parity, say=(lambda line: None), progress=progress)
        cal = manifest["calibration"]
        at3 = manifest["metrics"]["cost"].get("test", {}).get("at", {}).get("3", {})
        exported[kind] = {"artifact": out, "seconds": round(time.perf_counter() - t0, 1),
                          "parity_max_abs_diff": manifest["parity"].get("max_abs_diff"),
                          "tpr_at_3": at3.get("tpr"), "fpr_at_3": at3.get("fpr")}
        say(f"  {LABELS[kind]}: a={cal['a']:.3g} b={cal['b']:.3g} z*={cal['z_star']:.3g} s={cal['s']:.3g}; "
            + (f"test TPR {at3['tpr']:.3f} at FPR {at3['fpr']:.4f} (cost <= 3); " if at3.get("tpr") is not None else "")
            + f"{exported[kind]['seconds']:.0f} s -> {out}")
        gc.collect()

    stages.begin("stitch", f"5/5 stitch the held-out scenarios with pp_lite (Bhattacharyya and "
                 f"{len(kinds)} learned costs) and evaluate")
    track_dir = os.path.join(runs_dir, "tracking")
    os.makedirs(track_dir, exist_ok=True)
    scored = stitch_and_score(data_dir, artifacts_dir, kinds, presets, track_dir, config_path, progress)
    diagrams = time_space_pictures(data_dir, scored, track_dir, seed)
    total = stages.done()

    summary = {
        "profile": dataclasses.asdict(prof), "seed": seed, "kinds": list(kinds), "presets": list(presets),
        "seconds": round(total, 1), "stages": stages.rows,
        "peak_rss_mb": {k: round(v) for k, v in peak_rss_mb().items()},  # children: the largest export process
        "trained": trained, "exported": exported, "tracking": scored["rows"],
        "table": headline_table(scored["rows"], presets), "meaning": meaning(scored["rows"], presets, prof),
        "pictures": _pictures(runs_dir, artifacts_dir, kinds, diagrams),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    _write_summary(runs_dir, summary)
    return summary


def _write_summary(runs_dir: str, summary: Mapping) -> None:
    from runtime.files import atomic_write_text

    atomic_write_text(os.path.join(runs_dir, f"{SUMMARY}.json"), json.dumps(summary, indent=1, default=str))
    atomic_write_text(os.path.join(runs_dir, f"{SUMMARY}.md"), render_summary(summary) + "\n")


def render_summary(summary: Mapping) -> str:
    stages = ", ".join(f"{r['stage']} {r['seconds']:.0f} s" for r in summary["stages"])
    cpu = sum(r.get("cpu_seconds", 0) for r in summary["stages"])
    lines = [
        f"Demo ({summary['profile']['name']} schedule) finished in {summary['seconds'] / 60:.1f} min ({stages}); "
        f"{cpu / 60:.1f} CPU-min; peak memory {summary['peak_rss_mb']['self']:.0f} MB here"
        + (f", {summary['peak_rss_mb']['children']:.0f} MB in the largest export process"
           if summary["peak_rss_mb"].get("children") else "") + ".",
        "",
        f"Tracking on the held-out seed {summary['seed']} (pp_lite, thresholds 3 / 4; IDF1 higher is better, "
        "IDsw = identity switches, lower is better):",
        "",
        summary["table"],
        "",
        summary["meaning"],
        "",
        "Pictures:",
    ]
    for path in summary["pictures"]:
        name = os.path.basename(path)
        what = {"curves.png": "training curves (best epoch marked)",
                "evaluation.png": "test ROC / precision-recall / reliability, with Bhattacharyya",
                "calibration.png": "costs against thresholds 3 and 4, calibrated reliability"}.get(
            name, "time-space diagram of scenario ii (GT beside pp_lite, ID switches marked)")
        lines.append(f"  {path}  ({what})")
    return "\n".join(lines)


@click.command("demo", context_settings={"help_option_names": ["-h", "--help"]}, help=__doc__)
@click.option("--data", "data_dir", default="data", show_default=True,
              help="Folder for the simulated held-out scenarios and the mined-pair cache.")
@click.option("--runs", "runs_dir", default="runs", show_default=True,
              help="Folder for the training runs, the REC files and demo_summary.json/.md.")
@click.option("--artifacts", "artifacts_dir", default="artifacts_demo", show_default=True,
              help="Folder for the exported models (never the shipped artifacts/).")
@click.option("--models", default=",".join(KINDS), show_default=True, help="Comma-separated model kinds to train.")
@click.option("--full", "schedule", flag_value="full", help=f"The full schedule: {PROFILES['full'].about}.")
@click.option("--tiny", "schedule", flag_value="tiny", help=f"{PROFILES['tiny'].about}.")
@click.option("--quick", "schedule", flag_value="tiny", hidden=True)
@click.option("--seed", type=int, default=DEMO_SEED, show_default=True,
              help="Held-out simulator seed of the scenarios that are stitched and scored.")
def main(data_dir, runs_dir, artifacts_dir, models, schedule, seed):
    kinds = [k.strip() for k in models.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise click.BadParameter(f"unknown model kind(s) {', '.join(unknown) or '(none)'}; known: {', '.join(KINDS)}",
                                 param_hint="--models")
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    try:
        summary = run_demo(data_dir, runs_dir, artifacts_dir, kinds=kinds, profile=schedule or "default", seed=seed)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc).splitlines()[0]) from None
    _say()
    _say(render_summary(summary))
    if load_before:
        _say(f"(load average {load_before[0]:.2f} at the start, {summary['load_average'][0]:.2f} at the end; "
             f"summary in {os.path.join(runs_dir, SUMMARY)}.md)")


if __name__ == "__main__":
    main()
