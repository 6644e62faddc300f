"""Load benchmark: pp_lite on scenarios up to 10x the published benchmark's length, in bounded memory and
linear time.

Simulated scenario i (free flow; the published set is 60 s, 789 fragments) is generated at 150, 300 and
600 s and written as RAW_i.json. For the Bhattacharyya cost and every artifact under artifacts/ that
loads, pp_lite then runs on each file in a fresh process (so the peak memory is that run's alone), end to
end as the CLI does: read and validate the RAW file, stitch both directions online, write REC and meta.
Reported per run: fragments, trajectories, cost pairs, seconds (feed, stitch, write), peak RSS (VmHWM)
and RSS before the run, and the largest number of live fragments the online stitcher held at once
(`max_live`, per direction). Time is checked for linearity in the number of fragments (the exponent of
a log-log fit, and seconds per fragment at each length), and the stitcher's memory for boundedness
(`max_live` does not grow with the scenario's length). Writes benchmarks/results/load.md and load.json.
Not part of the test run.

    python benchmarks/load.py                    # 150/300/600 s, every cost (several minutes)
    python benchmarks/load.py --quick            # 30/60/120 s, Bhattacharyya only
"""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any, Sequence

import click
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, REPO)

from runtime.files import atomic_write_text  # noqa: E402

DEFAULT_ARTIFACTS = os.path.join(REPO, "artifacts")
RESULTS = os.path.join(REPO, "benchmarks", "results")
PARAMETERS = os.path.join(REPO, "parameters_Bhat.json")
DURATIONS = (150, 300, 600)
QUICK_DURATIONS = (30, 60, 120)
# time ~ fragments^k: k up to this counts as linear (per-fragment work varies a little with density)
LINEAR_EXPONENT_MAX = 1.15
# max_live at the longest run over max_live at the shortest: a stitcher that frees memory stays flat
BOUNDED_GROWTH_MAX = 1.5
CHILD_ENV = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
                 PYTHONPATH=REPO)


def _status() -> dict[str, float]:
    """VmHWM (peak RSS) and VmRSS of this process, in MB."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0]) / 1024.0
    return out


# ------------------------------------------------------------------------------------------------ child
def measure(data_dir: str, scenario: str, config: str) -> dict:
    """One pp_lite run, as the CLI does it, in this (fresh) process: the figures for one table row."""
    import pp_lite

    before = _status()
    params = pp_lite.load_parameters(config)
    t0 = time.perf_counter()
    with open(os.path.join(data_dir, f"RAW_{scenario}.json"), "rb") as fh:  # as pp_lite reads it
        raw_docs = json.load(fh)
    read_s = time.perf_counter() - t0
    after_read = _status()
    rec, summary = pp_lite.run(raw_docs, params, name=scenario, base_dir=os.path.dirname(os.path.abspath(config)))
    with tempfile.TemporaryDirectory() as out:
        t1 = time.perf_counter()
        pp_lite.write_outputs(out, scenario, "load", rec, summary)
        write_s = time.perf_counter() - t1
    total_s = time.perf_counter() - t0
    peak = _status()
    return {
        "fragments_in": summary["fragments_in"],
        "fragments_stitched": summary["fragments_stitched"],
        "trajectories": summary["trajectories_out"],
        "cost_pairs": summary["cost_pairs"],
        "edges": summary["edges"],
        "timed_out_paths": summary["timed_out_paths"],
        "max_live": {d: s["max_live"] for d, s in summary["directions"].items()},
        "read_s": read_s,
        "feed_s": summary["timings"]["feed_s"],
        "stitch_s": summary["timings"]["stitch_s"],
        "write_s": write_s,
        "total_s": total_s,
        "rss_before_mb": before["VmRSS"],
        "rss_after_read_mb": after_read["VmRSS"],
        "peak_rss_mb": peak["VmHWM"],
        "cost_function": summary["cost_function"],
    }


# ----------------------------------------------------------------------------------------------- parent
def _costs(artifacts_dir: str, quick: bool, say) -> tuple[list[tuple[str, dict]], list[str]]:
    """(label, cost_function section) for Bhattacharyya and each artifact that loads; notes on the others."""
    costs = [("bhattacharyya", {"type": "bhattacharyya"})]
    notes = []
    if quick or not os.path.isdir(artifacts_dir):
        return costs, notes
    from runtime.onnx_cost import ArtifactError, OnnxCostFunction

    for kind in sorted(os.listdir(artifacts_dir)):
        folder = os.path.join(artifacts_dir, kind)
        # `<model>.prev` is the artifact `promote` replaced, kept for rollback: not a shipped cost
        if kind.endswith(".prev") or not os.path.exists(os.path.join(folder, "manifest.json")):
            continue
        try:
            OnnxCostFunction(folder)
        except ArtifactError as exc:
            notes.append(f"{kind}: skipped, the artifact does not load ({exc})")
            say(notes[-1])
            continue
        costs.append((kind, {"type": "onnx", "artifact": os.path.abspath(folder)}))
    return costs, notes


def _linearity(runs: Sequence[dict]) -> dict:
    """log-log exponent of total time vs fragments, seconds per 1000 fragments, max_live growth."""
    n = np.array([r["fragments_stitched"] for r in runs], dtype=float)
    t = np.array([r["total_s"] for r in runs], dtype=float)
    exponent = float(np.polyfit(np.log(n), np.log(t), 1)[0]) if len(runs) >= 2 else math.nan
    live = [max(r["max_live"].values()) for r in runs]
    growth = live[-1] / live[0] if live and live[0] else math.nan
    return {
        "exponent": exponent,
        "linear": bool(exponent <= LINEAR_EXPONENT_MAX),
        "ms_per_fragment": [1000.0 * r["total_s"] / r["fragments_stitched"] for r in runs],
        "max_live": live,
        "max_live_growth": growth,
        "bounded": bool(growth <= BOUNDED_GROWTH_MAX),
        "peak_rss_mb": [r["peak_rss_mb"] for r in runs],
    }


def run_benchmark(preset: str, seed: int, durations: Sequence[int], artifacts_dir: str, quick: bool,
                  say=lambda line: None) -> dict:
    from training.simulate import write_scenario

    costs, notes = _costs(artifacts_dir, quick, say)
    base = json.load(open(PARAMETERS, encoding="utf-8"))
    result: dict[str, Any] = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "preset": preset, "seed": seed, "durations_s": list(durations), "parameters": PARAMETERS,
        "scenarios": [], "costs": {}, "notes": notes,
    }
    with tempfile.TemporaryDirectory(prefix="load-bench-") as work:
        folders = {}
        for duration in durations:
            folder = os.path.join(work, f"{preset}_{duration}s")
            t0 = time.perf_counter()
            stats = write_scenario(preset, seed, folder, duration=duration)
            raw = os.path.join(folder, f"RAW_{preset}.json")
            with open(raw, encoding="utf-8") as fh:
                n_raw = len(json.load(fh))
            result["scenarios"].append({"duration_s": duration, "raw_fragments": n_raw,
                                        "vehicles": stats.get("gt_vehicles", stats.get("vehicles")),
                                        "raw_file_mb": os.path.getsize(raw) / 2 ** 20,
                                        "simulate_s": time.perf_counter() - t0})
            say(f"simulated {preset} {duration} s: {n_raw} RAW fragments, {os.path.getsize(raw) / 2 ** 20:.1f} MB "
                f"({time.perf_counter() - t0:.1f} s)")
            folders[duration] = folder
        for label, section in costs:
            config = os.path.join(work, f"parameters_{label}.json")
            with open(config, "w", encoding="utf-8") as fh:
                json.dump(dict(base, cost_function=section), fh)
            runs = []
            for duration in durations:
                proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--measure", folders[duration],
                                       preset, config], capture_output=True, text=True, env=CHILD_ENV, cwd=REPO)
                if proc.returncode != 0:
                    raise click.ClickException(f"{label} {duration} s failed: {proc.stderr.strip()[-500:]}")
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                row["duration_s"] = duration
                runs.append(row)
                say(f"{label:14s} {duration:4d} s: {row['fragments_stitched']} fragments -> {row['trajectories']} "
                    f"trajectories, {row['total_s']:.1f} s, peak RSS {row['peak_rss_mb']:.0f} MB, "
                    f"max live {max(row['max_live'].values())}")
            result["costs"][label] = {"runs": runs, "summary": _linearity(runs)}
    return result


def format_markdown(result: dict) -> str:
    lines = [
        "# Load: pp_lite on long scenarios",
        "",
        f"Scenario {result['preset']} (free flow), seed {result['seed']}, simulated at "
        f"{', '.join(str(d) for d in result['durations_s'])} s (the published benchmark scenario is 60 s, 789 "
        "fragments). Each run is one fresh process doing what `pp_lite.py` does end to end: read and validate "
        "RAW, stitch both directions online (thresholds 3/4, `parameters_Bhat.json` with the cost swapped), "
        "write REC and meta. Peak RSS is the process's VmHWM; `max live` is the most fragments the online "
        "stitcher held at once in one direction (what its memory grows with). `RAW in memory` is the RSS "
        "added by reading the RAW file into Python objects (`json.load`, as pp_lite does); pp_lite holds the "
        "whole scenario (RAW documents, validated arrays, REC documents and their JSON text) until it has "
        "written, so its peak grows with the file while the stitcher's own state stays bounded.",
        "",
        f"Created {result['created']}; Python {result['machine']['python']}, {result['machine']['cpus']} CPUs "
        "(shared with other work while measured: times are indicative, ratios are what is checked).",
        "",
        "| duration (s) | RAW fragments | RAW file (MB) |",
        "|---:|---:|---:|",
    ]
    for s in result["scenarios"]:
        lines.append(f"| {s['duration_s']} | {s['raw_fragments']} | {s['raw_file_mb']:.1f} |")
    lines += ["", "| cost | duration (s) | fragments | trajectories | cost pairs | read (s) | feed (s) | stitch (s) "
              "| write (s) | total (s) | ms / fragment | RSS before (MB) | RAW in memory (MB) | peak RSS (MB) "
              "| max live EB / WB |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for label, entry in result["costs"].items():
        for r in entry["runs"]:
            live = " / ".join(str(r["max_live"].get(d, "-")) for d in ("EB", "WB"))
            lines.append(f"| {label} | {r['duration_s']} | {r['fragments_stitched']} | {r['trajectories']} | "
                         f"{r['cost_pairs']} | {r['read_s']:.2f} | {r['feed_s']:.2f} | {r['stitch_s']:.2f} | "
                         f"{r['write_s']:.2f} | {r['total_s']:.2f} | "
                         f"{1000 * r['total_s'] / r['fragments_stitched']:.2f} | {r['rss_before_mb']:.0f} | "
                         f"{r['rss_after_read_mb'] - r['rss_before_mb']:.0f} | {r['peak_rss_mb']:.0f} | {live} |")
    lines += ["", "| cost | time ~ fragments^k: k | linear (k <= "
              f"{LINEAR_EXPONENT_MAX}) | max live, shortest -> longest | bounded (growth <= {BOUNDED_GROWTH_MAX}x) |",
              "|---|---:|---|---|---|"]
    for label, entry in result["costs"].items():
        s = entry["summary"]
        lines.append(f"| {label} | {s['exponent']:.2f} | {'yes' if s['linear'] else 'NO'} | "
                     f"{s['max_live'][0]} -> {s['max_live'][-1]} ({s['max_live_growth']:.2f}x) | "
                     f"{'yes' if s['bounded'] else 'NO'} |")
    if result["notes"]:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--preset", default="i", show_default=True, type=click.Choice(["i", "ii", "iii"]),
              help="Scenario preset to simulate (i free flow, ii snow, iii stop-and-go).")
@click.option("--seed", default=7, show_default=True, help="Simulation seed (the same seed for every length).")
@click.option("--durations", default=None,
              help="Comma-separated scenario lengths in seconds (default 150,300,600; --quick 30,60,120).")
@click.option("--artifacts", default=DEFAULT_ARTIFACTS, show_default=True, type=click.Path(file_okay=False),
              help="Folder of exported artifacts; every one that loads is measured beside Bhattacharyya.")
@click.option("--out", "out_dir", default=RESULTS, show_default=True, type=click.Path(file_okay=False),
              help="Where load.md and load.json are written.")
@click.option("--quick", is_flag=True, help="Short scenarios, Bhattacharyya only.")
@click.option("--check", is_flag=True, help="Exit with status 1 when time is not linear or max_live not bounded.")
def main(preset, seed, durations, artifacts, out_dir, quick, check):
    """Run pp_lite on long simulated scenarios; report peak memory, the stitcher's live fragments and the
    scaling of time with the number of fragments."""
    lengths = tuple(int(d) for d in durations.split(",")) if durations else (QUICK_DURATIONS if quick else DURATIONS)
    say = lambda line: click.echo(f"load: {line}", err=True)  # noqa: E731
    result = run_benchmark(preset, seed, lengths, artifacts, quick, say)
    text = format_markdown(result)
    os.makedirs(out_dir, exist_ok=True)
    atomic_write_text(os.path.join(out_dir, "load.json"), json.dumps(result, indent=2) + "\n")
    atomic_write_text(os.path.join(out_dir, "load.md"), text)
    click.echo(text)
    failed = [label for label, e in result["costs"].items() if not (e["summary"]["linear"] and e["summary"]["bounded"])]
    if check and failed:
        raise click.ClickException(f"not linear or not bounded: {', '.join(failed)}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--measure":  # one run, in a fresh process (see run_benchmark)
        print(json.dumps(measure(sys.argv[2], sys.argv[3], sys.argv[4])))
    else:
        main()
