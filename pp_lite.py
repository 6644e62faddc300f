"""pp_lite: the I-24 fragment stitching pipeline, feed -> stitch (min-cost flow) -> write.

    pp-lite --raw my_fragments.json --cost tcn --out my_rec.json     # any RAW file (installed command)
    python pp_lite.py i --config parameters_Bhat.json --tag Bhat      # a benchmark scenario

The scenario form reads `RAW_i.json`, stitches each direction with the cost function the config names, and writes
`REC_i_Bhat.json` (a JSON array of trajectory documents in the I-24 schema, each with the
`fragment_ids` it was stitched from) and `REC_i_Bhat.meta.json` (configuration, counts, skipped
fragments, timings, objectives). Imports numpy and `runtime` only: it runs on the base install.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any, Callable, Mapping, Sequence

try:
    import numpy as np

    from runtime.cost import ConfigError, StitchCostFunction, load_cost_function
    from runtime.feed import MIN_SAMPLES, prepare_fragments
    from runtime.files import atomic_write_text
    from runtime.fragment import Fragment, FragmentError
    from runtime.onnx_cost import ArtifactError
    from runtime.resample import DEFAULT_HZ, GRID_TOLERANCE_S
    from runtime.stitcher import (OnlineStitcher, RecordedCostFunction, StitchConfig, StitchStats, offline_stitch,
                                  solve_assignment)
except ModuleNotFoundError as _missing:
    # `python pp_lite.py` run by an interpreter without the package's dependencies: one line, not a traceback
    if __name__ != "__main__" or (_missing.name or "").split(".")[0] not in ("numpy", "onnxruntime", "runtime"):
        raise
    sys.exit(f"pp_lite.py: error: {_missing.name} is not installed for {sys.executable}; run `make` and use "
             f".venv/bin/python pp_lite.py (or .venv/bin/pp-lite), or `pip install .` first")

__all__ = ["SCENARIOS", "DEFAULT_PARAMETERS", "PipelineError", "load_parameters", "load_raw_file", "run",
           "assemble_trajectory", "write_outputs", "write_rec_file", "main"]

SCENARIOS = ("i", "ii", "iii")
SOLVERS = ("online", "offline")
DIRECTIONS = ((1, "EB"), (-1, "WB"))
PROGRESS_EVERY = 250  # fragments between progress lines

Trajectory = list  # list of (Fragment, document) in time order


class PipelineError(Exception):
    """Bad input for a pp_lite run; the message is the one-line reason shown to the user."""


def load_parameters(path: str | os.PathLike) -> dict:
    """Read a pp_lite parameters file (the reference `parameters.json` layout).

    Raises
    ------
    PipelineError
        The file is missing or not a JSON object.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            params = json.load(fh)
    except FileNotFoundError:
        raise PipelineError(f"config {path} not found") from None
    except json.JSONDecodeError as exc:
        raise PipelineError(f"config {path} is not valid JSON ({exc})") from None
    if not isinstance(params, dict):
        raise PipelineError(f"config {path}: expected a JSON object, got {type(params).__name__}")
    return params


def _raw_path(data_dir: str | os.PathLike, scenario: str) -> str:
    return os.path.join(os.fspath(data_dir), f"RAW_{scenario}.json")


def _load_raw(data_dir: str | os.PathLike, scenario: str) -> list:
    path = _raw_path(data_dir, scenario)
    if not os.path.exists(path):
        raise PipelineError(
            f"{path} not found; create it with `simulate-scenario {scenario} --seed N --out {data_dir}` "
            f"or `make demo`")
    return load_raw_file(path)


# ----------------------------------------------------------------------------- write
def assemble_trajectory(items: Sequence[tuple[Fragment, Mapping[str, Any]]], rec_id: str, fill: bool = True,
                        hz: float = DEFAULT_HZ) -> tuple[dict, int]:
    """One REC document from fragments of one vehicle.

    Parameters
    ----------
    items : `(Fragment, document)` pairs, one direction; ordered by start time here.
    rec_id : the trajectory `_id` (a plain string, as in I-24 REC files).
    fill : bridge each gap between consecutive fragments with constant-velocity samples on the 1/hz
        grid (the straight line from one fragment's last sample to the next one's first); without it
        the gap stays a hole in `timestamp`.
    hz : the grid rate of the fill.

    Returns
    -------
    (document, filled) : the REC document and the number of samples the fill added. Samples of a
        fragment that do not come after the trajectory's current end (touching or overlapping
        fragments) are left out, so `timestamp` stays strictly increasing.
    """
    items = sorted(items, key=lambda it: (it[0].first_timestamp, it[0].last_timestamp))
    ts: list[np.ndarray] = []
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    vs: list[np.ndarray] = []
    has_velocity = all(f.velocity is not None for f, _ in items)
    filled = 0
    last_t = -math.inf
    for frag, _doc in items:
        keep = frag.t > last_t + GRID_TOLERANCE_S
        if not keep.any():
            continue
        t, x, y = frag.t[keep], frag.x[keep], frag.y[keep]
        if ts and fill:
            t_end, x_end, y_end = ts[-1][-1], xs[-1][-1], ys[-1][-1]
            k = np.arange(math.floor(t_end * hz + 0.5) + 1, math.floor(t[0] * hz + 0.5), dtype=np.float64)
            gap_t = k / hz
            gap_t = gap_t[(gap_t > t_end + GRID_TOLERANCE_S) & (gap_t < t[0] - GRID_TOLERANCE_S)]
            if gap_t.size:
                share = (gap_t - t_end) / (t[0] - t_end)
                ts.append(gap_t)
                xs.append(x_end + share * (x[0] - x_end))
                ys.append(y_end + share * (y[0] - y_end))
                if has_velocity:
                    vs.append(np.full(gap_t.size, abs(x[0] - x_end) / (t[0] - t_end)))
                filled += gap_t.size
        ts.append(t)
        xs.append(x)
        ys.append(y)
        if has_velocity:
            vs.append(frag.velocity[keep])
        last_t = float(t[-1])
    t_all = np.concatenate(ts)
    x_all = np.concatenate(xs)
    first = items[0]
    doc: dict[str, Any] = {
        "_id": rec_id,
        "fragment_ids": [f.id for f, _ in items],
        "timestamp": t_all.tolist(),
        "x_position": x_all.tolist(),
        "y_position": np.concatenate(ys).tolist(),
    }
    if has_velocity:
        doc["velocity"] = np.concatenate(vs).tolist()
    for name in ("length", "width", "height"):
        parts = [getattr(f, name) for f, _ in items if getattr(f, name) is not None]
        if parts:
            doc[name] = float(np.median(np.concatenate(parts)))
    doc.update({
        "direction": first[0].direction,
        "first_timestamp": float(t_all[0]),
        "last_timestamp": float(t_all[-1]),
        "starting_x": float(x_all[0]),
        "ending_x": float(x_all[-1]),
        "compute_node_id": first[0].compute_node_id,
    })
    return doc, filled


# ----------------------------------------------------------------------------- run
def run(scenario_or_raw_docs: str | Sequence[Mapping[str, Any]], params: Mapping[str, Any], *,
        data_dir: str | os.PathLike = "data", solver: str = "online", fill: bool = True,
        on_bad_fragment: str = "fail", legacy_window: bool = False,
        cost_fn: StitchCostFunction | None = None, base_dir: str | None = None,
        progress: Callable[[str], None] | None = None, name: str | None = None,
        direction: int | None = None) -> tuple[list[dict], dict]:
    """Run the pipeline on one scenario and return the REC documents and the run summary.

    Parameters
    ----------
    scenario_or_raw_docs : "i", "ii" or "iii" (reads `RAW_{s}.json` from `data_dir`), or the RAW
        fragment documents themselves.
    params : the parameters dict (`time_win`, `master_time_win`, `stitcher_mode`, `stitcher_args`,
        `cost_function`).
    data_dir : where `RAW_{s}.json` lives when a scenario name is given.
    solver : "online" (min-cost flow, fragments in last_timestamp order) or "offline" (exact
        assignment over all candidate pairs).
    fill : bridge gaps inside a trajectory with constant-velocity samples at 25 Hz.
    on_bad_fragment : "fail" raises on the first invalid fragment (nothing is written); "skip"
        leaves it out and lists it in the summary.
    legacy_window : use the reference's eligibility window (for comparison).
    cost_fn : a cost function to use instead of building one from `params["cost_function"]`.
    base_dir : folder that relative artifact paths in the config resolve against (default: cwd).
    progress : called with a progress line every few hundred fragments.
    name : label for trajectory ids and the summary (default: the scenario name, else "rec").
    direction : 1 (EB) or -1 (WB) stitches that direction only (the directions never link, so two
        processes, one per direction, give the sequential run's output between them); None: both.

    Returns
    -------
    (rec_docs, summary) : trajectory documents (every kept input fragment in exactly one of them) and
        a JSON-serialisable summary: configuration, cost description, counts, skipped fragments,
        resampling, timings, cost calls, online and offline objectives.

    Raises
    ------
    PipelineError, ConfigError, FragmentError
        Missing RAW file, bad configuration, or (with on_bad_fragment="fail") an invalid fragment.
    """
    if solver not in SOLVERS:
        raise PipelineError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    if on_bad_fragment not in ("fail", "skip"):
        raise PipelineError(f"on_bad_fragment must be 'fail' or 'skip', got {on_bad_fragment!r}")
    if direction not in (None, 1, -1):
        raise PipelineError(f"direction must be 1 (EB) or -1 (WB), got {direction!r}")
    t_start = time.perf_counter()
    say = progress or (lambda line: None)
    if isinstance(scenario_or_raw_docs, str):
        scenario = scenario_or_raw_docs
        raw_docs = _load_raw(data_dir, scenario)
    else:
        scenario = None
        raw_docs = list(scenario_or_raw_docs)
    label = name or scenario or "rec"

    config = StitchConfig.from_parameters(params, legacy_window=legacy_window)
    if cost_fn is None:
        cost_fn = load_cost_function(params.get("cost_function"), base_dir=base_dir)

    # Feed: validation, the <= 3-sample rule and 25 Hz resampling are the ones pair mining uses.
    docs, feed = prepare_fragments(raw_docs, on_bad_fragment=on_bad_fragment)
    skipped = list(feed["skipped"])
    docs = _drop_duplicate_ids(docs, skipped, on_bad_fragment)
    items = [(Fragment.from_document(doc), doc) for doc in docs]
    t_feed = time.perf_counter()

    rec_docs: list[dict] = []
    stats_by_dir: dict[str, dict] = {}
    totals = StitchStats()
    online_total = offline_total = 0.0
    filled_total = 0
    done = 0
    for lane_dir, dname in DIRECTIONS:
        if direction is not None and lane_dir != direction:
            continue
        lane = sorted((it for it in items if it[0].direction == lane_dir),
                      key=lambda it: (it[0].last_timestamp, it[0].first_timestamp))
        if not lane:
            continue
        if solver == "online":
            paths, stats, offline_obj = _stitch_online(lane, cost_fn, config, say, dname, done, len(items))
            online_obj = stats.objective
        else:
            paths, edges, stats = offline_stitch(lane, cost_fn, config)
            offline_obj = stats.objective
            online_obj = _replay_online(lane, edges, config)
        done += len(lane)
        say(f"{dname}: {len(lane)} fragments -> {len(paths)} trajectories, {stats.cost_pairs} cost pairs")
        paths.sort(key=lambda p: (p[0][0].first_timestamp, p[0][0].id))
        for k, path in enumerate(paths):
            doc, filled = assemble_trajectory(path, f"{label}_{dname}_{k:05d}", fill=fill)
            rec_docs.append(doc)
            filled_total += filled
        online_total += online_obj
        offline_total += offline_obj
        stats_by_dir[dname] = dict(stats.as_dict(), fragments=len(lane), trajectories=len(paths),
                                   online_objective=online_obj, offline_objective=offline_obj)
        for key in ("cost_pairs", "cost_batches", "cost_seconds", "edges", "long_fragments", "timed_out"):
            setattr(totals, key, getattr(totals, key) + getattr(stats, key))
    t_end = time.perf_counter()

    stitch_s = t_end - t_feed
    summary = {
        "scenario": scenario,
        "name": label,
        "solver": solver,
        "fill": fill,
        "parameters": _jsonable(params),
        "stitcher": config.describe(),
        "cost_function": _jsonable(cost_fn.describe()),
        "fragments_in": len(raw_docs),
        "direction": direction,
        "fragments_stitched": sum(d["fragments"] for d in stats_by_dir.values()),
        "skipped": skipped,
        "dropped_short": feed["dropped_short"],
        "dropped_short_ids": feed["dropped_short_ids"],
        "min_samples": MIN_SAMPLES,
        "resampled": feed["resampled"],
        "resample_hz": DEFAULT_HZ,
        "trajectories_out": len(rec_docs),
        "filled_samples": filled_total,
        "cost_pairs": totals.cost_pairs,
        "cost_batches": totals.cost_batches,
        "cost_seconds": totals.cost_seconds,
        "cost_pairs_per_second": totals.cost_pairs / totals.cost_seconds if totals.cost_seconds > 0 else None,
        "edges": totals.edges,
        "long_fragments": totals.long_fragments,
        "timed_out_paths": totals.timed_out,
        "online_objective": online_total,
        "offline_objective": offline_total,
        "objective_gap_pct": _gap_pct(online_total, offline_total),
        "objective_edges": "online candidates" if solver == "online" else "all candidate pairs",
        "directions": stats_by_dir,
        "timings": {"feed_s": t_feed - t_start, "stitch_s": stitch_s, "total_s": t_end - t_start},
    }
    return rec_docs, summary


def _stitch_online(lane, cost_fn, config, say, dname, done, total):
    stitcher = OnlineStitcher(cost_fn, config)
    paths: list[Trajectory] = []
    for i, (frag, doc) in enumerate(lane, 1):
        paths.extend(stitcher.add(frag, doc))
        if i % PROGRESS_EVERY == 0:
            say(f"{dname}: {done + i}/{total} fragments, {stitcher.stats.cost_pairs} cost pairs, "
                f"{len(paths)} trajectories final")
    paths.extend(stitcher.flush())
    # The exact optimum over the same edges tells how far the online result is from optimal.
    _, offline_obj = solve_assignment(stitcher.edges)
    return paths, stitcher.stats, offline_obj


def _replay_online(lane, edges, config) -> float:
    """Objective the online stitcher reaches on the offline run's scored edges (no new cost calls)."""
    stitcher = OnlineStitcher(RecordedCostFunction(edges), config)
    for frag, doc in lane:
        stitcher.add(frag, doc)
    stitcher.flush()
    return stitcher.stats.objective


def _gap_pct(online: float, offline: float) -> float:
    if offline <= 0:
        return 0.0
    gap = 100.0 * (offline - online) / offline
    return 0.0 if abs(gap) < 1e-9 else gap  # summation-order noise is not a gap


def _drop_duplicate_ids(docs: list[dict], skipped: list[dict], on_bad_fragment: str) -> list[dict]:
    """Fragment ids key the stitcher and `fragment_ids`; a repeated `_id` is a bad fragment."""
    seen: dict[str, int] = {}
    out = []
    for i, doc in enumerate(docs):
        fid = doc["_id"]
        if fid in seen:
            problem = f"duplicate _id (also prepared fragment {seen[fid]})"
            if on_bad_fragment == "fail":
                raise FragmentError(fid, "_id", problem)
            skipped.append({"index": None, "_id": fid, "field": "_id", "problem": problem})
            continue
        seen[fid] = i
        out.append(doc)
    return out


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def write_outputs(out_dir: str | os.PathLike, scenario: str, tag: str, rec_docs: list[dict],
                  summary: Mapping[str, Any]) -> tuple[str, str]:
    """Write `REC_{scenario}_{tag}.json` and `REC_{scenario}_{tag}.meta.json` atomically; return both paths."""
    return write_rec_file(os.path.join(os.fspath(out_dir), f"REC_{scenario}_{tag}.json"), tag, rec_docs, summary)


def summary_line(summary: Mapping[str, Any]) -> str:
    """One line: fragments in, trajectories out, cost calls, seconds, cost calls per second, objectives."""
    rate = summary["cost_pairs_per_second"]
    rate_text = f"{rate:,.0f} pairs/s" if rate else "n/a pairs/s"
    extra = []
    if summary["skipped"]:
        extra.append(f"{len(summary['skipped'])} skipped as invalid")
    extra.append(f"{summary['dropped_short']} dropped (<{summary['min_samples']} samples)")
    extra.append(f"{summary['resampled']} resampled to {summary['resample_hz']:g} Hz")
    return (f"{summary['name']}: {summary['fragments_in']} fragments in ({', '.join(extra)}) -> "
            f"{summary['trajectories_out']} trajectories; {summary['cost_pairs']} cost pairs in "
            f"{summary['cost_batches']} batch calls, {summary['timings']['total_s']:.2f} s "
            f"({rate_text}); objective online {summary['online_objective']:.3f} / offline "
            f"{summary['offline_objective']:.3f} (gap {summary['objective_gap_pct']:.2f}%)")


# ----------------------------------------------------------------------------- CLI
# The reference parameters with the Bhattacharyya cost: what `pp-lite --raw FILE` uses without --config.
DEFAULT_PARAMETERS = {
    "time_win": 15,
    "master_time_win": 20,
    "stitcher_mode": "local",
    "stitcher_args": {"cx": 0.2, "mx": 0.1, "cy": 2, "my": 0.1, "stitch_thresh": 3, "master_stitch_thresh": 4,
                      "weight_gain": 1.0, "max_fragment_duration": 60},
    "cost_function": {"type": "bhattacharyya"},
}


def _version() -> str:
    from runtime.version import __version__

    return __version__


def _parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Stitch I-24 RAW fragments into trajectories with the online min-cost-flow stitcher and "
                    "the cost function a parameters file names. Two forms: `pp-lite --raw FILE [--out REC.json]` "
                    "stitches any RAW file; `pp-lite SCENARIO --config P --tag T` reads RAW_{SCENARIO}.json from "
                    "--data and writes REC_{SCENARIO}_{T}.json. Each writes a .meta.json beside the REC file.",
        epilog="Examples: pp-lite --raw my_fragments.json --cost tcn --out my_rec.json; "
               "python pp_lite.py ii --config parameters_TCN.json --tag TCN --data data")
    p.add_argument("scenario", nargs="?", choices=SCENARIOS,
                   help="benchmark scenario (i free flow, ii snow, iii stop-and-go): reads RAW_{scenario}.json from "
                        "--data; leave out when --raw names the file")
    p.add_argument("--raw", default=None, metavar="FILE",
                   help="RAW fragment file to stitch (a JSON array of I-24 fragment documents), any path and name")
    p.add_argument("--config", default=None,
                   help="parameters file (reference layout: time_win, master_time_win, stitcher_mode, "
                        "stitcher_args with stitch_thresh/master_stitch_thresh, cost_function), e.g. "
                        "parameters_Bhat.json. Required with SCENARIO; with --raw the default is the reference "
                        "parameters with the Bhattacharyya cost")
    p.add_argument("--cost", default=None, metavar="TYPE",
                   help="replace the config's cost_function by {\"type\": TYPE}: bhattacharyya or a shipped model "
                        "(lr, mlp, siamese, tcn, transformer)")
    p.add_argument("--tag", default=None,
                   help="label of this run: the output is REC_{scenario}_{tag}.json (required with SCENARIO; with "
                        "--raw it names the default output, default: the cost type)")
    p.add_argument("--data", default="data", help="folder holding RAW_{scenario}.json (default: data)")
    p.add_argument("--out", default=None,
                   help="with --raw: the REC file to write (default: REC_{name}_{tag}.json beside the RAW file, "
                        "name = the RAW file's name without RAW_ and .json); with SCENARIO: the folder for the REC "
                        "and meta files (default: the --data folder)")
    p.add_argument("--solver", choices=SOLVERS, default="online",
                   help="online: min-cost flow in last_timestamp order (the pipeline's way); offline: exact "
                        "optimum of the same objective over all candidate pairs (default: online)")
    p.add_argument("--no-fill", action="store_true",
                   help="do not bridge gaps inside a trajectory with constant-velocity samples at 25 Hz")
    p.add_argument("--on-bad-fragment", choices=("fail", "skip"), default="fail",
                   help="fail: stop at the first invalid fragment, writing nothing; skip: leave it out and "
                        "list it in the meta file (default: fail)")
    p.add_argument("--legacy-window", action="store_true",
                   help="use the reference's eligibility window, which misses links to long successors "
                        "(for comparison only)")
    p.add_argument("--direction", type=int, choices=(1, -1), default=None,
                   help="stitch one direction only: 1 eastbound, -1 westbound (default: both); run one "
                        "process per direction, with different --tag or --out, to use two cores")
    p.add_argument("--quiet", action="store_true", help="no progress lines, only the summary line")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    return p


def load_raw_file(path: str | os.PathLike) -> list:
    """The fragment documents of a RAW file (a JSON array), with a one-line error when it is not one."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise PipelineError(f"RAW file {path} not found")
    try:
        with open(path, "rb") as fh:
            docs = json.load(fh)
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(docs, list):
        raise PipelineError(f"{path}: expected a JSON array of fragment documents, got {type(docs).__name__}")
    return docs


def _raw_name(path: str) -> str:
    stem = os.path.basename(path)
    for suffix in (".json", ".JSON"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return stem[4:] if stem.startswith("RAW_") and len(stem) > 4 else stem


def _meta_path_for(rec_path: str) -> str:
    root, ext = os.path.splitext(rec_path)
    return (root if ext.lower() == ".json" else rec_path) + ".meta.json"


def write_rec_file(rec_path: str | os.PathLike, tag: str, rec_docs: list[dict],
                   summary: Mapping[str, Any]) -> tuple[str, str]:
    """Write the REC documents to `rec_path` and the summary beside it (`<rec>.meta.json`), atomically."""
    rec_path = os.fspath(rec_path)
    meta_path = _meta_path_for(rec_path)
    t0 = time.perf_counter()
    atomic_write_text(rec_path, json.dumps(rec_docs, separators=(",", ":")))
    meta = dict(summary, tag=tag, rec_file=os.path.basename(rec_path))
    meta["timings"] = dict(summary.get("timings", {}), write_s=time.perf_counter() - t0)
    atomic_write_text(meta_path, json.dumps(meta, indent=1))
    return rec_path, meta_path


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (`pp-lite`, `python pp_lite.py`); returns the exit status (0 ok, 1 bad input)."""
    prog = "pp-lite" if os.path.basename(sys.argv[0] or "") == "pp-lite" else "pp_lite.py"
    label = prog.removesuffix(".py")  # the prefix of progress and error lines
    parser = _parser(prog)
    args = parser.parse_args(argv)
    if (args.scenario is None) == (args.raw is None):
        parser.error("give either a SCENARIO (i, ii, iii; reads RAW_{scenario}.json from --data) or --raw FILE")
    if args.scenario is not None:
        missing = [flag for flag, value in (("--config", args.config), ("--tag", args.tag)) if value is None]
        if missing:
            parser.error(f"with a SCENARIO, {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required")
    say = None if args.quiet else (lambda line: print(f"{label}: {line}", file=sys.stderr, flush=True))
    try:
        if args.config is not None:
            params = load_parameters(args.config)
            base_dir = os.path.dirname(os.path.abspath(args.config))
        else:
            params, base_dir = json.loads(json.dumps(DEFAULT_PARAMETERS)), None
        if args.cost is not None:
            params["cost_function"] = {"type": args.cost}
        common = dict(solver=args.solver, fill=not args.no_fill, on_bad_fragment=args.on_bad_fragment,
                      legacy_window=args.legacy_window, base_dir=base_dir, progress=say, direction=args.direction)
        if args.raw is not None:
            name = _raw_name(args.raw)
            tag = args.tag or str((params.get("cost_function") or {}).get("type", "rec"))
            out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.raw)), f"REC_{name}_{tag}.json")
            if os.path.isdir(out):
                raise PipelineError(f"--out {out} is a folder; with --raw it names the REC file to write")
            raw_docs = load_raw_file(args.raw)
            rec_docs, summary = run(raw_docs, params, name=name, **common)
            summary["raw_file"] = os.path.abspath(args.raw)
        else:
            tag = args.tag
            rec_docs, summary = run(args.scenario, params, data_dir=args.data, **common)
        summary["config_file"] = os.path.abspath(args.config) if args.config else None
        if args.raw is not None:
            rec_path, _ = write_rec_file(out, tag, rec_docs, summary)
        else:
            rec_path, _ = write_outputs(args.out or args.data, args.scenario, tag, rec_docs, summary)
    except (PipelineError, ConfigError, ArtifactError, ValueError, OSError) as exc:  # FragmentError is a ValueError
        print(f"{label}: error: {exc}", file=sys.stderr)
        return 1
    print(f"{label} {summary_line(summary)} -> {rec_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
