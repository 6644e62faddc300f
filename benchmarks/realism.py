"""Realism report: the i24-47-v1 pair features of simulated scenarios against the real I-24 pairs.

For each scenario (i, ii, iii) the simulator (`training.simulate`, several seeds) is mined the way the
reference npz was built (REFERENCE.md §4.1): positives are every file-ordered pair of one GT vehicle's
fragments that passes the builder's candidate gate (sequential, same direction, gap <= `--pos-max-gap`,
spatial_gap with the builder's westbound formula in [-50, 200] ft, |y_mean_b - y_mean_a| <= 5 ft);
negatives come from the "relaxed" bin miner (2 s x 150 ft bins, neighbours +-2, different GT ids,
sequential, gap <= 10 s, no spatial gate) until there are as many as positives. Features are
`runtime.features.FeatureExtractor("i24-47-v1")` on the RAW documents, as the builder computed them.

Per scenario, label and feature: the two-sample Kolmogorov-Smirnov distance (`ks_distance`, a
vectorised numpy implementation, tested against scipy.stats.ks_2samp) and quantiles of both sides; a
PNG grid of overlaid histograms per scenario and label. Results go to benchmarks/results/realism/
(realism.json, realism.md, realism_<s>_<pos|neg>.png).

Without the npz (a fresh clone has no ../shared) the report still simulates and mines, writes the
simulated quantiles, and says in one line what it skipped and why.

    python benchmarks/realism.py [--npz PATH] [--seeds 0-5] [--duration S] [--out DIR]
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Iterable, Mapping, Sequence

import click
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from runtime.features import FEATURE_NAMES, SCHEMA_V1, FeatureExtractor  # noqa: E402
from runtime.files import atomic_write_bytes, atomic_write_text  # noqa: E402
from training.io import gt_id_of  # noqa: E402

DEFAULT_NPZ = os.path.join(os.path.dirname(REPO), "shared", "data", "training_dataset_advanced.npz")
DEFAULT_OUT = os.path.join(REPO, "benchmarks", "results", "realism")
SCENARIOS = ("i", "ii", "iii")
# Row blocks of the npz (its README and REFERENCE.md §1.6): (first row, first negative row, end).
NPZ_BLOCKS = {"i": (0, 178, 356), "ii": (356, 576, 796), "iii": (796, 1448, 2100)}
CONSTANT_FEATURES = ("direction_match",)        # always 1 in the npz (pairs share a direction)
# The shipped LR's inputs (artifacts/lr/manifest.json); read from the manifest when it is there.
LR_FEATURES_FALLBACK = ("y_diff", "time_gap", "projection_error_x_max", "length_diff", "width_diff",
                        "projection_error_y_max", "bhattacharyya_coeff", "projection_error_x_mean",
                        "curvature_diff", "projection_error_x_std")
TARGET_MEDIAN_KS = 0.15
TARGET_MAX_KS = 0.30
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
# The builder's gates (REFERENCE.md §4.1). The npz has positives with gaps up to 14.15 s (D8: a looser
# gate than the 5 s in the code), so the positive gap gate defaults to the stitcher's 15 s window.
POS_MAX_GAP = 15.0
NEG_MAX_GAP = 10.0
SPATIAL_GATE = (-50.0, 200.0)
LATERAL_GATE = 5.0
NEG_BIN_T, NEG_BIN_X, NEG_RADIUS = 2.0, 150.0, 2


# ------------------------------------------------------------------------------------------------
# Kolmogorov-Smirnov distance
# ------------------------------------------------------------------------------------------------

def ks_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sample KS statistic sup_x |F_a(x) - F_b(x)| of the empirical CDFs (NaN if a side is empty)."""
    a = np.sort(np.asarray(a, dtype=np.float64).ravel())
    b = np.sort(np.asarray(b, dtype=np.float64).ravel())
    if a.size == 0 or b.size == 0:
        return float("nan")
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / a.size
    fb = np.searchsorted(b, grid, side="right") / b.size
    return float(np.max(np.abs(fa - fb)))


def ks_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`ks_distance` of every column of two (n, k) and (m, k) matrices."""
    return np.array([ks_distance(a[:, j], b[:, j]) for j in range(a.shape[1])])


# ------------------------------------------------------------------------------------------------
# Mining the way the npz was built
# ------------------------------------------------------------------------------------------------

def _builder_spatial_gap(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """spatial_gap as the npz builder computed it (REFERENCE.md D1: westbound spans A's start to B's end)."""
    if a["direction"] == 1:
        return float(b["starting_x"]) - float(a["ending_x"])
    return float(a["starting_x"]) - float(b["ending_x"])


def mine_reference_pairs(raw_docs: Sequence[Mapping[str, Any]], pos_max_gap: float = POS_MAX_GAP,
                         neg_max_gap: float = NEG_MAX_GAP) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Index pairs (a, b) into `raw_docs` of the npz builder's positives and relaxed-miner negatives.

    `raw_docs` in file order (the order the simulator writes RAW: by last_timestamp). Fragments without
    a GT label (false positives) take part in neither.
    """
    n = len(raw_docs)
    gt = [gt_id_of(d) for d in raw_docs]
    t0 = np.array([float(d["first_timestamp"]) for d in raw_docs])
    t1 = np.array([float(d["last_timestamp"]) for d in raw_docs])
    ymean = np.array([float(np.mean(d["y_position"])) for d in raw_docs])
    groups: dict[str, list[int]] = {}
    for i, g in enumerate(gt):
        if g is not None:
            groups.setdefault(g, []).append(i)
    positives = []
    for members in groups.values():
        for k, i in enumerate(members):
            for j in members[k + 1:]:
                a, b = raw_docs[i], raw_docs[j]
                gap = t0[j] - t1[i]
                if not (t1[i] < t0[j] and a["direction"] == b["direction"] and gap <= pos_max_gap):
                    continue
                if not SPATIAL_GATE[0] <= _builder_spatial_gap(a, b) <= SPATIAL_GATE[1]:
                    continue
                if abs(ymean[j] - ymean[i]) > LATERAL_GATE:
                    continue
                positives.append((i, j))
    positives.sort()
    target = len(positives)
    bins: dict[tuple[int, int, int], list[int]] = {}
    for i, d in enumerate(raw_docs):
        key = (int(t0[i] / NEG_BIN_T), int(float(d["starting_x"]) / NEG_BIN_X), int(d["direction"]))
        bins.setdefault(key, []).append(i)
    negatives: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    r = range(-NEG_RADIUS, NEG_RADIUS + 1)
    for (bt, bx, bd), members in bins.items():
        if len(negatives) >= target:
            break
        for dt in r:
            for dx in r:
                other = bins.get((bt + dt, bx + dx, bd))
                if not other:
                    continue
                for i in members:
                    for j in other:
                        if len(negatives) >= target:
                            break
                        if i >= j or (i, j) in seen or gt[i] is None or gt[j] is None or gt[i] == gt[j]:
                            continue
                        if t1[i] < t0[j] and t0[j] - t1[i] <= neg_max_gap:
                            seen.add((i, j))
                            negatives.append((i, j))
    del n
    return positives, negatives


def pair_matrix(raw_docs: Sequence[Mapping[str, Any]], pairs: Iterable[tuple[int, int]],
                extractor: FeatureExtractor | None = None) -> np.ndarray:
    """i24-47-v1 features of index pairs, one row each (float64)."""
    extractor = extractor or FeatureExtractor(SCHEMA_V1, cache_size=max(16, len(raw_docs) + 1))
    rows = [extractor.pair(raw_docs[i], raw_docs[j]) for i, j in pairs]
    if not rows:
        return np.zeros((0, len(FEATURE_NAMES)))
    return np.asarray(rows, dtype=np.float64)


def simulated_pairs(preset: Any, seeds: Sequence[int], duration: float | None = None,
                    error_model: Mapping[str, Any] | None = None, randomize: bool = False,
                    pos_max_gap: float = POS_MAX_GAP, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """(positives, negatives) feature matrices mined from `simulate(preset, seed)` over `seeds`."""
    from training.simulate import simulate

    pos, neg = [], []
    for seed in seeds:
        _, raw = simulate(preset, int(seed), duration, error_model=error_model, randomize=randomize)
        p, n = mine_reference_pairs(raw, pos_max_gap)
        extractor = FeatureExtractor(SCHEMA_V1, cache_size=len(raw) + 16)
        pos.append(pair_matrix(raw, p, extractor))
        neg.append(pair_matrix(raw, n, extractor))
        if progress is not None:
            progress.update(1)
    return np.concatenate(pos), np.concatenate(neg)


def load_real(npz_path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per scenario: (positives, negatives) of the reference npz, split by its row blocks."""
    with np.load(npz_path, allow_pickle=False) as z:
        X, y = z["X"].astype(np.float64), z["y"]
        names = tuple(str(n) for n in z["feature_names"])
    if names != FEATURE_NAMES:
        raise ValueError(f"{npz_path}: feature_names differ from the i24-47 column order")
    out = {}
    for s, (lo, mid, hi) in NPZ_BLOCKS.items():
        if not ((y[lo:mid] == 1).all() and (y[mid:hi] == 0).all()):
            raise ValueError(f"{npz_path}: rows {lo}-{hi - 1} are not scenario {s}'s positives then negatives")
        out[s] = (X[lo:mid], X[mid:hi])
    return out


# ------------------------------------------------------------------------------------------------
# Comparison
# ------------------------------------------------------------------------------------------------

def model_features(repo: str = REPO) -> dict[str, list[str]]:
    """Features each shipped model uses: LR's 10 from its manifest; the MLP and sequence heads use all 47."""
    lr = list(LR_FEATURES_FALLBACK)
    path = os.path.join(repo, "artifacts", "lr", "manifest.json")
    try:
        with open(path, encoding="utf-8") as fh:
            lr = list(json.load(fh)["inputs"]["feature_names"])
    except (OSError, KeyError, ValueError):
        pass
    return {"lr": lr, "mlp_and_sequence": list(FEATURE_NAMES)}


def _quantiles(col: np.ndarray) -> list[float]:
    if col.size == 0:
        return [float("nan")] * len(QUANTILES)
    return [float(v) for v in np.quantile(col, QUANTILES)]


def compare(real: tuple[np.ndarray, np.ndarray] | None, sim: tuple[np.ndarray, np.ndarray]) -> dict:
    """KS and quantiles per feature for positives and negatives of one scenario."""
    out: dict[str, Any] = {}
    for k, label in enumerate(("pos", "neg")):
        s = sim[k]
        entry: dict[str, Any] = {"n_sim": int(s.shape[0]), "features": {}}
        if real is not None:
            r = real[k]
            entry["n_real"] = int(r.shape[0])
            ks = ks_columns(s, r) if s.shape[0] and r.shape[0] else np.full(len(FEATURE_NAMES), np.nan)
        for j, name in enumerate(FEATURE_NAMES):
            f = {"sim_q": _quantiles(s[:, j])}
            if real is not None:
                f["real_q"] = _quantiles(r[:, j])
                f["ks"] = float(ks[j])
            entry["features"][name] = f
        if real is not None:
            varying = [j for j, n in enumerate(FEATURE_NAMES) if n not in CONSTANT_FEATURES]
            entry["median_ks"] = float(np.nanmedian(ks[varying]))
            entry["worst"] = sorted(((FEATURE_NAMES[j], float(ks[j])) for j in varying), key=lambda t: -t[1])[:8]
        out[label] = entry
    return out


def summary_rows(result: Mapping[str, Any], lr_features: Sequence[str]) -> list[dict]:
    """One row per scenario: median KS (pos, neg), worst positive features, LR features above 0.30."""
    rows = []
    for s, res in result.items():
        pos, neg = res["pos"], res["neg"]
        if "median_ks" not in pos:
            continue
        over = {n: round(f["ks"], 3) for n, f in pos["features"].items()
                if n not in CONSTANT_FEATURES and f["ks"] > TARGET_MAX_KS}
        rows.append({"scenario": s, "n_pos_real": pos["n_real"], "n_pos_sim": pos["n_sim"],
                     "median_ks_pos": pos["median_ks"], "median_ks_neg": neg["median_ks"],
                     "worst_pos": pos["worst"][:5],
                     "lr_max_ks_pos": max(pos["features"][n]["ks"] for n in lr_features),
                     "pos_over_0p30": over})
    return rows


def histogram_grid(real: tuple[np.ndarray, np.ndarray] | None, sim: tuple[np.ndarray, np.ndarray], label: str,
                   title: str, path: str) -> None:
    """A 7 x 7 grid of overlaid (density) histograms, real vs simulated, one panel per feature."""
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = 0 if label == "pos" else 1
    s = sim[k]
    r = real[k] if real is not None else np.zeros((0, s.shape[1]))
    fig, axes = plt.subplots(7, 7, figsize=(21, 18))
    for j, ax in enumerate(axes.ravel()):
        if j >= len(FEATURE_NAMES):
            ax.axis("off")
            continue
        name = FEATURE_NAMES[j]
        both = np.concatenate([s[:, j], r[:, j]])
        if both.size == 0:
            ax.axis("off")
            continue
        lo, hi = np.quantile(both, [0.01, 0.99])
        if not hi > lo:
            lo, hi = lo - 0.5, hi + 0.5
        bins = np.linspace(lo, hi, 31)
        log_x = bool(lo > 0 and hi / lo > 100)      # heavy-tailed and positive (curvature, distances)
        if log_x:
            bins = np.geomspace(lo, hi, 31)
            ax.set_xscale("log")
        # Tails pile up in the edge bins on a linear axis; a log axis shows only the 1-99 % range.
        def shown(v):
            return v[(v >= lo) & (v <= hi)] if log_x else np.clip(v, lo, hi)

        if r.shape[0]:
            ax.hist(shown(r[:, j]), bins=bins, density=True, histtype="stepfilled", alpha=0.35,
                    color="tab:blue", label=f"real (n={r.shape[0]})")
        if s.shape[0]:
            ax.hist(shown(s[:, j]), bins=bins, density=True, histtype="step", lw=1.5,
                    color="tab:orange", label=f"sim (n={s.shape[0]})")
        ks = ks_distance(s[:, j], r[:, j]) if r.shape[0] and s.shape[0] else float("nan")
        ax.set_title(f"{name}" + (f"  KS {ks:.2f}" if ks == ks else "") + (" (log x)" if log_x else ""), fontsize=9,
                     color="red" if ks > TARGET_MAX_KS else "black")
        ax.tick_params(labelsize=6)
        ax.set_yticks([])
        if j == 0:
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=14)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=60)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _markdown(result: Mapping[str, Any], rows: list[dict], meta: Mapping[str, Any]) -> str:
    lines = ["# Realism: simulated vs real i24-47-v1 pair features", ""]
    lines.append(f"Simulated: presets {', '.join(meta['scenarios'])}, seeds {meta['seeds']}, duration "
                 f"{meta['duration'] or 'preset'}; mined as the npz was built (positives gap <= "
                 f"{meta['pos_max_gap']} s, relaxed negatives). Real: {meta['npz'] or 'skipped'}.")
    lines.append("")
    if rows:
        lines += ["| scenario | real / sim positives | median KS positives | median KS negatives | "
                  "max KS of the LR's 10 (pos) | positive features above 0.30 |", "|---|---|---|---|---|---|"]
        for row in rows:
            over = ", ".join(f"{n} {v:.2f}" for n, v in sorted(row["pos_over_0p30"].items(), key=lambda t: -t[1]))
            lines.append(f"| {row['scenario']} | {row['n_pos_real']} / {row['n_pos_sim']} | "
                         f"{row['median_ks_pos']:.3f} | {row['median_ks_neg']:.3f} | {row['lr_max_ks_pos']:.3f} | "
                         f"{over or 'none'} |")
        lines.append("")
        lines.append(f"Targets: median KS of positives <= {TARGET_MEDIAN_KS} per scenario, no used feature above "
                     f"{TARGET_MAX_KS}.")
        lines.append("")
    for s, res in result.items():
        for label in ("pos", "neg"):
            e = res[label]
            lines.append(f"## {s} {'positives' if label == 'pos' else 'negatives'}")
            lines.append("")
            has_real = "median_ks" in e
            if has_real:
                lines += ["| feature | KS | real p05 / p50 / p95 | sim p05 / p50 / p95 |", "|---|---|---|---|"]
            else:
                lines += ["| feature | sim p05 / p50 / p95 |", "|---|---|"]
            for name, f in e["features"].items():
                sq = f"{f['sim_q'][0]:.4g} / {f['sim_q'][2]:.4g} / {f['sim_q'][4]:.4g}"
                if has_real:
                    rq = f"{f['real_q'][0]:.4g} / {f['real_q'][2]:.4g} / {f['real_q'][4]:.4g}"
                    lines.append(f"| {name} | {f['ks']:.3f} | {rq} | {sq} |")
                else:
                    lines.append(f"| {name} | {sq} |")
            lines.append("")
    return "\n".join(lines) + "\n"


def _parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            seeds.extend(range(int(lo), int(hi) + 1))
        else:
            seeds.append(int(part))
    if not seeds or min(seeds) < 0:
        raise ValueError(f"bad seed list {text!r}")
    return seeds


def run_report(npz: str | None, scenarios: Sequence[str], seeds: Sequence[int], duration: float | None,
               out_dir: str, pos_max_gap: float = POS_MAX_GAP, plots: bool = True, say=print) -> dict:
    """Simulate, mine, compare with the npz when it exists, and write json, md and PNGs into `out_dir`."""
    from tqdm import tqdm

    real = None
    if npz and os.path.exists(npz):
        real = load_real(npz)
    else:
        say(f"skipped: the real-vs-simulated comparison (KS distances, real quantiles, histogram overlays): "
            f"{npz or 'no --npz'} not found; writing simulated quantiles only")
    os.makedirs(out_dir, exist_ok=True)
    lr = model_features()["lr"]
    result: dict[str, Any] = {}
    with tqdm(total=len(scenarios) * len(seeds), desc="simulate + mine", file=sys.stderr) as bar:
        for s in scenarios:
            sim = simulated_pairs(s, seeds, duration, pos_max_gap=pos_max_gap, progress=bar)
            r = real[s] if real is not None else None
            result[s] = compare(r, sim)
            if plots:
                for label in ("pos", "neg"):
                    histogram_grid(r, sim, label, f"scenario {s}, {'positives' if label == 'pos' else 'negatives'}:"
                                   f" real (blue) vs simulated (orange)",
                                   os.path.join(out_dir, f"realism_{s}_{label}.png"))
    rows = summary_rows(result, lr)
    meta = {"npz": npz if real is not None else None, "scenarios": list(scenarios), "seeds": list(seeds),
            "duration": duration, "pos_max_gap": pos_max_gap, "schema": SCHEMA_V1, "lr_features": lr,
            "targets": {"median_ks_pos": TARGET_MEDIAN_KS, "max_ks": TARGET_MAX_KS}}
    from training.simulate import PRESETS, SIMULATOR_VERSION, error_model_of
    meta["simulator_version"] = SIMULATOR_VERSION
    meta["error_models"] = {s: error_model_of(PRESETS[s]) for s in scenarios}
    doc = {"meta": meta, "summary": rows, "scenarios": result}
    atomic_write_text(os.path.join(out_dir, "realism.json"), json.dumps(doc, indent=1) + "\n")
    atomic_write_text(os.path.join(out_dir, "realism.md"), _markdown(result, rows, meta))
    for row in rows:
        say(f"{row['scenario']}: median KS positives {row['median_ks_pos']:.3f}, negatives {row['median_ks_neg']:.3f}; "
            f"LR max {row['lr_max_ks_pos']:.3f}; above 0.30: "
            f"{', '.join(sorted(row['pos_over_0p30'])) or 'none'}")
    say(f"wrote {os.path.join(out_dir, 'realism.md')}")
    return doc


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--npz", default=DEFAULT_NPZ, show_default=True,
              help="The real pairs (training_dataset_advanced.npz); skipped with a note when missing.")
@click.option("--scenarios", default="i,ii,iii", show_default=True, help="Comma-separated presets.")
@click.option("--seeds", default="0-5", show_default=True, help="Simulated seeds per scenario, e.g. 0-5 or 1,4,7.")
@click.option("--duration", type=float, default=None, help="Seconds per simulated instance (default: the preset's).")
@click.option("--pos-max-gap", type=float, default=POS_MAX_GAP, show_default=True,
              help="Positive gap gate (s); the npz's positives reach 14.15 s (REFERENCE.md D8).")
@click.option("--out", "out_dir", default=DEFAULT_OUT, show_default=True, type=click.Path(file_okay=False),
              help="Folder for realism.json, realism.md and the PNG grids.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG grids.")
def main(npz: str, scenarios: str, seeds: str, duration: float | None, pos_max_gap: float, out_dir: str,
         no_plots: bool) -> None:
    """Compare simulated and real (npz) i24-47-v1 pair features per scenario: KS, quantiles, histograms."""
    names = [s.strip() for s in scenarios.split(",") if s.strip()]
    bad = [s for s in names if s not in SCENARIOS]
    if bad or not names:
        raise click.ClickException(f"unknown scenario(s) {', '.join(bad) or '(none)'}; choose from i, ii, iii")
    try:
        seed_list = _parse_seeds(seeds)
    except ValueError as exc:
        raise click.ClickException(f"--seeds: {exc}") from None
    if duration is not None and not 1.0 <= duration <= 3600.0:
        raise click.ClickException(f"--duration must be between 1 and 3600 s, got {duration}")
    try:
        run_report(npz, names, seed_list, duration, out_dir, pos_max_gap, plots=not no_plots, say=click.echo)
    except (ValueError, KeyError) as exc:
        raise click.ClickException(str(exc)) from None


if __name__ == "__main__":
    main()
