"""`make demo`: the main job end to end on the embedded default.

simulate the three I-24 scenarios -> mine candidate pairs -> train LR, MLP, Siamese, TCN, Transformer ->
export each with calibration folded in -> stitch held-out scenarios with pp_lite -> evaluate.
Exported models go to a separate folder (default artifacts_demo/), never over the shipped artifacts/.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from .models import SEQUENCE_KINDS
from .pairs import DatasetSpec

KINDS = ("lr", "mlp", "siamese", "tcn", "transformer")
DEMO_SEED = 101  # held out: never used by training, validation, calibration or test
# Settings that keep the whole demo within ~15 minutes on 2 cores.
DEMO_TRAIN = {
    "mlp": {"epochs": 12},
    "siamese": {"epochs": 4},
    "tcn": {"epochs": 4},
    "transformer": {"epochs": 4},
}


def _say(line: str) -> None:
    print(line, flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data", help="folder for simulated scenarios and mined pairs")
    parser.add_argument("--runs", default="runs", help="folder for training runs")
    parser.add_argument("--artifacts", default="artifacts_demo", help="folder for the exported models")
    parser.add_argument("--models", default=",".join(KINDS), help="comma-separated model kinds to train")
    parser.add_argument("--quick", action="store_true", help="short scenarios and few epochs (a smoke run)")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        parser.error(f"unknown model kind(s) {', '.join(unknown)}; known: {', '.join(KINDS)}")
    t_start = time.perf_counter()

    from .simulate import write_scenario, _stats_line

    duration = 20.0 if args.quick else None
    _say(f"== 1/4 simulate the three I-24 scenarios (held-out seed {DEMO_SEED}) into {args.data}/")
    for preset in ("i", "ii", "iii"):
        stats = write_scenario(preset, DEMO_SEED, args.data, duration=duration)
        _say("  " + _stats_line(stats))

    from .train import DEFAULT_MAX_NEG, load_splits, train_run
    from .cli import _report

    spec = DatasetSpec(duration=duration)
    _say("== 2/4 mine candidate pairs (train seeds 11-12, validation 13, calibration 14, test 15; all presets)")
    splits = load_splits(spec, args.data)
    for name, sp in splits.items():
        s = sp.summary()
        _say(f"  {name:5s} {s['pairs']:6d} pairs, {s['positives']:5d} positive, natural ratio {s['neg_per_pos']}:1")

    _say("== 3/4 train and export " + ", ".join(kinds))
    from export.export import export_artifact

    for kind in kinds:
        run_dir = os.path.join(args.runs, kind)
        train_overrides = dict(DEMO_TRAIN.get(kind, {}))
        if args.quick:
            train_overrides["epochs"] = 2
        t0 = time.perf_counter()
        # The sequence models start from the MLP trained just before (a frozen feature branch; see train_run).
        warm = os.path.join(args.runs, "mlp") if kind in SEQUENCE_KINDS and "mlp" in kinds else None
        metrics = train_run(kind, run_dir, spec, args.data, splits=splits, train_overrides=train_overrides,
                            max_neg_per_pos=DEFAULT_MAX_NEG.get(kind), progress=True, init_features_from=warm)
        _report(kind, metrics, run_dir)
        out = os.path.join(args.artifacts, kind)
        manifest = export_artifact(kind, run_dir, out, data_dir=args.data, say=lambda line: _say("  " + line))
        cal = manifest.get("metrics", {}).get("calibration", {})
        _say(f"  exported {out} in {time.perf_counter() - t0:.0f} s (train + export)")
        if cal:
            _say(f"  calibration split: {cal}")

    _say("== 4/4 stitch held-out scenarios with pp_lite and evaluate")
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, os.path.join(here, "benchmarks", "tracking.py"), "--artifacts", args.artifacts,
           "--seeds", str(DEMO_SEED), "--out", os.path.join(args.runs, "tracking")]
    if args.quick:
        cmd.append("--quick")
    rc = subprocess.call(cmd)
    _say(f"demo finished in {time.perf_counter() - t_start:.0f} s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
